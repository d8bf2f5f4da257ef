"""Variant grids: one controlled change (and optionally a second) over a template or a prompt.

An axis is a variable of the template ("var:product") or one request parameter: quality, model, size
(a preset) or planning effort (complexity). A grid is every combination of its axes' values; each
cell is one job whose request differs from its neighbours only on the axes (everything else comes
from the same base: the template's values and defaults, the kit, the form's defaults).

`grid_plan` builds and checks the whole grid without writing anything (the setup page shows it with
its total estimate); `grid_create` queues it as a Campaign(kind=grid), reserved in one step.
"""

import itertools
from dataclasses import dataclass
from decimal import Decimal

from workspace import campaigns, kits, prompting
from workspace import imagemodels as im
from workspace.campaign_models import DEFAULT_FIELDS, BrandKitVersion, Campaign, TemplateVersion
from workspace.edits import EditRefused
from workspace.models import Job, Project

MAX_AXIS_VALUES = 8
VARIABLE_PREFIX = "var:"

# Parameter axes: label, and the job parameter an axis value sets.
PARAMETER_AXES = {
    "quality": "Quality",
    "model": "Model",
    "size": "Size",
    "complexity": "Planning effort",
}


class GridProblem(ValueError):
    """A grid that cannot be made; `field` names the form field it belongs to ("" for the whole form)."""

    def __init__(self, message: str, field: str = "") -> None:
        self.field = field
        super().__init__(message)


def axis_choices(template_version: TemplateVersion | None) -> list[tuple[str, str]]:
    """(value, label) of every axis a grid over this template (or a plain prompt) may use."""
    choices = []
    if template_version is not None:
        choices += [
            (f"{VARIABLE_PREFIX}{name}", f"Variable {{{name}}}") for name in template_version.variables
        ]
    return choices + list(PARAMETER_AXES.items())


def axis_label(name: str) -> str:
    if name.startswith(VARIABLE_PREFIX):
        return f"{{{name[len(VARIABLE_PREFIX) :]}}}"
    return PARAMETER_AXES.get(name, name)


def allowed_values(name: str) -> tuple[str, ...] | None:
    """The values a parameter axis takes (None: free text, a variable's)."""
    if name == "quality":
        return tuple(dict.fromkeys(q for model in im.selectable() for q in model.qualities))
    if name == "model":
        return tuple(model.id for model in im.selectable())
    if name == "size":
        return tuple(im.SIZE_PRESETS)
    if name == "complexity":
        return im.COMPLEXITY_LEVELS
    return None


def parse_values(name: str, text: str) -> list[str]:
    """An axis's values as typed: separated by commas or new lines, blanks dropped, each once."""
    pieces = [piece.strip() for line in text.splitlines() for piece in line.split(",")]
    values = list(dict.fromkeys(piece for piece in pieces if piece))
    label = axis_label(name)
    if not values:
        raise GridProblem(f"Give {label} at least one value.", "values")
    if len(values) > MAX_AXIS_VALUES:
        raise GridProblem(f"{label}: at most {MAX_AXIS_VALUES} values (you gave {len(values)}).", "values")
    allowed = allowed_values(name)
    if allowed is not None:
        wrong = [value for value in values if value not in allowed]
        if wrong:
            raise GridProblem(
                f"{label}: “{wrong[0]}” is not one of {', '.join(allowed)}.",
                "values",
            )
    return values


def _overrides_for(cell: dict[str, str]) -> dict:
    """The job parameters a cell's parameter axes set."""
    overrides: dict = {}
    for name, value in cell.items():
        if name == "size":
            overrides["size_preset"] = value
        elif name in PARAMETER_AXES:
            overrides[name] = value
    return overrides


@dataclass
class Cell:
    values: dict[str, str]  # {axis: value}
    spec: campaigns.JobSpec


@dataclass
class Plan:
    """A checked grid: its axes, every cell (row-major: first axis down, second across) and the total."""

    axes: list[dict]
    cells: list[Cell]
    total: Decimal

    @property
    def rows(self) -> list[dict]:
        """For the page: [{"value": v1, "cells": [Cell, ...]}] — one row per first-axis value."""
        width = len(self.axes[1]["values"]) if len(self.axes) > 1 else 1
        return [
            {"value": value, "cells": self.cells[index * width : (index + 1) * width]}
            for index, value in enumerate(self.axes[0]["values"])
        ]


def grid_plan(
    *,
    project: Project,
    template_version: TemplateVersion | None,
    brand_kit_version: BrandKitVersion | None,
    prompt: str,
    values: dict[str, str],
    base: dict,
    axes: list[tuple[str, str]],
    overnight: bool = False,
) -> Plan:
    """Every cell of the grid, checked (prompt, parameters, inputs) and estimated; nothing is written.

    `axes`: [(axis name, values as typed)], one or two. `base`: job parameters every cell shares
    (e.g. {"quality": "low"}), under the axes. Raises GridProblem with a readable reason.
    """
    if not 1 <= len(axes) <= 2:
        raise GridProblem("Choose one axis, and optionally a second.", "axis1")
    names = [name for name, _ in axes]
    if len(set(names)) != len(names):
        raise GridProblem("The two axes must differ: choose another second axis.", "axis2")
    allowed_axes = dict(axis_choices(template_version))
    for name in names:
        if name not in allowed_axes:
            raise GridProblem(f"“{name}” is not an axis of this grid.", "axis1")
    parsed = [
        {"name": name, "label": axis_label(name), "values": parse_values(name, text)} for name, text in axes
    ]
    if template_version is None and not prompt.strip():
        raise GridProblem("Write a prompt, or choose a template.", "prompt")
    probe = Campaign(project=project, kind=Campaign.Kind.GRID, overnight=overnight)
    estimates = campaigns.EstimateCache(probe)
    try:
        inputs = campaigns.inputs_for(template_version=template_version, brand_kit_version=brand_kit_version)
    except EditRefused as refusal:
        raise GridProblem(str(refusal)) from refusal
    cells = []
    for combination in itertools.product(*(axis["values"] for axis in parsed)):
        cell = dict(zip(names, combination, strict=True))
        # A variable left empty takes the version's default value (the form shows it prefilled).
        defaults = template_version.samples if template_version is not None else {}
        cell_values = defaults | {name: value for name, value in values.items() if str(value).strip()}
        for name, value in cell.items():
            if name.startswith(VARIABLE_PREFIX):
                cell_values[name[len(VARIABLE_PREFIX) :]] = value
        if template_version is not None:
            cell_values = {name: cell_values.get(name, "") for name in template_version.variables}
        try:
            text = campaigns.final_prompt(
                template_version=template_version,
                values=cell_values,
                brand_kit_version=brand_kit_version,
                prompt=prompt,
            )
            params = campaigns.job_params_for(
                template_version=template_version,
                values=cell_values,
                overrides=base | _overrides_for(cell),
                brand_kit_version=brand_kit_version,
                prompt=prompt,
            )
        except prompting.TemplateProblem as problem:
            raise GridProblem(f"{_cell_name(cell)}: {problem.message}") from problem
        except campaigns.ParamsProblem as problem:
            raise GridProblem(f"{_cell_name(cell)}: {problem}") from problem
        cost = estimates.cost(prompt=text, params=params, input_images=len(inputs))
        spec = campaigns.JobSpec(
            prompt=text,
            params=params,
            cost=cost,
            inputs=list(inputs),
            variables=cell_values if template_version is not None else {},
            cell=cell,
        )
        cells.append(Cell(values=cell, spec=spec))
    return Plan(axes=parsed, cells=cells, total=sum((cell.spec.cost for cell in cells), start=Decimal(0)))


def _cell_name(cell: dict[str, str]) -> str:
    return " × ".join(f"{axis_label(name)} {value}" for name, value in cell.items())


def grid_create(
    *,
    project: Project,
    author,
    name: str,
    template_version: TemplateVersion | None,
    brand_kit_version: BrandKitVersion | None,
    prompt: str,
    plan: Plan,
    base: dict,
    overnight: bool = False,
) -> Campaign:
    """Queue the planned grid as a campaign, every cell reserved in one step.

    Raises spend.BudgetExceeded (nothing created).
    """
    kit = campaigns.kit_for(template_version=template_version, brand_kit_version=brand_kit_version)
    campaign = Campaign(
        project=project,
        author=author,
        kind=Campaign.Kind.GRID,
        name=name,
        template_version=template_version,
        brand_kit_version=kit,
        prompt=prompt if template_version is None else "",
        base_params=base,
        axes=[{"name": axis["name"], "values": axis["values"]} for axis in plan.axes],
        overnight=overnight,
    )
    campaigns.campaign_jobs_create(campaign=campaign, author=author, specs=[cell.spec for cell in plan.cells])
    return campaign


def cell_as_default(*, job: Job, author) -> TemplateVersion | None:
    """ "Use this as the new default": a NEW version of the grid's template (the version the grid
    ran, so the new one makes what this cell made) whose defaults take every axis this cell differs
    on: its model, quality, size or planning effort as a default parameter, a variable's value as that
    variable's default value. Older versions, and what they made, are unchanged.

    None when the grid has no template (the caller opens the Studio filled from the job instead).
    Raises ValueError (nothing saved) when the cell's settings can no longer be a default: its model
    was retired since it ran.
    """
    campaign = job.campaign
    version = campaign.template_version if campaign is not None else None
    if version is None:
        return None
    defaults = dict(version.defaults)
    samples = dict(version.samples)
    for axis, value in job.cell.items():
        if axis.startswith(VARIABLE_PREFIX):
            samples[axis[len(VARIABLE_PREFIX) :]] = value
        elif axis == "size":
            # The preset and the WxH it made, together (a default size is both).
            defaults.pop("size_preset", None)
            defaults.pop("size", None)
            defaults |= {"size_preset": job.size_preset, "size": job.size}
        elif axis in PARAMETER_AXES:
            defaults[axis] = getattr(job, axis)
    if campaigns.defaults_problems(defaults):
        # The cell's values need the model the grid ran it on (xhigh quality on 2.5, say): that model
        # made it, so it becomes the default too, and any older default it does not take becomes
        # the value this cell was made with (all of which its model allowed).
        defaults["model"] = job.model
        for name in campaigns.defaults_problems(defaults):
            if name == "size_preset":
                defaults |= {"size_preset": job.size_preset, "size": job.size}
            else:
                defaults[name] = getattr(job, name)
    return kits.template_save(
        project=campaign.project,
        author=author,
        template=version.template,
        name=version.template.name,
        text=version.text,
        brand_kit_version=version.brand_kit_version,
        references=list(version.references.all()),
        defaults={name: value for name, value in defaults.items() if name in DEFAULT_FIELDS},
        samples=samples,
    )
