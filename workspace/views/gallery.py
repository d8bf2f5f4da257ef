"""The gallery and what is done from it: bulk actions, side-by-side comparison, prompt history."""

from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.postgres.expressions import ArraySubquery
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import OuterRef
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from workspace import export, gallery, history, limits, review
from workspace.access import ProjectAccess, project_access, project_access_with_members
from workspace.campaign_models import Campaign, PromptTemplate
from workspace.forms import PROMPT_SEARCH_MAX_CHARS, PromptSearchForm
from workspace.gallery import GalleryFilterForm
from workspace.models import Image, Job, Project
from workspace.views._common import filters_query, parse_id


@login_required
@require_GET
def gallery_view(request: HttpRequest, project_id: int) -> HttpResponse:
    access, members = project_access_with_members(request.user, project_id, annotations=_choice_annotations())
    authors = [(m.user_id, m.user.get_username()) for m in members]
    templates, campaigns = _filter_choices(access.project, members)
    form = GalleryFilterForm(request.GET, authors=authors, templates=templates, campaigns=campaigns)
    problem = ""
    status = 200
    result = gallery.Page(items=[], next_cursor="")
    if not form.is_valid():
        problem = next(iter(form.errors.values()))[0]
        status = 400
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
        "filters": filters_query(request),
        "undo_image": _undoable(access, request.GET.get("deleted")),
        "undo_minutes": review.DELETE_UNDO_MINUTES,
    }
    if request.htmx and request.GET.get("after"):
        return render(request, "workspace/gallery.html#gallery-page", context, status=status)
    context["active_jobs"] = (
        Job.objects.active().filter(project=access.project).select_related("author").order_by("-id")[:12]
    )
    if request.htmx:
        return render(request, "workspace/gallery.html#results", context, status=status)
    return render(request, "workspace/gallery.html", context, status=status)


def _choice_annotations() -> dict:
    """The template and campaign filters' choices as arrays on the members query: on Postgres they
    cost no query of their own (a gallery page stays within four queries)."""
    if connection.vendor != "postgresql":
        return {}
    templates = PromptTemplate.objects.filter(project_id=OuterRef("project_id")).order_by("name", "id")
    campaigns = Campaign.objects.filter(project_id=OuterRef("project_id")).order_by("-created_at", "-id")
    return {
        "template_ids": ArraySubquery(templates.values("pk")),
        "template_names": ArraySubquery(templates.values("name")),
        "campaign_ids": ArraySubquery(campaigns.values("pk")),
        "campaign_names": ArraySubquery(campaigns.values("name")),
    }


def _filter_choices(project: Project, members: list) -> tuple[list, list]:
    if members and hasattr(members[0], "template_ids"):
        first = members[0]
        return (
            list(zip(first.template_ids, first.template_names, strict=True)),
            list(zip(first.campaign_ids, first.campaign_names, strict=True)),
        )
    return (
        list(PromptTemplate.objects.filter(project=project).order_by("name", "id").values_list("pk", "name")),
        list(
            Campaign.objects.filter(project=project).order_by("-created_at", "-id").values_list("pk", "name")
        ),
    )


def _undoable(access: ProjectAccess, deleted: str | None) -> Image | None:
    """The image just deleted (?deleted=<id>), while its delete can still be undone, for the undo button:
    the image's own page is a 404 once it is deleted."""
    pk = parse_id(deleted)
    if pk is None or not access.can_edit:
        return None
    window = timezone.now() - timedelta(minutes=review.DELETE_UNDO_MINUTES)
    return Image.objects.filter(
        project=access.project, pk=pk, deleted_at__gte=window, purged_at__isnull=True
    ).first()


def _selected(request: HttpRequest, project: Project):
    # One bad id among many is skipped, as a stale checkbox would be.
    ids = [pk for value in request.POST.getlist("ids") if (pk := parse_id(value)) is not None][:500]
    return Image.objects.visible().filter(project=project, pk__in=ids)


@login_required
@require_POST
def bulk(request: HttpRequest, project_id: int) -> HttpResponse:
    """Act on the selected images: download, compare, favourite, review."""
    action = request.POST.get("action", "")
    # Downloading and comparing read; starring and reviewing write, which an archived project refuses.
    access = project_access(request.user, project_id, writes=action not in ("download", "compare"))
    selected = _selected(request, access.project)
    if request.POST.get("approved_only"):
        selected = selected.filter(review_state=Image.Review.APPROVED)
    back = f"{reverse('gallery', args=[project_id])}?{request.POST.get('filters', '')}"
    if not selected.exists():
        messages.error(request, "None of the selected images are in this project (or none were selected).")
        return redirect(back)
    if action == "download":
        # A ZIP holds this thread for the whole download: at most MAX_CONCURRENT_ZIPS per process, and no
        # waiting for one (a slot may stay taken for minutes): limits.Busy answers 503 at once.
        release = limits.ZIP_STREAMS.take()
        try:
            images = export.prefetch_for_export(selected.order_by("-created_at", "-id"))
        except BaseException:
            release()
            raise
        # Everything the archive needs is in memory now and the stream runs no query; outside a transaction,
        # give the connection back rather than keep it idle through a download that may last minutes.
        if not connection.in_atomic_block:
            connection.close()
        stream = export.SlotStream(export.zip_stream(images), release=release)
        response = StreamingHttpResponse(stream, content_type="application/zip")
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
@require_GET
def compare(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    ids = [pk for value in request.GET.getlist("ids") if (pk := parse_id(value)) is not None]
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
    query = " ".join(request.GET.get("q", "").split())[:PROMPT_SEARCH_MAX_CHARS]
    groups = history.prompt_groups(jobs=scope, query=query)
    return render(
        request,
        "workspace/prompts.html",
        {
            "project": project,
            "access": access,
            "groups": groups,
            "query": query,
            "search_form": PromptSearchForm(initial={"q": query}, auto_id="prompt-%s"),
        },
    )
