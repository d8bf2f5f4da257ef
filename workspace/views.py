import csv
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, OuterRef, Prefetch, Subquery
from django.db.models.functions import Coalesce
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING, trigger_client_event

from workspace import (
    export,
    gallery,
    history,
    imagemodels,
    jobs,
    library,
    lineage,
    outputs,
    review,
    spend,
    uploads,
)
from workspace.access import job_card_access, object_access, project_access, project_access_with_members
from workspace.forms import (
    AddMemberForm,
    ChangeRoleForm,
    EditForm,
    GenerationForm,
    ProjectForm,
    SpendPeriodForm,
)
from workspace.gallery import GalleryFilterForm
from workspace.models import Comment, Favourite, Image, Job, LedgerEntry, Membership, Project, Reference, Role

FEED_PAGE_SIZE = 12


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    latest = Image.objects.visible().filter(project=OuterRef("pk")).order_by("-created_at", "-id")
    image_counts = (
        Image.objects.filter(project=OuterRef("pk"))
        .order_by()
        .values("project")
        .annotate(n=Count("id"))
        .values("n")
    )
    newest_job = Job.objects.filter(project=OuterRef("pk")).order_by("-created_at")
    projects = (
        Project.objects.for_user(request.user)
        .annotate(
            # Subqueries, not joins: joining images and jobs at once multiplies their rows per project.
            image_count=Coalesce(Subquery(image_counts), 0),
            last_activity=Subquery(newest_job.values("created_at")[:1]),
            cover_id=Subquery(latest.values("pk")[:1]),
        )
        .order_by("archived_at", "-last_activity", "name")
    )
    return render(request, "workspace/home.html", {"projects": projects, "form": ProjectForm()})


@login_required
@require_POST
def project_create(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST)
    if not form.is_valid():
        projects = Project.objects.for_user(request.user)
        return render(request, "workspace/home.html", {"projects": projects, "form": form}, status=400)
    with transaction.atomic():
        project = form.save(commit=False)
        project.created_by = request.user
        project.save()
        Membership.objects.create(project=project, user=request.user, role=Role.OWNER)
    return redirect(project)


def _archived(access) -> HttpResponse | None:
    """Archived projects keep every image but take no new jobs."""
    if access.project.is_archived:
        return HttpResponse("This project is archived; unarchive it to make images.", status=409)
    return None


def _feed(project: Project, before: str | None):
    queryset = (
        Job.objects.filter(project=project)
        .select_related("author")
        .prefetch_related(Prefetch("images", queryset=Image.objects.visible().order_by("index")))
    )
    if before and before.isdigit():
        queryset = queryset.filter(id__lt=int(before))
    page = list(queryset.order_by("-id")[: FEED_PAGE_SIZE + 1])
    return page[:FEED_PAGE_SIZE], (page[FEED_PAGE_SIZE - 1].pk if len(page) > FEED_PAGE_SIZE else None)


def _project_context(access, form, jobs_page, next_before) -> dict:
    return {
        "project": access.project,
        "access": access,
        "form": form,
        "jobs": jobs_page,
        "next_before": next_before,
        "capabilities": imagemodels.capabilities(),
        "models": imagemodels.MODELS.values(),
    }


@login_required
@require_GET
def project(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    jobs_page, next_before = _feed(access.project, request.GET.get("before"))
    if request.htmx and request.GET.get("before"):
        return render(
            request,
            "workspace/project.html#feed-page",
            {"jobs": jobs_page, "next_before": next_before, "project": access.project, "access": access},
        )
    again = request.GET.get("again")
    initial = {}
    if again and again.isdigit():
        source = Job.objects.filter(project=access.project, pk=int(again)).first()
        if source is not None:
            initial = GenerationForm.initial_from_job(source)
    form = GenerationForm(initial=initial)
    return render(request, "workspace/project.html", _project_context(access, form, jobs_page, next_before))


@login_required
@require_POST
def job_create(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR)
    if refusal := _archived(access):
        return refusal
    form = GenerationForm(request.POST)
    if not form.is_valid():
        if request.htmx:
            context = _project_context(access, form, [], None)
            return render(request, "workspace/project.html#generate-form", context, status=400)
        jobs_page, next_before = _feed(access.project, None)
        context = _project_context(access, form, jobs_page, next_before)
        return render(request, "workspace/project.html", context, status=400)
    try:
        job = jobs.job_create(
            project=access.project,
            author=request.user,
            prompt=form.cleaned_data["prompt"],
            params=form.job_params(),
        )
    except spend.BudgetExceeded as refusal:
        form.add_error(None, str(refusal))
        template = "workspace/project.html#generate-form" if request.htmx else "workspace/project.html"
        jobs_page, next_before = ([], None) if request.htmx else _feed(access.project, None)
        return render(request, template, _project_context(access, form, jobs_page, next_before), status=402)
    if not request.htmx:
        return redirect(access.project)
    # The form keeps what was typed (people iterate on a prompt); the new card goes on top of the feed.
    context = _project_context(
        access, GenerationForm(initial=form.cleaned_data | {"size": form.cleaned_data["size"]}), [], None
    )
    context["new_job"] = job
    return render(request, "workspace/project.html#job-created", context)


def _job_for(access, job_id: int) -> Job:
    return get_object_or_404(
        Job.objects.select_related("author").prefetch_related(
            Prefetch("images", queryset=Image.objects.visible().order_by("index"))
        ),
        project=access.project,
        pk=job_id,
    )


@login_required
@require_GET
def job_card(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    # Polled every second by every open card: one query, written once in SQL (hot_queries).
    access, job, images = job_card_access(request.user, project_id=project_id, job_id=job_id)
    context = {"job": job, "card_images": images, "access": access, "project": access.project}
    if not job.is_active and request.htmx:
        # Tell screen readers once, from a live region that polling does not replace, and move the badge.
        response = render(request, "workspace/project.html#final-job-card", context)
        if job.author_id == request.user.pk:
            trigger_client_event(response, "spend-changed")  # the badge refetches itself
        response.status_code = HTMX_STOP_POLLING
        return response
    return render(request, "workspace/project.html#job-card", context)


@login_required
@require_GET
def estimate(request: HttpRequest, project_id: int) -> HttpResponse:
    """The expected cost of the form as it stands; the form refreshes it as fields change."""
    access = project_access(request.user, project_id)
    is_edit = request.GET.get("kind") == "edit"
    form = (EditForm if is_edit else GenerationForm)(request.GET)
    form.fields["prompt"].required = False  # the cost does not wait for the words
    context = {"project": access.project, "estimate": False, "estimate_problem": ""}
    if form.is_valid():
        inputs = len(request.GET.getlist("inputs")) if is_edit else 0
        context["estimate"] = jobs.job_estimate(
            prompt=form.cleaned_data["prompt"], params=form.job_params(), input_images=inputs
        )
    else:
        context["estimate_problem"] = next(iter(form.errors.values()))[0]
    return render(request, "workspace/project.html#estimate", context)


@login_required
@require_GET
def job_detail(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    job = _job_for(access, job_id)
    calls = list(job.api_calls.select_related("charge"))
    actual = sum((call.charge.cost for call in calls if hasattr(call, "charge")), start=spend.ZERO)
    return render(
        request,
        "workspace/job_detail.html",
        {"job": job, "access": access, "project": access.project, "calls": calls, "actual": actual},
    )


def _after_job_action(request: HttpRequest, access, job_id: int) -> HttpResponse:
    if request.htmx:
        job = _job_for(access, job_id)
        return render(
            request,
            "workspace/project.html#job-card",
            {"job": job, "access": access, "project": access.project},
        )
    return redirect(request.POST.get("next") or access.project.get_absolute_url())


@login_required
@require_POST
def job_cancel(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR)
    job = get_object_or_404(Job, project=access.project, pk=job_id)
    if not jobs.job_cancel(job=job):
        messages.info(request, "That job had already started, so it could not be canceled.")
    return _after_job_action(request, access, job_id)


@login_required
@require_POST
def job_retry(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR)
    job = get_object_or_404(Job, project=access.project, pk=job_id)
    if refusal := _archived(access):
        return refusal
    try:
        jobs.job_retry(job=job)
    except spend.BudgetExceeded as refusal:
        if request.htmx:
            return HttpResponse(str(refusal), status=402)
        messages.error(request, str(refusal))
    return _after_job_action(request, access, job_id)


def _image_for(request: HttpRequest, project_id: int, image_id: int) -> tuple:
    return object_access(
        request.user, Image.objects.select_related("job", "job__author"), project_id=project_id, pk=image_id
    )


@login_required
@require_GET
def image_detail(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    access, image = _image_for(request, project_id, image_id)
    reported = image.job.api_calls.filter(outcome="ok").order_by("-id").first()
    siblings = image.job.images.order_by("index")
    inputs = lineage.parents(image)
    first_parent = next((item.image for item in inputs if item.image is not None), None)
    diff = None
    if first_parent is not None:
        diff = {
            "parent": first_parent,
            "prompt": lineage.prompt_diff(first_parent.job.prompt, image.job.prompt),
            "changes": lineage.parameter_changes(first_parent.job, image.job),
        }
    # Previous and next follow the gallery view the person came from (its filters ride on the URL).
    filters = _filters_query(request)
    newer = older = None
    if request.GET.get("from") == "gallery" or filters:
        authors = [(int(a), a) for a in request.GET.getlist("author") if a.isdigit()]
        form = GalleryFilterForm(request.GET, authors=authors)
        if form.is_valid():
            view = gallery.filtered(project=access.project, user=request.user, data=form.cleaned_data)
            newer, older = gallery.neighbours(view, image)
    return render(
        request,
        "workspace/image_detail.html",
        {
            "image": image,
            "job": image.job,
            "access": access,
            "project": access.project,
            "reported": reported,
            "siblings": siblings,
            "inputs": inputs,
            "children": lineage.children(image),
            "diff": diff,
            "show_raw": request.GET.get("view") == "raw",
            "is_favourite": Favourite.objects.filter(user=request.user, image=image).exists(),
            "comments": image.comments.select_related("author"),
            "filters": filters,
            "newer": newer,
            "older": older,
            "reviews": Image.Review.choices,
            "undo_minutes": DELETE_UNDO_MINUTES,
        },
    )


def _serve(name: str, *, content_type: str, download_name: str | None = None) -> FileResponse:
    try:
        handle = default_storage.open(name, "rb")
    except FileNotFoundError:
        raise Http404 from None
    response = FileResponse(
        handle,
        content_type=content_type,
        as_attachment=download_name is not None,
        filename=download_name or "",
    )
    response["X-Content-Type-Options"] = "nosniff"
    # Members only: browsers may keep a copy, shared caches may not.
    response["Cache-Control"] = "private, max-age=86400"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@login_required
@require_GET
def image_file(request: HttpRequest, project_id: int, image_id: int) -> FileResponse:
    _, image = _image_for(request, project_id, image_id)
    return _serve(image.file.name, content_type=image.content_type)


@login_required
@require_GET
def image_thumb(request: HttpRequest, project_id: int, image_id: int) -> FileResponse:
    _, image = _image_for(request, project_id, image_id)
    return _serve(image.thumbnail.name, content_type="image/webp")


@login_required
@require_GET
def image_download(request: HttpRequest, project_id: int, image_id: int) -> FileResponse:
    _, image = _image_for(request, project_id, image_id)
    return _serve(image.file.name, content_type=image.content_type, download_name=image.download_name)


@login_required
def project_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.OWNER)
    form = ProjectForm(request.POST or None, instance=access.project)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Project renamed.")
        return redirect("project_settings", project_id)
    status = 400 if form.errors else 200
    return render(
        request,
        "workspace/project_settings.html",
        {"form": form, "project": access.project, "access": access},
        status=status,
    )


@login_required
@require_POST
def project_archive(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.OWNER)
    project = access.project
    project.archived_at = None if project.is_archived else timezone.now()
    project.save(update_fields=["archived_at"])
    messages.success(request, "Project archived." if project.is_archived else "Project restored.")
    return redirect("project_settings", project_id)


@login_required
def members(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    form = AddMemberForm(request.POST or None, project=access.project)
    status = 200
    if request.method == "POST":
        access = project_access(request.user, project_id, needs=Role.OWNER)
        if form.is_valid():
            Membership.objects.create(
                project=access.project, user=form.cleaned_data["who"], role=form.cleaned_data["role"]
            )
            messages.success(request, f"{form.cleaned_data['who'].get_username()} added.")
            return redirect("members", project_id)
        status = 400
    memberships = access.project.memberships.select_related("user").order_by("user__username")
    return render(
        request,
        "workspace/members.html",
        {
            "project": access.project,
            "access": access,
            "memberships": memberships,
            "form": form,
            "roles": Role.choices,
            "owner_count": sum(1 for m in memberships if m.role == Role.OWNER),
        },
        status=status,
    )


def _owners_left_after(project: Project, membership: Membership, new_role: str | None) -> int:
    owners = project.memberships.filter(role=Role.OWNER).exclude(pk=membership.pk).count()
    return owners + (1 if new_role == Role.OWNER else 0)


@login_required
@require_POST
def member_role(request: HttpRequest, project_id: int, membership_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.OWNER)
    membership = get_object_or_404(Membership, project=access.project, pk=membership_id)
    form = ChangeRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose owner, editor or viewer.")
    elif _owners_left_after(access.project, membership, form.cleaned_data["role"]) == 0:
        messages.error(request, "A project needs at least one owner; make someone else owner first.")
    else:
        membership.role = form.cleaned_data["role"]
        membership.save(update_fields=["role"])
        messages.success(
            request, f"{membership.user.get_username()} is now {membership.get_role_display().lower()}."
        )
    return redirect("members", project_id)


@login_required
@require_POST
def member_remove(request: HttpRequest, project_id: int, membership_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.OWNER)
    membership = get_object_or_404(Membership, project=access.project, pk=membership_id)
    if _owners_left_after(access.project, membership, None) == 0:
        messages.error(request, "A project needs at least one owner; make someone else owner first.")
    else:
        membership.delete()
        messages.success(request, f"{membership.user.get_username()} removed.")
    return redirect("members", project_id)


# --- Spend ---------------------------------------------------------------------------------------------


@login_required
@require_GET
def spend_badge(request: HttpRequest) -> HttpResponse:
    return render(request, "base.html#spend-badge", {"badge_loaded": True})


@login_required
@require_GET
def my_spend(request: HttpRequest) -> HttpResponse:
    charges = LedgerEntry.objects.filter(
        user=request.user, created_at__gte=spend.month_start()
    ).select_related("project", "job")[:100]
    return render(
        request, "workspace/my_spend.html", {"summary": spend.summary_for(request.user), "charges": charges}
    )


def _staff_only(user) -> None:
    if not user.is_staff:
        raise Http404


@login_required
@require_GET
def spend_dashboard(request: HttpRequest) -> HttpResponse:
    _staff_only(request.user)
    form = SpendPeriodForm(request.GET or None)
    if request.GET and not form.is_valid():
        return render(request, "workspace/spend_dashboard.html", {"form": form, "report": None}, status=400)
    if not request.GET:
        form = SpendPeriodForm({"period": "this_month"})
        form.is_valid()
    report = spend.report(start=form.cleaned_data["start"], end=form.cleaned_data["end"])
    peak = max((day["cost"] for day in report.daily), default=spend.ZERO) or 1
    bars = [
        {"day": d["day"], "cost": d["cost"], "height": float(d["cost"] / peak * 100)} for d in report.daily
    ]
    return render(request, "workspace/spend_dashboard.html", {"form": form, "report": report, "bars": bars})


@login_required
@require_GET
def spend_csv(request: HttpRequest) -> HttpResponse:
    _staff_only(request.user)
    form = SpendPeriodForm(request.GET or {"period": "this_month"})
    if not form.is_valid():
        errors = "; ".join(f"{field}: {' '.join(messages_)}" for field, messages_ in form.errors.items())
        return HttpResponse(f"Bad period: {errors}", status=400, content_type="text/plain")
    report = spend.report(start=form.cleaned_data["start"], end=form.cleaned_data["end"])
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="atelier-spend-{report.start}-{report.end}.csv"'
    writer = csv.writer(response)
    writer.writerow(["section", "name", "cost_usd", "images", "calls", "tokens"])
    sections = [
        ("user", report.by_user, "user__username"),
        ("project", report.by_project, "project__name"),
        ("model", report.by_model, "model"),
    ]
    for section, rows, name in sections:
        for row in rows:
            writer.writerow([section, row[name], row["cost"], row["images"], row["calls"], row["tokens"]])
    for day in report.daily:
        writer.writerow(["day", day["day"].isoformat(), day["cost"], "", "", ""])
    totals = report.totals
    writer.writerow(["total", "", totals["cost"], totals["images"], totals["calls"], totals["tokens"]])
    return response


# --- References, edits and lineage --------------------------------------------------------------------


@login_required
def references(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    status = 200
    report = None
    if request.method == "POST":
        access = project_access(request.user, project_id, needs=Role.EDITOR)
        files = request.FILES.getlist("files")
        if not files:
            report = {"stored": [], "rejected": [], "problem": "Choose at least one image to upload."}
            status = 400
        else:
            stored, rejected = library.references_upload(
                project=access.project, user=request.user, files=files
            )
            report = {"stored": stored, "rejected": rejected, "problem": ""}
            status = 200 if stored else 400
        if not request.htmx and status == 200 and not report["rejected"]:
            messages.success(
                request, f"{len(report['stored'])} image{pluralize(len(report['stored']))} added."
            )
            return redirect("references", project_id)
    items = access.project.references.in_library().select_related("uploaded_by")
    context = {"project": access.project, "access": access, "items": items, "report": report}
    if request.htmx and request.method == "POST":
        return render(request, "workspace/references.html#library", context, status=status)
    return render(request, "workspace/references.html", context, status=status)


@login_required
@require_POST
def reference_remove(request: HttpRequest, project_id: int, reference_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR)
    reference = get_object_or_404(Reference, project=access.project, pk=reference_id)
    library.reference_remove(reference=reference)
    messages.success(
        request, f"{reference.name} removed from the library; images made from it keep it in their history."
    )
    return redirect("references", project_id)


@login_required
@require_GET
def reference_file(request: HttpRequest, project_id: int, reference_id: int, variant: str) -> FileResponse:
    access = project_access(request.user, project_id)
    reference = get_object_or_404(Reference, project=access.project, pk=reference_id)
    if variant not in ("file", "thumb"):
        raise Http404
    if variant == "thumb":
        return _serve(reference.thumbnail.name, content_type="image/webp")
    return _serve(reference.file.name, content_type=reference.content_type)


def _resolve_inputs(project: Project, tokens: list[str]) -> tuple[list, str]:
    """Turn ["img:5", "ref:3"] into Images and References of this project, in order, or say what is wrong."""
    if len(tokens) > settings.MAX_EDIT_INPUTS:
        return [], f"Choose at most {settings.MAX_EDIT_INPUTS} inputs; you chose {len(tokens)}."
    wanted: list[tuple[str, int]] = []
    for token in tokens:
        kind, _, number = token.partition(":")
        if kind not in ("img", "ref") or not number.isdigit():
            return [], f"“{token[:40]}” is not an image of this project."
        wanted.append((kind, int(number)))
    images = Image.objects.filter(project=project, pk__in=[n for k, n in wanted if k == "img"]).in_bulk()
    # Only what is in the library now; a removed reference lives on in lineage and "Reproduce".
    refs = (
        Reference.objects.in_library()
        .filter(project=project, pk__in=[n for k, n in wanted if k == "ref"])
        .in_bulk()
    )
    chosen = []
    for kind, number in wanted:
        source = images.get(number) if kind == "img" else refs.get(number)
        if source is None:
            return [], "One of the chosen inputs is not in this project (or no longer exists)."
        if not default_storage.exists(source.file.name):
            return (
                [],
                f"{getattr(source, 'name', f'Image {source.pk}')} is missing from storage; choose another.",
            )
        chosen.append(source)
    if len({(type(s).__name__, s.pk) for s in chosen}) != len(chosen):
        return [], "The same image is chosen twice; each input can appear once."
    return chosen, ""


def _token(source) -> str:
    return f"img:{source.pk}" if isinstance(source, Image) else f"ref:{source.pk}"


def _edit_context(access, form, chosen, tokens, problem="") -> dict:
    first = chosen[0] if chosen else None
    if first is not None:
        first_url = (
            reverse("image_file", args=[access.project.pk, first.pk])
            if isinstance(first, Image)
            else reverse("reference_file", args=[access.project.pk, first.pk, "file"])
        )
    else:
        first_url = ""
    chosen_tokens = [_token(source) for source in chosen]
    base = reverse("edit", args=[access.project.pk])

    def url_for(order: list[str]) -> str:
        return f"{base}?{urlencode([('inputs', token) for token in order])}" if order else base

    def moved_up(index: int) -> list[str]:
        order = list(chosen_tokens)
        order[index - 1], order[index] = order[index], order[index - 1]
        return order

    full = len(chosen_tokens) >= settings.MAX_EDIT_INPUTS
    picks = {
        "references": [
            {"source": r, "add_url": url_for([*chosen_tokens, _token(r)])}
            for r in access.project.references.in_library()[:60]
            if _token(r) not in chosen_tokens
        ],
        "images": [
            {"source": i, "add_url": url_for([*chosen_tokens, _token(i)])}
            for i in Image.objects.filter(project=access.project).order_by("-id")[:48]
            if _token(i) not in chosen_tokens
        ],
    }
    return {
        "project": access.project,
        "access": access,
        "form": form,
        "chosen": [
            {
                "source": s,
                "token": _token(s),
                "is_image": isinstance(s, Image),
                "remove_url": url_for(chosen_tokens[:i] + chosen_tokens[i + 1 :]),
                "up_url": url_for(moved_up(i)) if i else "",
            }
            for i, s in enumerate(chosen)
        ],
        "full": full,
        "tokens": tokens,
        "first": first,
        "first_url": first_url,
        "problem": problem,
        "picks": picks,
        "capabilities": imagemodels.capabilities(),
        "max_inputs": settings.MAX_EDIT_INPUTS,
    }


@login_required
def edit(request: HttpRequest, project_id: int) -> HttpResponse:
    """Edit earlier images: choose inputs in order, describe the change, optionally paint a mask."""
    access = project_access(request.user, project_id, needs=Role.EDITOR)
    if refusal := _archived(access):
        return refusal
    source = request.POST if request.method == "POST" else request.GET
    tokens = [token for token in source.getlist("inputs") if token][: settings.MAX_EDIT_INPUTS + 1]
    chosen, problem = _resolve_inputs(access.project, tokens)
    if request.method != "POST":
        again = request.GET.get("again")
        initial = {}
        if again and again.isdigit():
            job = Job.objects.filter(project=access.project, pk=int(again)).first()
            if job is not None:
                initial = EditForm.initial_from_job(job) | {"input_fidelity": job.input_fidelity}
        context = _edit_context(access, EditForm(initial=initial), chosen, tokens, problem)
        return render(request, "workspace/edit.html", context, status=400 if problem else 200)

    form = EditForm(request.POST, request.FILES)
    mask_bytes = None
    if form.is_valid() and not problem:
        if not chosen:
            problem = "Choose at least one image to edit."
        else:
            upload = form.cleaned_data.get("mask_file") or request.FILES.get("mask")
            if upload is not None:
                first = chosen[0]
                try:
                    mask_bytes = uploads.clean_mask(upload, width=first.width, height=first.height).data
                except uploads.UploadRejected as refusal:
                    form.add_error("mask_file", str(refusal))
    if not form.is_valid() or problem:
        return render(
            request, "workspace/edit.html", _edit_context(access, form, chosen, tokens, problem), status=400
        )
    try:
        job = jobs.edit_create(
            project=access.project,
            author=request.user,
            prompt=form.cleaned_data["prompt"],
            params=form.job_params(),
            inputs=chosen,
            mask=mask_bytes,
        )
    except spend.BudgetExceeded as refusal:
        form.add_error(None, str(refusal))
        return render(request, "workspace/edit.html", _edit_context(access, form, chosen, tokens), status=402)
    return redirect(f"{access.project.get_absolute_url()}#job-{job.pk}")


@login_required
@require_POST
def job_reproduce(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR)
    job = get_object_or_404(Job, project=access.project, pk=job_id)
    if refusal := _archived(access):
        return refusal
    try:
        new_job = jobs.job_reproduce(job=job, author=request.user)
    except spend.BudgetExceeded as refusal:
        messages.error(request, str(refusal))
        return redirect(request.POST.get("next") or access.project.get_absolute_url())
    messages.success(request, "Queued the same request again.")
    return redirect(f"{access.project.get_absolute_url()}#job-{new_job.pk}")


@login_required
@require_GET
def image_family(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    access, image = _image_for(request, project_id, image_id)
    tree = lineage.family(image)
    return render(
        request,
        "workspace/family.html",
        {"project": access.project, "access": access, "image": image, "family": tree},
    )


@login_required
@require_GET
def image_composite(request: HttpRequest, project_id: int, image_id: int, variant: str) -> FileResponse:
    _, image = _image_for(request, project_id, image_id)
    if not image.composite or variant not in ("file", "thumb", "download"):
        raise Http404
    if variant == "thumb":
        return _serve(image.composite_thumbnail.name, content_type="image/webp")
    download = f"{image.download_name.rsplit('.', 1)[0]}-pasted.png" if variant == "download" else None
    return _serve(image.composite.name, content_type="image/png", download_name=download)


@login_required
@require_GET
def job_preview(request: HttpRequest, project_id: int, job_id: int) -> FileResponse:
    _, job = object_access(request.user, Job.objects.all(), project_id=project_id, pk=job_id)
    if not job.preview:
        raise Http404
    extension = job.preview.name.rsplit(".", 1)[-1]
    content_type = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}.get(extension)
    if content_type is None:
        raise Http404
    return _serve(job.preview.name, content_type=content_type)


# --- The gallery, review and hand-off -----------------------------------------------------------------

DELETE_UNDO_MINUTES = 10
FILTER_KEYS = ("q", "author", "model", "review", "favourites", "kind", "aspect", "since", "until")


def _filters_query(request: HttpRequest) -> str:
    """The current filters as a query string, so links keep the view (and share it)."""
    kept = [(key, value) for key in FILTER_KEYS for value in request.GET.getlist(key) if value]
    return urlencode(kept)


@login_required
@require_GET
def gallery_view(request: HttpRequest, project_id: int) -> HttpResponse:
    access, members = project_access_with_members(request.user, project_id)
    authors = [(m.user_id, m.user.get_username()) for m in members]
    form = GalleryFilterForm(request.GET, authors=authors)
    problem = ""
    result = gallery.Page(items=[], next_cursor="")
    if not form.is_valid():
        problem = next(iter(form.errors.values()))[0]
    else:
        images = gallery.filtered(project=access.project, user=request.user, data=form.cleaned_data)
        try:
            result = gallery.page(images, cursor=request.GET.get("after", ""))
        except gallery.BadCursor:
            problem = "That page link has expired; showing the newest images instead."
            result = gallery.page(images)
    context = {
        "project": access.project,
        "access": access,
        "form": form,
        "page": result,
        "problem": problem,
        "filters": _filters_query(request),
    }
    if request.htmx and request.GET.get("after"):
        return render(request, "workspace/gallery.html#gallery-page", context)
    context["active_jobs"] = (
        Job.objects.active().filter(project=access.project).select_related("author").order_by("-id")[:12]
    )
    if request.htmx:
        return render(request, "workspace/gallery.html#results", context)
    return render(request, "workspace/gallery.html", context)


def _selected(request: HttpRequest, project: Project):
    ids = [int(value) for value in request.POST.getlist("ids") if value.isdigit()][:500]
    return Image.objects.visible().filter(project=project, pk__in=ids)


@login_required
@require_POST
def bulk(request: HttpRequest, project_id: int) -> HttpResponse:
    """Act on the selected images: download, compare, favourite, review."""
    access = project_access(request.user, project_id)
    action = request.POST.get("action", "")
    selected = _selected(request, access.project)
    if request.POST.get("approved_only"):
        selected = selected.filter(review_state=Image.Review.APPROVED)
    back = f"{reverse('gallery', args=[project_id])}?{request.POST.get('filters', '')}"
    if not selected.exists():
        messages.error(request, "None of the selected images are in this project (or none were selected).")
        return redirect(back)
    if action == "download":
        images = export.prefetch_for_export(selected.order_by("-created_at", "-id"))
        response = StreamingHttpResponse(export.zip_stream(images), content_type="application/zip")
        response["Content-Disposition"] = (
            f'attachment; filename="{export.export_filename(access.project, len(images))}"'
        )
        response["X-Accel-Buffering"] = "no"  # a buffering proxy would hold the whole archive
        return response
    if action == "compare":
        ids = list(selected.order_by("-created_at").values_list("pk", flat=True)[:5])
        if not 2 <= len(ids) <= 4:
            messages.error(request, "Choose 2 to 4 images to compare.")
            return redirect(back)
        return redirect(f"{reverse('compare', args=[project_id])}?{urlencode([('ids', pk) for pk in ids])}")
    if action in ("favourite", "unfavourite"):
        count = review.favourite_many(user=request.user, images=list(selected), on=action == "favourite")
        messages.success(
            request, f"{'Starred' if action == 'favourite' else 'Unstarred'} {count} image{pluralize(count)}."
        )
        return redirect(back)
    if action in Image.Review.values:
        if not access.can_edit:
            raise PermissionDenied("Only editors can review images.")
        count = review.review_many(user=request.user, images=selected, state=action)
        messages.success(
            request, f"Marked {count} image{pluralize(count)} {Image.Review(action).label.lower()}."
        )
        return redirect(back)
    return HttpResponse("Unknown action.", status=400)


@login_required
@require_POST
def image_favourite(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    access, image = _image_for(request, project_id, image_id)
    on = request.POST.get("on") == "1"
    review.favourite_many(user=request.user, images=[image], on=on)
    if request.htmx:
        image.is_favourite = on
        return render(
            request, "workspace/image_detail.html#favourite", {"image": image, "project": access.project}
        )
    return redirect(image)


@login_required
@require_POST
def image_review(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR)
    image = get_object_or_404(Image.objects.visible(), project=access.project, pk=image_id)
    state = request.POST.get("state", "")
    if state not in Image.Review.values:
        return HttpResponse("Choose draft, approved or rejected.", status=400)
    review.review_many(user=request.user, images=Image.objects.filter(pk=image.pk), state=state)
    return redirect(f"{image.get_absolute_url()}?{request.POST.get('filters', '')}")


@login_required
@require_POST
def image_comment(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    _, image = _image_for(request, project_id, image_id)
    body = request.POST.get("body", "").strip()
    if not body:
        messages.error(request, "Write something before posting a comment.")
    elif len(body) > 4000:
        messages.error(request, "Comments are limited to 4,000 characters.")
    else:
        Comment.objects.create(image=image, author=request.user, body=body)
    return redirect(f"{image.get_absolute_url()}#comments")


@login_required
@require_POST
def image_delete(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR)
    image = get_object_or_404(Image, project=access.project, pk=image_id)
    if request.POST.get("undo"):
        window = timezone.now() - timedelta(minutes=DELETE_UNDO_MINUTES)
        restored = Image.objects.filter(pk=image.pk, deleted_at__gte=window).update(
            deleted_at=None, deleted_by=None
        )
        if restored:
            messages.success(request, "Image restored.")
        else:
            messages.error(request, f"It is more than {DELETE_UNDO_MINUTES} minutes since it was deleted.")
        return redirect(image)
    Image.objects.filter(pk=image.pk, deleted_at__isnull=True).update(
        deleted_at=timezone.now(), deleted_by=request.user
    )
    messages.success(
        request, f"Image {image.pk} deleted. You can undo this for {DELETE_UNDO_MINUTES} minutes."
    )
    return redirect(image)


@login_required
@require_GET
def image_convert(request: HttpRequest, project_id: int, image_id: int, target: str) -> HttpResponse:
    """Download the original re-encoded as PNG, JPEG or WebP."""
    _, image = _image_for(request, project_id, image_id)
    if target not in ("png", "jpeg", "webp"):
        raise Http404
    data = outputs.convert(name=image.file.name, target=target)
    extension = "jpg" if target == "jpeg" else target
    response = HttpResponse(data, content_type=f"image/{target}")
    response["Content-Disposition"] = (
        f'attachment; filename="{image.download_name.rsplit(".", 1)[0]}.{extension}"'
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_GET
def compare(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    ids = [int(value) for value in request.GET.getlist("ids") if value.isdigit()]
    images = list(Image.objects.visible().filter(project=access.project, pk__in=ids).select_related("job"))
    images.sort(key=lambda image: ids.index(image.pk))
    status = 200 if 2 <= len(images) <= 4 else 400
    return render(
        request,
        "workspace/compare.html",
        {"project": access.project, "access": access, "images": images},
        status=status,
    )


@login_required
@require_GET
def prompt_history(request: HttpRequest, project_id: int | None = None) -> HttpResponse:
    """Every prompt submitted, identical ones grouped: for a project, or mine across my projects."""
    if project_id is not None:
        access = project_access(request.user, project_id)
        scope = Job.objects.filter(project=access.project)
        project = access.project
    else:
        access, project = None, None
        scope = Job.objects.filter(author=request.user, project__in=Project.objects.for_user(request.user))
    query = " ".join(request.GET.get("q", "").split())[:300]
    groups = history.prompt_groups(jobs=scope, query=query)
    return render(
        request,
        "workspace/prompts.html",
        {"project": project, "access": access, "groups": groups, "query": query},
    )
