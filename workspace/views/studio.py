"""The studio: a project's page with its job feed and form, and everything done to one job."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING, trigger_client_event

from workspace import campaigns, edits, formats, imagemodels, jobs, spend
from workspace.access import ProjectAccess, job_card_access, object_access, project_access
from workspace.campaign_forms import StudioForm
from workspace.campaign_models import BrandKit, BrandKitVersion, PromptTemplate, TemplateVersion
from workspace.forms import EditForm, GenerationForm
from workspace.models import Image, Job, Project, Role
from workspace.views._common import parse_id, safe_next, serve

FEED_PAGE_SIZE = 12
JOB_CARD = "workspace/_job_card.html"


def _feed(project: Project, before: int | None) -> tuple[list[Job], int | None]:
    queryset = (
        Job.objects.filter(project=project)
        .select_related("author")
        .prefetch_related(Prefetch("images", queryset=Image.objects.visible().order_by("index")))
    )
    if before is not None:
        queryset = queryset.filter(id__lt=before)
    page = list(queryset.order_by("-id")[: FEED_PAGE_SIZE + 1])
    return page[:FEED_PAGE_SIZE], (page[FEED_PAGE_SIZE - 1].pk if len(page) > FEED_PAGE_SIZE else None)


def _project_context(access: ProjectAccess, form, jobs_page, next_before) -> dict:
    return {
        "project": access.project,
        "access": access,
        "form": form,
        "jobs": jobs_page,
        "next_before": next_before,
        "capabilities": imagemodels.capabilities(),
        "models": imagemodels.MODELS.values(),
        # For "Use a template" and "Apply a brand kit" (only names and ids: two small queries).
        "template_choices": PromptTemplate.objects.filter(project=access.project, archived_at__isnull=True),
        "kit_choices": BrandKit.objects.filter(project=access.project, archived_at__isnull=True),
    }


def _binding(access: ProjectAccess, data) -> tuple[TemplateVersion | None, BrandKitVersion | None]:
    """The template and kit versions a Studio form is bound to (hidden fields naming version ids, so a
    job uses the version whose prompt was previewed even if someone saves a newer one meanwhile).
    Another project's version is a 404, like every object of a project one may not see."""
    template_version = kit_version = None
    if raw := data.get("template_version"):
        template_version = get_object_or_404(
            TemplateVersion.objects.select_related("template", "brand_kit_version__kit"),
            template__project=access.project,
            pk=parse_id(raw) or 0,
        )
    if raw := data.get("brand_kit_version"):
        kit_version = get_object_or_404(
            BrandKitVersion.objects.select_related("kit"), kit__project=access.project, pk=parse_id(raw) or 0
        )
    return template_version, kit_version


def _chosen(
    access: ProjectAccess, request: HttpRequest
) -> tuple[TemplateVersion | None, BrandKitVersion | None]:
    """?template=<id> and ?kit=<id> on the Studio page: the newest version of each, or the template's
    version ?template_version=<id> (an old version's page uses it, so "use" runs what the page shows)."""
    template = kit = None
    if raw := request.GET.get("template"):
        chosen = get_object_or_404(PromptTemplate, project=access.project, pk=parse_id(raw) or 0)
        version_id = parse_id(request.GET.get("template_version", ""))
        template = chosen.versions.filter(pk=version_id).first() if version_id else None
        template = template or chosen.latest
    if raw := request.GET.get("kit"):
        kit = get_object_or_404(BrandKit, project=access.project, pk=parse_id(raw) or 0).latest
    return template, kit


def _studio_form(data, *, template_version, kit_version, initial=None, for_estimate=False):
    return StudioForm(
        data,
        initial=initial,
        template_version=template_version,
        kit_version=kit_version,
        for_estimate=for_estimate,
    )


def _job_for(access: ProjectAccess, job_id: int) -> Job:
    return get_object_or_404(
        Job.objects.select_related("author").prefetch_related(
            Prefetch("images", queryset=Image.objects.visible().order_by("index"))
        ),
        project=access.project,
        pk=job_id,
    )


@login_required
@require_GET
def project(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    before = request.GET.get("before")
    again = request.GET.get("again")
    # Each is the whole point of its request, so a value that is no id is an answer, not a shrug.
    if before and parse_id(before) is None:
        return HttpResponse("That page link is not valid: “before” must be a job number.", status=400)
    if again and parse_id(again) is None:
        return HttpResponse("That link is not valid: “again” must be a job number.", status=400)
    jobs_page, next_before = _feed(access.project, parse_id(before))
    if request.htmx and before:
        return render(
            request,
            "workspace/project.html#feed-page",
            {"jobs": jobs_page, "next_before": next_before, "project": access.project, "access": access},
        )
    initial = {}
    template_version, kit_version = _chosen(access, request)
    if again:
        source = Job.objects.filter(project=access.project, pk=parse_id(again)).first()
        if source is not None:
            initial = GenerationForm.initial_from_job(source)
    elif template_version or kit_version:
        defaults = campaigns.defaults_for(template_version=template_version, brand_kit_version=kit_version)
        initial = campaigns.form_initial(defaults)
    form = _studio_form(None, template_version=template_version, kit_version=kit_version, initial=initial)
    return render(request, "workspace/project.html", _project_context(access, form, jobs_page, next_before))


@login_required
@require_POST
def job_create(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    template_version, kit_version = _binding(access, request.POST)
    form = _studio_form(request.POST, template_version=template_version, kit_version=kit_version)
    if not form.is_valid():
        if request.htmx:
            context = _project_context(access, form, [], None)
            return render(request, "workspace/project.html#generate-form", context, status=400)
        jobs_page, next_before = _feed(access.project, None)
        context = _project_context(access, form, jobs_page, next_before)
        return render(request, "workspace/project.html", context, status=400)
    try:
        if form.kit_version is None and template_version is None:
            job = jobs.job_create(
                project=access.project,
                author=request.user,
                prompt=form.cleaned_data["prompt"],
                params=form.job_params(),
            )
        else:
            job = campaigns.bound_job_create(
                project=access.project,
                author=request.user,
                prompt=form.final_prompt,
                params=form.job_params(),
                template_version=template_version,
                brand_kit_version=kit_version,
                variables=form.values(),
            )
    except (spend.BudgetExceeded, jobs.TooManyWaiting, edits.EditRefused) as refusal:
        form.add_error(None, str(refusal))
        template = "workspace/project.html#generate-form" if request.htmx else "workspace/project.html"
        jobs_page, next_before = ([], None) if request.htmx else _feed(access.project, None)
        status = {jobs.TooManyWaiting: 429, edits.EditRefused: 400}.get(type(refusal), 402)
        return render(
            request, template, _project_context(access, form, jobs_page, next_before), status=status
        )
    if not request.htmx:
        return redirect(access.project)
    # The form keeps what was typed (people iterate on a prompt); the new card goes on top of the feed.
    again = _studio_form(
        None,
        template_version=template_version,
        kit_version=kit_version,
        initial=form.cleaned_data | {"size": form.cleaned_data["size"]},
    )
    context = _project_context(access, again, [], None)
    context["new_job"] = job
    return render(request, "workspace/project.html#job-created", context)


@login_required
@require_GET
def job_card(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    # Polled every second by every open card: one query, written once in SQL (hot_queries).
    access, job, images = job_card_access(request.user, project_id=project_id, job_id=job_id)
    context = {"job": job, "card_images": images, "access": access, "project": access.project}
    if not job.is_active and request.htmx:
        # Tell screen readers once, from a live region that polling does not replace, and move the badge.
        response = render(request, JOB_CARD, context | {"announce": True})
        if job.author_id == request.user.pk:
            trigger_client_event(response, "spend-changed")  # the badge refetches itself
        response.status_code = HTMX_STOP_POLLING
        return response
    return render(request, JOB_CARD, context)


@login_required
@require_GET
def estimate(request: HttpRequest, project_id: int) -> HttpResponse:
    """The expected cost of the form as it stands; the form refreshes it as fields change."""
    access = project_access(request.user, project_id)
    is_edit = request.GET.get("kind") == "edit"
    template_version, kit_version = _binding(access, request.GET)
    if is_edit:
        form = EditForm(request.GET)
    else:
        form = _studio_form(
            request.GET, template_version=template_version, kit_version=kit_version, for_estimate=True
        )
    form.fields["prompt"].required = False  # the cost does not wait for the words
    context = {"project": access.project, "estimate": False, "estimate_problem": ""}
    if form.is_valid():
        if is_edit:
            inputs, prompt = len(request.GET.getlist("inputs")), form.cleaned_data["prompt"]
        else:
            try:
                inputs = len(
                    campaigns.inputs_for(template_version=template_version, brand_kit_version=kit_version)
                )
            except edits.EditRefused:
                inputs = 0
            prompt = form.final_prompt
        context["estimate"] = jobs.job_estimate(prompt=prompt, params=form.job_params(), input_images=inputs)
    else:
        context["estimate_problem"] = next(iter(form.errors.values()))[0]
    return render(request, "workspace/project.html#estimate", context)


@login_required
@require_POST
def prompt_preview(request: HttpRequest, project_id: int) -> HttpResponse:
    """The exact prompt the Studio form would send (a template filled in, a kit composed): refreshed
    as the form changes, or the whole page with it from the form's Preview button."""
    access = project_access(
        request.user, project_id, needs=Role.EDITOR, writes=True
    )  # POST: refused when archived
    template_version, kit_version = _binding(access, request.POST)
    form = _studio_form(request.POST, template_version=template_version, kit_version=kit_version)
    form.is_valid()
    if request.htmx:
        return render(request, "workspace/project.html#prompt-preview", {"form": form})
    jobs_page, next_before = _feed(access.project, None)
    return render(request, "workspace/project.html", _project_context(access, form, jobs_page, next_before))


@login_required
@require_GET
def job_markup(request: HttpRequest, project_id: int, job_id: int) -> FileResponse:
    """The markup an edit was guided by (a transparent PNG), to members: lineage shows it like a mask."""
    access = project_access(request.user, project_id)
    job = get_object_or_404(Job, project=access.project, pk=job_id)
    if not job.markup:
        raise Http404
    return serve(job.markup.name, content_type="image/png")


@login_required
@require_GET
def job_detail(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    access = project_access(request.user, project_id)
    job = _job_for(access, job_id)
    calls = list(job.api_calls.prefetch_related("charges"))
    actual = sum((charge.cost for call in calls for charge in call.charges.all()), start=spend.ZERO)
    return render(
        request,
        "workspace/job_detail.html",
        {"job": job, "access": access, "project": access.project, "calls": calls, "actual": actual},
    )


def _after_job_action(request: HttpRequest, access: ProjectAccess, job_id: int) -> HttpResponse:
    if request.htmx:
        job = _job_for(access, job_id)
        return render(request, JOB_CARD, {"job": job, "access": access, "project": access.project})
    return redirect(safe_next(request, access.project.get_absolute_url()))


@login_required
@require_POST
def job_cancel(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    job = get_object_or_404(Job, project=access.project, pk=job_id)
    if not jobs.job_cancel(job=job):
        messages.info(request, "That job had already started, so it could not be canceled.")
    return _after_job_action(request, access, job_id)


@login_required
@require_POST
def job_retry(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    job = get_object_or_404(Job, project=access.project, pk=job_id)
    try:
        jobs.job_retry(job=job, actor=request.user)
    except (spend.BudgetExceeded, jobs.ModelRetired) as refusal:
        if request.htmx:
            status = 402 if isinstance(refusal, spend.BudgetExceeded) else 409
            return HttpResponse(str(refusal), status=status)
        messages.error(request, str(refusal))
    return _after_job_action(request, access, job_id)


@login_required
@require_POST
def job_reproduce(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    job = get_object_or_404(Job, project=access.project, pk=job_id)
    try:
        new_job = jobs.job_reproduce(job=job, author=request.user)
    except (spend.BudgetExceeded, jobs.TooManyWaiting, jobs.ModelRetired) as refusal:
        messages.error(request, str(refusal))
        return redirect(safe_next(request, access.project.get_absolute_url()))
    messages.success(request, "Queued the same request again.")
    return redirect(f"{access.project.get_absolute_url()}#job-{new_job.pk}")


@login_required
@require_GET
def job_preview(request: HttpRequest, project_id: int, job_id: int) -> FileResponse:
    _, job = object_access(request.user, Job.objects.all(), project_id=project_id, pk=job_id)
    if not job.preview:
        raise Http404
    image_format = formats.BY_EXTENSION.get(job.preview.name.rsplit(".", 1)[-1])
    if image_format is None:
        raise Http404
    return serve(job.preview.name, content_type=formats.content_type(image_format))
