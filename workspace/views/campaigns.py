"""Campaigns: the list, the grid and batch setup pages, a campaign's page (progress, grid or rows,
controls), its cells, and its ZIP."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from workspace import batches, campaign_runs, export, grids, limits, review, spend
from workspace.access import ProjectAccess, project_access
from workspace.campaign_forms import BatchForm, GridForm, chosen_template_version
from workspace.campaign_models import Campaign
from workspace.models import Favourite, Image, Job, Role
from workspace.views._common import parse_id

PAGE = "workspace/campaign_detail.html"
CELLS_PER_PAGE = 24


def _campaign(access: ProjectAccess, campaign_id: int) -> Campaign:
    return get_object_or_404(
        # A draft's rows can be megabytes; only the draft's own page reads them.
        Campaign.objects.select_related(
            "template_version__template", "brand_kit_version__kit", "author"
        ).defer("rows"),
        project=access.project,
        pk=campaign_id,
    )


def _jobs(campaign: Campaign):
    return (
        Job.objects.filter(campaign=campaign)
        .only(
            "id",
            "project_id",
            "campaign_id",
            "status",
            "prompt",
            "campaign_row",
            "cell",
            "variables",
            "error_message",
            "retry_reason",
            "quality",
            "model",
            "size",
            "n",
            "created_at",
        )
        .prefetch_related(
            Prefetch(
                "images",
                queryset=Image.objects.visible()
                .only("id", "job_id", "project_id", "width", "height", "composite", "review_state", "format")
                .order_by("index"),
            )
        )
    )


def _labelled(campaign: Campaign, jobs: list[Job]) -> list[Job]:
    """Each batch row's key column value (its SKU, say) for its card's title."""
    for job in jobs:
        job.key_value = job.variables.get(campaign.key_column, "") if campaign.key_column else ""
    return jobs


def _starred(user, jobs: list[Job]) -> set[int]:
    ids = [image.pk for job in jobs for image in job.images.all()]
    if not ids:
        return set()
    return set(Favourite.objects.filter(user=user, image_id__in=ids).values_list("image_id", flat=True))


@login_required
@require_GET
def campaign_list(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    items = list(
        Campaign.objects.filter(project=access.project)
        .exclude(status=Campaign.Status.DRAFT)
        .select_related("author")
        .order_by("-created_at", "-id")[:100]
    )
    drafts = list(
        Campaign.objects.filter(
            project=access.project, status=Campaign.Status.DRAFT, author=request.user
        ).order_by("-created_at", "-id")[:10]
    )
    return render(
        request,
        "workspace/campaigns.html",
        {
            "project": access.project,
            "access": access,
            "campaigns": items,
            "drafts": drafts,
            "tab": "campaigns",
        },
    )


def _template_version(access: ProjectAccess, request: HttpRequest):
    """The chosen template version (the form's data when posted, else the query), or None."""
    return chosen_template_version(access.project, request.POST if request.method == "POST" else request.GET)


@login_required
@require_http_methods(["GET", "POST"])
def campaign_grid_new(request: HttpRequest, project_id: int) -> HttpResponse:
    """Set up a grid; "Show the grid" draws it with its estimate, "Run" queues it."""
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=request.method == "POST")
    version = _template_version(access, request)
    initial = {
        "template": version.template if version else None,
        # Preselect only a version asked for by name (a link from an old version's page).
        "template_version": version.pk
        if version and parse_id(request.GET.get("template_version")) == version.pk
        else None,
    }
    form = GridForm(request.POST or None, project=access.project, template_version=version, initial=initial)
    context = {
        "project": access.project,
        "access": access,
        "form": form,
        "version": version,
        "tab": "campaigns",
        "axis_help": [
            (label, ", ".join(grids.allowed_values(name))) for name, label in grids.PARAMETER_AXES.items()
        ],
    }
    if request.method == "GET" or not form.is_valid():
        return render(
            request,
            "workspace/campaign_grid_new.html",
            context,
            status=200 if request.method == "GET" else 400,
        )
    kit = form.kit_version()
    prompt = form.cleaned_data.get("prompt", "")
    try:
        plan = form.plan(project=access.project)
    except grids.GridProblem as problem:
        form.add_error(problem.field if problem.field in form.fields else None, str(problem))
        return render(request, "workspace/campaign_grid_new.html", context, status=400)
    context["plan"] = plan
    if request.POST.get("action") != "run":
        return render(request, "workspace/campaign_grid_new.html", context)
    name = form.campaign_name(plan)
    try:
        campaign = grids.grid_create(
            project=access.project,
            author=request.user,
            name=name,
            template_version=version,
            brand_kit_version=kit,
            prompt=prompt,
            plan=plan,
            base=form.base(),
            overnight=form.cleaned_data["overnight"],
        )
    except spend.BudgetExceeded as refusal:
        form.add_error(None, _refusal_text(refusal, plan.total))
        return render(request, "workspace/campaign_grid_new.html", context, status=402)
    return redirect(campaign)


def _refusal_text(refusal: spend.BudgetExceeded, total) -> str:
    return (
        f"This would hold about ${total:.2f} back, but only ${refusal.remaining:.2f} is left of the "
        "budget this month. Nothing was queued: make the grid or the file smaller, or ask for a "
        "larger budget."
    )


@login_required
@require_http_methods(["GET", "POST"])
def campaign_batch_new(request: HttpRequest, project_id: int) -> HttpResponse:
    """Upload a CSV: every row checked; problems listed by row and column, or a draft to preview."""
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=request.method == "POST")
    initial = {name: parse_id(request.GET.get(name)) for name in ("template", "template_version")}
    form = BatchForm(request.POST or None, request.FILES or None, project=access.project, initial=initial)
    context = {"project": access.project, "access": access, "form": form, "tab": "campaigns"}
    if request.method == "GET":
        return render(request, "workspace/campaign_batch_new.html", context)
    if not form.is_valid():
        return render(request, "workspace/campaign_batch_new.html", context, status=400)
    upload = form.cleaned_data["file"]
    version = form.cleaned_data["template_version"]
    try:
        campaign, _checked = batches.batch_draft(
            project=access.project,
            author=request.user,
            name=form.cleaned_data["name"] or f"{version}: {upload.name}"[:120],
            source_name=upload.name,
            template_version=version,
            brand_kit_version=form.kit_version(),
            data=upload.read(),
            base=form.base(),
            key_column=form.cleaned_data["key_column"].strip(),
            overnight=form.cleaned_data["overnight"],
        )
    except batches.BatchRefused as refusal:
        context["refusal"] = refusal
        return render(request, "workspace/campaign_batch_new.html", context, status=400)
    return redirect(campaign)


@login_required
@require_GET
def campaign_detail(request: HttpRequest, project_id: int, campaign_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    campaign = _campaign(access, campaign_id)
    context = {"project": access.project, "access": access, "campaign": campaign, "tab": "campaigns"}
    context["cell_base"] = reverse("campaign_detail", args=[project_id, campaign_id]) + "jobs/"
    if campaign.status == Campaign.Status.DRAFT:
        campaign.refresh_from_db(fields=["rows"])
        context["preview"] = batches.preview(campaign)
        context["row_count"] = len(campaign.rows)
        return render(request, PAGE, context)
    context["progress"] = campaign_runs.progress(campaign)
    if campaign.kind == Campaign.Kind.GRID:
        jobs = list(_jobs(campaign).order_by("id"))
        context["grid"] = _grid_rows(campaign, jobs)
    else:
        paginator = Paginator(_jobs(campaign).order_by("campaign_row", "id"), CELLS_PER_PAGE)
        paginator.__dict__["count"] = context["progress"].total  # counted already; no second COUNT
        page = paginator.get_page(request.GET.get("page"))
        jobs = _labelled(campaign, list(page.object_list))
        context["page"] = page
        context["cells"] = jobs
    context["starred"] = _starred(request.user, jobs)
    return render(request, PAGE, context)


def _grid_rows(campaign: Campaign, jobs: list[Job]) -> dict:
    """The grid as the page draws it: first axis down, second across, each cell its job."""
    axes = campaign.axes
    by_cell = {tuple(job.cell.get(axis["name"]) for axis in axes): job for job in jobs}
    across = axes[1]["values"] if len(axes) > 1 else [None]
    rows = []
    for down in axes[0]["values"]:
        rows.append(
            {
                "value": down,
                "cells": [by_cell.get((down, value) if len(axes) > 1 else (down,)) for value in across],
            }
        )
    return {
        "down": grids.axis_label(axes[0]["name"]),
        "across": grids.axis_label(axes[1]["name"]) if len(axes) > 1 else "",
        "columns": across,
        "rows": rows,
    }


@login_required
@require_GET
def campaign_progress(request: HttpRequest, project_id: int, campaign_id: int) -> HttpResponse:
    """The live counts (polled while the campaign runs)."""
    access = project_access(request.user, project_id)
    campaign = _campaign(access, campaign_id)
    context = {"project": access.project, "access": access, "campaign": campaign}
    context["progress"] = campaign_runs.progress(campaign)
    response = render(request, f"{PAGE}#progress", context)
    if request.htmx and not campaign.is_running:
        response.status_code = HTMX_STOP_POLLING
    return response


def _cell_job(access: ProjectAccess, campaign: Campaign, job_id: int) -> Job:
    return _labelled(campaign, [get_object_or_404(_jobs(campaign), pk=job_id)])[0]


@login_required
@require_GET
def campaign_cell(request: HttpRequest, project_id: int, campaign_id: int, job_id: int) -> HttpResponse:
    """One cell (a grid cell or a batch row), polled while its job runs."""
    access = project_access(request.user, project_id)
    campaign = _campaign(access, campaign_id)
    job = _cell_job(access, campaign, job_id)
    context = {
        "project": access.project,
        "access": access,
        "campaign": campaign,
        "job": job,
        "starred": _starred(request.user, [job]),
        "cell_base": reverse("campaign_detail", args=[project_id, campaign_id]) + "jobs/",
    }
    response = render(request, f"{PAGE}#cell", context)
    if request.htmx and job.status in Job.FINAL_STATUSES:
        response.status_code = HTMX_STOP_POLLING
    return response


def _back(campaign: Campaign, job_id: int | None = None) -> str:
    return campaign.get_absolute_url() + (f"#cell-{job_id}" if job_id else "")


def _cell_image(access: ProjectAccess, campaign: Campaign, job_id: int, request: HttpRequest) -> Image:
    job = _cell_job(access, campaign, job_id)
    image_id = parse_id(request.POST.get("image"))
    images = [image for image in job.images.all() if image_id is None or image.pk == image_id]
    if not images:
        raise Http404("This cell has no image yet.")
    return images[0]


@login_required
@require_POST
def campaign_cell_star(request: HttpRequest, project_id: int, campaign_id: int, job_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, writes=True)
    campaign = _campaign(access, campaign_id)
    image = _cell_image(access, campaign, job_id, request)
    review.favourite_many(user=request.user, images=[image], on=request.POST.get("on") == "1")
    return _after_cell(request, access, campaign, job_id)


@login_required
@require_POST
def campaign_cell_review(
    request: HttpRequest, project_id: int, campaign_id: int, job_id: int
) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    campaign = _campaign(access, campaign_id)
    image = _cell_image(access, campaign, job_id, request)
    state = request.POST.get("state", "")
    if state not in Image.Review.values:
        return HttpResponse("Choose draft, approved or rejected.", status=400)
    review.review_many(user=request.user, images=Image.objects.filter(pk=image.pk), state=state)
    return _after_cell(request, access, campaign, job_id)


def _after_cell(request, access, campaign, job_id) -> HttpResponse:
    if request.htmx:
        job = _cell_job(access, campaign, job_id)
        context = {
            "project": access.project,
            "access": access,
            "campaign": campaign,
            "job": job,
            "starred": _starred(request.user, [job]),
            "cell_base": campaign.get_absolute_url() + "jobs/",
        }
        return render(request, f"{PAGE}#cell", context)
    return redirect(_back(campaign, job_id))


@login_required
@require_POST
def campaign_cell_default(
    request: HttpRequest, project_id: int, campaign_id: int, job_id: int
) -> HttpResponse:
    """ "Use this as the new default": a new template version with this cell's settings and values,
    or (a plain-prompt grid) the Studio filled from this cell."""
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    campaign = _campaign(access, campaign_id)
    job = get_object_or_404(
        Job.objects.select_related("campaign__template_version__template"), campaign=campaign, pk=job_id
    )
    try:
        version = grids.cell_as_default(job=job, author=request.user)
    except ValueError as refusal:
        # e.g. the cell's model was retired since it ran: no version is saved, and the page says why.
        messages.error(request, f"No new version was saved: {refusal}")
        return redirect(_back(campaign, job_id))
    if version is None:
        messages.info(request, "The Studio is filled in from this cell: change what you like and generate.")
        return redirect(f"{reverse('project', args=[project_id])}?again={job.pk}#generate")
    ran = job.campaign.template_version
    based = (
        ""
        if ran.number == version.number - 1
        else f", made from version {ran.number} (the one this grid ran)"
    )
    messages.success(
        request,
        f"Saved {version.template.name} version {version.number} with this cell's settings as its "
        f"defaults{based}.",
    )
    return redirect(_back(campaign, job_id))


@login_required
@require_POST
def campaign_confirm(request: HttpRequest, project_id: int, campaign_id: int) -> HttpResponse:
    """Queue a checked draft: the rows held by the server, the whole estimate reserved at once."""
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    campaign = _campaign(access, campaign_id)
    if campaign.status != Campaign.Status.DRAFT:
        messages.info(request, "This batch is already queued.")
        return redirect(campaign)
    try:
        batches.batch_confirm(
            campaign=campaign, author=request.user, key_column=request.POST.get("key_column", "").strip()
        )
    except spend.BudgetExceeded as refusal:
        messages.error(request, _refusal_text(refusal, campaign.estimated_cost or 0))
        return redirect(campaign)
    except batches.BatchRefused as refusal:
        messages.error(request, f"Nothing was queued. {refusal}")
        return redirect(campaign)
    except ValueError:
        messages.info(request, "This batch is already queued.")
    return redirect(campaign)


CONTROLS = {"pause", "resume", "cancel", "retry", "discard"}


@login_required
@require_POST
def campaign_control(request: HttpRequest, project_id: int, campaign_id: int) -> HttpResponse:
    """Pause, resume, cancel the rest, retry the failed rows, or discard a draft."""
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    campaign = _campaign(access, campaign_id)
    action = request.POST.get("action", "")
    if action not in CONTROLS:
        return HttpResponse("Choose pause, resume, cancel, retry or discard.", status=400)
    if action == "pause" and not campaign_runs.campaign_pause(campaign=campaign):
        messages.info(request, "Only a running campaign can be paused.")
    elif action == "resume" and not campaign_runs.campaign_resume(campaign=campaign):
        messages.info(request, "Only a paused campaign can be resumed.")
    elif action == "cancel":
        count = campaign_runs.campaign_cancel(campaign=campaign)
        messages.success(
            request, f"Canceled {count} waiting job{'s' if count != 1 else ''}; their budget is free again."
        )
    elif action == "retry":
        try:
            count = campaign_runs.campaign_retry_failed(campaign=campaign, actor=request.user)
            messages.success(request, f"Queued {count} failed job{'s' if count != 1 else ''} again.")
        except spend.BudgetExceeded as refusal:
            messages.error(request, str(refusal))
    elif (
        action == "discard"
        and Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.DRAFT).delete()[0]
    ):
        messages.success(request, "The draft was discarded; nothing was queued.")
        return redirect("campaigns", project_id)
    return redirect(campaign)


@login_required
@require_GET
def campaign_zip(request: HttpRequest, project_id: int, campaign_id: int) -> HttpResponse:
    """The campaign's images as a ZIP, each named by the chosen column (`?column=sku`)."""
    access = project_access(request.user, project_id)
    campaign = _campaign(access, campaign_id)
    column = request.GET.get("column", campaign.key_column).strip()
    if column and column not in campaign.columns:
        return HttpResponse(f"This batch has no column “{column[:60]}”.", status=400)
    images = campaign_runs.campaign_images(campaign)
    if request.GET.get("approved_only"):
        images = images.filter(review_state=Image.Review.APPROVED)
    release = limits.ZIP_STREAMS.take()
    try:
        chosen = export.prefetch_for_export(images)
        names = campaign_runs.zip_names(campaign, chosen, column=column)
    except BaseException:
        release()
        raise
    if not connection.in_atomic_block:
        connection.close()  # the stream runs no query; give the connection back for the download
    stream = export.SlotStream(export.zip_stream(chosen, names=names), release=release)
    response = StreamingHttpResponse(stream, content_type="application/zip")
    slug = slugify(campaign.name)[:60].strip("-") or f"campaign-{campaign.pk}"
    response["Content-Disposition"] = f'attachment; filename="atelier-{slug}-{len(chosen)}-images.zip"'
    response["X-Accel-Buffering"] = "no"
    return response
