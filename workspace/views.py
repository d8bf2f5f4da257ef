import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, Max, Prefetch
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from workspace import imagemodels, jobs, spend
from workspace.access import project_access
from workspace.forms import AddMemberForm, ChangeRoleForm, GenerationForm, ProjectForm, SpendPeriodForm
from workspace.models import Image, Job, LedgerEntry, Membership, Project, Role

FEED_PAGE_SIZE = 12


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    projects = (
        Project.objects.for_user(request.user)
        .annotate(image_count=Count("images", distinct=True), last_activity=Max("jobs__created_at"))
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


def _feed(project: Project, before: str | None):
    queryset = (
        Job.objects.filter(project=project)
        .select_related("author")
        .prefetch_related(Prefetch("images", queryset=Image.objects.order_by("index")))
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
    if access.project.is_archived:
        return HttpResponse("This project is archived; unarchive it to make images.", status=409)
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
            Prefetch("images", queryset=Image.objects.order_by("index"))
        ),
        project=access.project,
        pk=job_id,
    )


@login_required
@require_GET
def job_card(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    job = _job_for(access, job_id)
    context = {"job": job, "access": access, "project": access.project}
    response = render(request, "workspace/project.html#job-card", context)
    if not job.is_active and request.htmx:
        # Tell screen readers once, from a live region that polling does not replace, and move the badge.
        response.content += render(request, "workspace/project.html#job-announcement", context).content
        if job.author_id == request.user.pk:
            response.content += render(request, "base.html#spend-badge", {"badge_oob": True}).content
        response.status_code = HTMX_STOP_POLLING
    return response


@login_required
@require_GET
def estimate(request: HttpRequest, project_id: int) -> HttpResponse:
    """The expected cost of the form as it stands; the form refreshes it as fields change."""
    access = project_access(request.user, project_id)
    form = GenerationForm(request.GET)
    form.fields["prompt"].required = False  # the cost does not wait for the words
    context = {"project": access.project, "estimate": False, "estimate_problem": ""}
    if form.is_valid():
        context["estimate"] = jobs.job_estimate(prompt=form.cleaned_data["prompt"], params=form.job_params())
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
    if access.project.is_archived:
        return HttpResponse("This project is archived; unarchive it to make images.", status=409)
    try:
        jobs.job_retry(job=job)
    except spend.BudgetExceeded as refusal:
        if request.htmx:
            return HttpResponse(str(refusal), status=402)
        messages.error(request, str(refusal))
    return _after_job_action(request, access, job_id)


def _image_for(request: HttpRequest, project_id: int, image_id: int) -> tuple:
    access = project_access(request.user, project_id)
    image = get_object_or_404(
        Image.objects.select_related("job", "job__author"), project=access.project, pk=image_id
    )
    return access, image


@login_required
@require_GET
def image_detail(request: HttpRequest, project_id: int, image_id: int) -> HttpResponse:
    access, image = _image_for(request, project_id, image_id)
    reported = image.job.api_calls.filter(outcome="ok").order_by("-id").first()
    siblings = image.job.images.order_by("index")
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
