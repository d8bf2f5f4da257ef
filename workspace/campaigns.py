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

from django.conf import settings
from django.core.files.storage import default_storage

from workspace import imagemodels as im
from workspace import jobs, prompting
from workspace.campaign_models import DEFAULT_FIELDS, BrandKitVersion, Campaign, TemplateVersion
from workspace.edits import EditRefused
from workspace.forms import EditForm, GenerationForm
from workspace.models import Job, Project, Reference

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


def clean_defaults(defaults: dict) -> dict:
    """Keep DEFAULT_FIELDS with a value; anything else is a caller's mistake."""
    unknown = set(defaults) - set(DEFAULT_FIELDS)
    if unknown:
        raise ValueError(f"Not a default a kit or template can set: {', '.join(sorted(unknown))}")
    return {name: value for name, value in defaults.items() if value not in ("", None)}


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
    for layer in (
        defaults_for(template_version=template_version, brand_kit_version=brand_kit_version),
        overrides,
    ):
        merged = _overlay(merged, layer)
    has_inputs = bool(inputs_for(template_version=template_version, brand_kit_version=brand_kit_version))
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
