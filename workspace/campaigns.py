"""Jobs made from templates and brand kits: their prompt, parameters and inputs, and the job itself with
the record of what made it. The Studio uses these for one job; grids and catalog batches for many.

The rules, in one place:
- The prompt is the template rendered with the values, then composed with the kit
  (prompting.prompt_for; prompting.compose_with_kit for a plain prompt with a kit).
- The kit is the one given, or else the template version's own.
- Parameters: the Studio form's defaults, under the kit's defaults, under the template's, under the
  caller's overrides; then checked by the Studio's own form, so they are what the form would send.
- Inputs: the template's references, then the kit's (the first is the image edited, so the template's
  subject goes first and the kit's style references after), each once. Any input makes the job an edit.
"""

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from workspace import imagemodels as im
from workspace import jobs, prompting, queue, spend
from workspace.campaign_models import DEFAULT_FIELDS, BrandKitVersion, Campaign, TemplateVersion
from workspace.edits import EditRefused
from workspace.forms import EditForm, GenerationForm
from workspace.models import Job, JobInput, Project, Reference

# What the Studio's form starts with, as job parameters (the bottom layer of every merge).
FORM_DEFAULTS = {
    "model": im.DEFAULT_MODEL,
    "size_preset": im.DEFAULT_SIZE_PRESET,
    "quality": "auto",
    "output_format": "png",
    "output_compression": None,
    "background": "auto",
    "moderation": "auto",
    "complexity": "",
    "n": 1,
    "input_fidelity": "",
}


class ParamsProblem(ValueError):
    """Parameters the Studio's form would refuse. `errors` is the form's: {field: [messages]}."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        first = next(iter(errors.items()), ("", ["These parameters are not valid."]))
        label = "" if first[0] == "__all__" else f"{first[0].replace('_', ' ')}: "
        super().__init__(f"{label}{first[1][0]}")


def kit_for(
    *, template_version: TemplateVersion | None, brand_kit_version: BrandKitVersion | None = None
) -> BrandKitVersion | None:
    """The kit a job uses: the one chosen, or else the template version's own."""
    if brand_kit_version is not None:
        return brand_kit_version
    return template_version.brand_kit_version if template_version is not None else None


def clean_defaults(defaults: dict, *, allowed: tuple[str, ...] = DEFAULT_FIELDS) -> dict:
    """Keep the `allowed` fields with a value (a template's DEFAULT_FIELDS, a kit's
    KIT_DEFAULT_FIELDS); anything else is a caller's mistake."""
    unknown = set(defaults) - set(allowed)
    if unknown:
        raise ValueError(f"Not a default this can set: {', '.join(sorted(unknown))}")
    return {name: value for name, value in defaults.items() if value not in ("", None)}


def defaults_problems(defaults: dict) -> dict[str, str]:
    """{default field: why} for stored defaults the model they run on does not allow: the default
    model when one is set, else the Studio's (im.DEFAULT_MODEL), as job_params_for would use them."""
    model_id = defaults.get("model") or im.DEFAULT_MODEL
    model = im.get_model(model_id)
    if model is None:
        return {"model": f"“{model_id}” is not a model this workspace knows."}
    problems: dict[str, str] = {}
    if "model" in defaults and model.retired:
        problems["model"] = im.retired_problem(model)
    if defaults.get("quality") and defaults["quality"] not in model.qualities:
        problems["quality"] = f"{model.label} does not offer {defaults['quality']} quality."
    preset = im.SIZE_PRESETS.get(defaults.get("size_preset") or "")
    if preset is not None and preset not in im.presets_for(model):
        problems["size_preset"] = f"{model.label} cannot make {preset.label.lower()} images."
    if defaults.get("output_format") and defaults["output_format"] not in model.output_formats:
        problems["output_format"] = f"{model.label} cannot make {defaults['output_format'].upper()} images."
    if defaults.get("complexity") and defaults["complexity"] not in model.complexity_levels:
        problems["complexity"] = (
            f"{model.label} does not take a planning effort."
            if not model.complexity_levels
            else f"{model.label} does not offer {defaults['complexity']} planning effort."
        )
    return problems


def _fit_to_model(defaults: dict, overrides: dict) -> dict:
    """The kit's and template's defaults minus those the model chosen in `overrides` does not take.

    A default is a starting point, not a demand: a grid whose model axis adds GPT Image 1.5 to a
    template whose default is high planning effort runs those cells without it, rather than refusing
    the whole grid. Values the caller chose itself are never dropped (the form then says why)."""
    if "model" not in overrides or not defaults:
        return defaults
    problems = defaults_problems(defaults | {"model": overrides["model"]})
    dropped = {"size_preset": ("size_preset", "size")}.get
    fitted = dict(defaults)
    for name in problems:
        for field_name in dropped(name, (name,)):
            fitted.pop(field_name, None)
    return fitted


def defaults_for(
    *, template_version: TemplateVersion | None, brand_kit_version: BrandKitVersion | None = None
) -> dict:
    """The kit's defaults under the template's, as job parameters (a subset of REQUEST_FIELDS)."""
    kit = kit_for(template_version=template_version, brand_kit_version=brand_kit_version)
    merged: dict = {}
    for layer in (kit.defaults if kit else {}, template_version.defaults if template_version else {}):
        merged = _overlay(merged, layer)
    return merged


def _overlay(below: dict, above: dict) -> dict:
    """`above` over `below`; a layer that sets a size (preset or WxH) replaces both size fields."""
    merged = dict(below)
    if "size_preset" in above or "size" in above:
        merged.pop("size_preset", None)
        merged.pop("size", None)
    return merged | above


def _form_data(params: dict, *, prompt: str) -> dict:
    """Job parameters as the Studio's form posts them (the size as a preset key, or custom W and H)."""
    data = {
        name: ("" if value is None else value)
        for name, value in params.items()
        if name in Job.REQUEST_FIELDS and name not in ("size", "size_preset")
    }
    preset, size = params.get("size_preset") or "", params.get("size") or ""
    if preset and preset != im.CUSTOM_SIZE:
        data["size"] = preset
    elif size == "auto":
        data["size"] = "auto"
    elif size:
        data["size"] = im.CUSTOM_SIZE
        width, _, height = size.partition("x")
        data["width"], data["height"] = width, height
    return data | {"prompt": prompt}


def inputs_for(
    *, template_version: TemplateVersion | None, brand_kit_version: BrandKitVersion | None = None
) -> list[Reference]:
    """The template's references, then the kit's, each once, by id within each (a version's references
    never change). Raises EditRefused when one is missing from storage or there are too many."""
    kit = kit_for(template_version=template_version, brand_kit_version=brand_kit_version)
    chosen: list[Reference] = []
    for version in (template_version, kit):
        if version is not None:
            chosen += [ref for ref in version.references.order_by("id") if ref not in chosen]
    if len(chosen) > settings.MAX_EDIT_INPUTS:
        raise EditRefused(
            f"The template and kit add {len(chosen)} references; a job takes at most "
            f"{settings.MAX_EDIT_INPUTS}."
        )
    for ref in chosen:
        if not default_storage.exists(ref.file.name):
            raise EditRefused(f"The reference “{ref.name}” is missing from storage; save a new version.")
    return chosen


def final_prompt(
    *,
    template_version: TemplateVersion | None,
    values: dict[str, str],
    brand_kit_version: BrandKitVersion | None = None,
    prompt: str = "",
) -> str:
    """Exactly what is sent: the template with `values` (or the plain `prompt`) composed with the kit.
    Raises prompting.TemplateProblem (a missing value, a prompt too long)."""
    kit = kit_for(template_version=template_version, brand_kit_version=brand_kit_version)
    if template_version is not None:
        return prompting.prompt_for(template_version=template_version, values=values, kit_version=kit)
    return prompting.check_length(prompting.compose_with_kit(prompt, kit))


def job_params_for(
    *,
    template_version: TemplateVersion | None,
    values: dict[str, str],
    overrides: dict,
    brand_kit_version: BrandKitVersion | None = None,
    prompt: str = "",
    extra_inputs: int = 0,
) -> dict:
    """Job.REQUEST_FIELDS for a job from this template (or plain `prompt`) and kit: the form's defaults,
    the kit's and template's defaults, then `overrides` (job parameters, e.g. {"quality": "high"} or
    {"size_preset": "portrait"}), checked by the Studio's form (the edit form when there are inputs).

    Raises ParamsProblem with the form's errors, prompting.TemplateProblem for the prompt.
    """
    text = final_prompt(
        template_version=template_version, values=values, brand_kit_version=brand_kit_version, prompt=prompt
    )
    merged = FORM_DEFAULTS
    defaults = defaults_for(template_version=template_version, brand_kit_version=brand_kit_version)
    for layer in (_fit_to_model(defaults, overrides), overrides):
        merged = _overlay(merged, layer)
    # `extra_inputs`: a catalog row's own reference, which makes the job an edit as the template's do.
    has_inputs = extra_inputs > 0 or bool(
        inputs_for(template_version=template_version, brand_kit_version=brand_kit_version)
    )
    form = (EditForm if has_inputs else GenerationForm)(_form_data(merged, prompt=text))
    if not form.is_valid():
        raise ParamsProblem({name: list(messages) for name, messages in form.errors.items()})
    return form.job_params()


def _check_same_project(project: Project, *versions) -> None:
    for version in versions:
        if version is None:
            continue
        owner = version.template if isinstance(version, TemplateVersion) else version.kit
        if owner.project_id != project.pk:
            # Views look versions up within the project; reaching here is a programming error.
            raise ValueError(f"{version} is not part of project {project.pk}.")


def bound_job_create(
    *,
    project: Project,
    author,
    prompt: str,
    params: dict,
    template_version: TemplateVersion | None = None,
    brand_kit_version: BrandKitVersion | None = None,
    variables: dict[str, str] | None = None,
    lane: int = Job.Lane.INTERACTIVE,
    campaign: Campaign | None = None,
    campaign_row: int | None = None,
    cell: dict | None = None,
) -> Job:
    """Queue one job whose `prompt` (final, composed) and `params` (validated) came from a template
    and/or kit, with their references as inputs, recording what made it.

    Raises spend.BudgetExceeded, jobs.TooManyWaiting, EditRefused (a reference gone from storage).
    """
    kit = kit_for(template_version=template_version, brand_kit_version=brand_kit_version)
    _check_same_project(project, template_version, kit)
    inputs = inputs_for(template_version=template_version, brand_kit_version=brand_kit_version)
    wanted = template_version.variables if template_version is not None else []
    origin = {
        "template_version": template_version,
        "brand_kit_version": kit,
        "variables": {name: str((variables or {}).get(name, "")).strip() for name in wanted},
        "campaign": campaign,
        "campaign_row": campaign_row,
        "cell": cell or {},
    }
    if inputs:
        return jobs.edit_create(
            project=project,
            author=author,
            prompt=prompt,
            params=params,
            inputs=inputs,
            lane=lane,
            origin=origin,
        )
    return jobs.job_create(
        project=project, author=author, prompt=prompt, params=params, lane=lane, origin=origin
    )


def template_job_create(
    *,
    template_version: TemplateVersion,
    author,
    values: dict[str, str],
    overrides: dict | None = None,
    brand_kit_version: BrandKitVersion | None = None,
    lane: int = Job.Lane.INTERACTIVE,
    campaign: Campaign | None = None,
    campaign_row: int | None = None,
    cell: dict | None = None,
) -> Job:
    """final_prompt + job_params_for + bound_job_create, for one job from a template version.

    Raises prompting.TemplateProblem, ParamsProblem, EditRefused, spend.BudgetExceeded,
    jobs.TooManyWaiting; nothing is created when any is raised.
    """
    prompt = final_prompt(
        template_version=template_version, values=values, brand_kit_version=brand_kit_version
    )
    params = job_params_for(
        template_version=template_version,
        values=values,
        overrides=overrides or {},
        brand_kit_version=brand_kit_version,
    )
    return bound_job_create(
        project=template_version.template.project,
        author=author,
        prompt=prompt,
        params=params,
        template_version=template_version,
        brand_kit_version=brand_kit_version,
        variables=values,
        lane=lane,
        campaign=campaign,
        campaign_row=campaign_row,
        cell=cell,
    )


def form_initial(params: dict) -> dict:
    """Job parameters (e.g. defaults_for's) as the Studio form's initial values."""
    data = _form_data(params, prompt="")
    del data["prompt"]
    return data


# --- Campaigns: many jobs at once ----------------------------------------------------------------------


def campaign_lane(campaign: Campaign) -> tuple[int, bool]:
    """Where a campaign's jobs wait, and whether they are priced at the Batch API's rate: the one
    place the lane and the estimate of campaign work are decided (cell_estimate asks it too).

    Campaign work is bulk, behind the Studio. "Run overnight" sends it through OpenAI's Batch API
    instead (workspace/overnight.py), reserved and charged at the batch share of the price.
    """
    return (Job.Lane.OVERNIGHT, True) if campaign.overnight else (Job.Lane.BULK, False)


def cell_estimate(*, campaign: Campaign, prompt: str, params: dict, input_images: int) -> spend.Estimate:
    """What one of the campaign's jobs will probably cost, in its lane (see campaign_lane)."""
    _lane, batch = campaign_lane(campaign)
    return spend.estimate(
        model=params["model"],
        quality=params["quality"],
        size=params["size"],
        n=params["n"],
        prompt=prompt,
        input_images=input_images,
        batch=batch,
    )


class EstimateCache:
    """cell_estimate for many jobs that share their parameters: an estimate depends on the prompt
    only through its length (its text tokens), so a 2,000-row batch asks the price table a handful
    of times rather than once a row."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self._known: dict[tuple, Decimal] = {}

    def cost(self, *, prompt: str, params: dict, input_images: int) -> Decimal:
        key = (
            tuple(params[name] for name in ("model", "quality", "size", "n")),
            (len(prompt) + 3) // 4,
            input_images,
        )
        if key not in self._known:
            self._known[key] = cell_estimate(
                campaign=self.campaign, prompt=prompt, params=params, input_images=input_images
            ).cost
        return self._known[key]


@dataclass
class JobSpec:
    """One job of a campaign, ready to queue: its final prompt, checked parameters, inputs (References,
    the first one edited), estimate, and its place (a CSV row or a grid cell)."""

    prompt: str
    params: dict
    cost: Decimal
    inputs: list[Reference] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    row: int | None = None
    cell: dict = field(default_factory=dict)


def campaign_jobs_create(*, campaign: Campaign, author, specs: list[JobSpec]) -> list[Job]:
    """Queue every job of a campaign in one transaction, the whole estimate reserved in one step.

    The budgets are locked, checked for the total and held by the jobs' reserved_cost before the
    transaction commits (spend.reserve), so two campaigns racing for the same budget cannot both
    pass. A draft campaign becomes active in the same transaction, conditionally, so confirming twice
    queues once. Rows are written with bulk_create (a 2,000-row batch in a few statements).

    Raises spend.BudgetExceeded (nothing created), ValueError if the campaign is no longer a draft.
    """
    lane, _batch = campaign_lane(campaign)
    total = sum((spec.cost for spec in specs), start=Decimal(0))
    now = timezone.now()
    deadline = now + timedelta(seconds=settings.CAMPAIGN_JOB_DEADLINE_SECONDS)
    with transaction.atomic():
        if campaign.pk is None:
            campaign.estimated_cost = total
            campaign.save()
        else:
            started = Campaign.objects.start(campaign.pk, estimated_cost=total, rows=[], created_at=now)
            if not started:
                raise ValueError("This batch has already been queued or discarded.")
            campaign.status, campaign.estimated_cost, campaign.rows = Campaign.Status.ACTIVE, total, []
        spend.reserve(user=author, project=campaign.project, amount=total)
        made = Job.objects.bulk_create(
            [
                Job(
                    project=campaign.project,
                    author=author,
                    kind=Job.Kind.EDIT if spec.inputs else Job.Kind.GENERATE,
                    lane=lane,
                    prompt=spec.prompt,
                    max_attempts=settings.JOB_MAX_ATTEMPTS,
                    deadline_at=deadline,
                    # Sent: queue.WAKE_MESSAGES messages wake the workers, whose threads then take the rest.
                    enqueued_at=now,
                    created_at=now,
                    estimated_cost=spec.cost,
                    reserved_cost=spec.cost,
                    template_version=campaign.template_version,
                    brand_kit_version=kit_for(
                        template_version=campaign.template_version,
                        brand_kit_version=campaign.brand_kit_version,
                    ),
                    variables=spec.variables,
                    campaign=campaign,
                    campaign_row=spec.row,
                    cell=spec.cell,
                    **spec.params,
                )
                for spec in specs
            ]
        )
        JobInput.objects.bulk_create(
            [
                JobInput(job=job, position=position, reference=reference)
                for job, spec in zip(made, specs, strict=True)
                for position, reference in enumerate(spec.inputs)
            ]
        )
        # Overnight work waits for beat's dispatcher (workspace/overnight.py): no worker may take it.
        wake = [] if lane == Job.Lane.OVERNIGHT else [job.pk for job in made[: queue.WAKE_MESSAGES]]
        transaction.on_commit(lambda: [queue.send_job(job_id) for job_id in wake])
    return made
