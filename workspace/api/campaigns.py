"""The API's campaign creation beyond CSV batches: confirm a draft, and variant grids, each the campaign
pages' service behind the pages' forms (workspace.campaign_forms), held to the token's own limit too."""

from decimal import Decimal

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from workspace import batches, grids, spend
from workspace.access import project_access
from workspace.api import serializers as s
from workspace.api.errors import ApiError
from workspace.api.idempotency import idempotent
from workspace.api.models import ApiToken, ApiTokenJob
from workspace.api.tokens import TokenLimitExceeded, _hold
from workspace.api.views import (
    BOOLEAN,
    GENERATE,
    IDEMPOTENCY,
    INTEGER,
    STRING,
    WRITE_ERRORS,
    _batch_refused,
    _campaign,
    _campaign_detail,
    _controlled,
    _typed,
    over_budget,
)
from workspace.campaign_forms import GridForm, chosen_template_version
from workspace.campaign_models import Campaign
from workspace.models import Role

ZERO = Decimal(0)
BUDGET_ERRORS = WRITE_ERRORS | {402: s.OverBudgetErrorSerializer}


def _link_jobs(token: ApiToken | None, campaign: Campaign) -> None:
    if token is not None:
        ApiTokenJob.objects.bulk_create(
            [ApiTokenJob(token=token, job_id=pk) for pk in campaign.jobs.values_list("pk", flat=True)]
        )


def api_campaign_confirm(
    *, token: ApiToken | None, campaign: Campaign, author, key_column: str | None = None
) -> Campaign:
    """batches.batch_confirm (the draft page's Confirm) held to the token's limit for the whole
    estimate, its jobs linked to the token. Raises TokenLimitExceeded, spend.BudgetExceeded,
    batches.BatchRefused, ValueError (no longer a draft), creating nothing."""
    with transaction.atomic():
        _hold(token, campaign.estimated_cost or ZERO)
        batches.batch_confirm(campaign=campaign, author=author, key_column=key_column)
        _link_jobs(token, campaign)
    return campaign


def api_grid_create(*, token: ApiToken | None, plan: grids.Plan, **grid) -> Campaign:
    """grids.grid_create held to the token's limit for the plan's total, its jobs linked to the token.
    Raises TokenLimitExceeded or spend.BudgetExceeded, creating nothing."""
    with transaction.atomic():
        _hold(token, plan.total)
        campaign = grids.grid_create(plan=plan, **grid)
        _link_jobs(token, campaign)
    return campaign


def _json(request: Request) -> dict:
    """The JSON object sent; an empty body is an empty object (a confirm needs nothing)."""
    if not request.body:
        return {}
    if not isinstance(request.data, dict) or request.content_type.split(";")[0].strip() != "application/json":
        raise ApiError(400, "invalid", "Send a JSON object (Content-Type: application/json).")
    return dict(request.data)


def _refuse(fields: dict[str, list[str]]) -> ApiError:
    return ApiError(400, "invalid", "Some fields are not valid: " + ", ".join(fields) + ".", fields)


# --- Confirm a draft batch -------------------------------------------------------------------------


@extend_schema(
    request=s.CampaignConfirmSerializer,
    responses={200: s.CampaignDetailSerializer} | BUDGET_ERRORS | {400: s.BatchErrorSerializer},
    parameters=[IDEMPOTENCY],
)
@api_view(["POST"])
@permission_classes([GENERATE])
@idempotent
def campaign_confirm(request: Request, project_id: int, campaign_id: int) -> Response:
    """Queue a draft batch (the draft page's Confirm): every row a job, the whole estimate reserved at
    once; over a budget (or the token's limit) a 402 saying what is left, and nothing queued. Optionally
    names the files by another column (`key_column`). 409 unless it is a draft."""
    campaign = _controlled(request, project_id, campaign_id)
    data = _json(request)
    fields = {name: ["Unknown field."] for name in data if name != "key_column"}
    if "key_column" in data and not _typed(data["key_column"], STRING):
        fields["key_column"] = ["Expected a string."]
    if fields:
        raise _refuse(fields)
    if campaign.status != Campaign.Status.DRAFT:
        raise ApiError(
            409,
            "not_allowed_now",
            f"This campaign is {campaign.get_status_display().lower()}; only a draft can be confirmed.",
        )
    key_column = data.get("key_column")
    campaign.refresh_from_db(fields=["rows"])  # the rows the draft holds, read only to queue them
    try:
        api_campaign_confirm(
            token=request.auth,
            campaign=campaign,
            author=request.user,
            key_column=key_column.strip() if key_column is not None else None,
        )
    except (spend.BudgetExceeded, TokenLimitExceeded) as refusal:
        raise over_budget(refusal, campaign.estimated_cost) from None
    except batches.BatchRefused as refusal:
        raise _batch_refused(refusal) from None
    except ValueError:  # confirmed or discarded by another request since we read it
        raise ApiError(409, "not_allowed_now", "This batch has already been queued or discarded.") from None
    campaign = _campaign(request, project_id, campaign.pk)
    return Response(s.CampaignDetailSerializer(_campaign_detail(campaign)).data)


# --- Variant grids -----------------------------------------------------------------------------------

GRID_TYPES = {
    "template_id": INTEGER, "template_version_id": INTEGER, "prompt": STRING, "name": STRING,
    "kit_id": INTEGER, "model": STRING, "quality": STRING, "size": STRING, "overnight": BOOLEAN,
    "confirm": BOOLEAN,
}  # fmt: skip
# The grid form's field names, as this API names them (the axes and variables are nested).
GRID_FORM_FIELDS = {
    "template": "template_id", "template_version": "template_version_id", "kit": "kit_id",
    "prompt": "prompt", "name": "name",
}  # fmt: skip
AXIS_FIELDS = {
    "axis1": "First axis",
    "values1": "First axis",
    "axis2": "Second axis",
    "values2": "Second axis",
}


def _grid_input(data: dict) -> tuple[dict, dict[str, str]]:
    """The grid form's data from the JSON body, and the variables sent; 400 naming each field whose JSON
    type is wrong (the form then applies its own rules)."""
    known = set(GRID_TYPES) | {"axes", "variables"}
    fields = {name: ["Unknown field."] for name in data if name not in known}
    fields |= {
        name: [f"Expected {GRID_TYPES[name]}."]
        for name, value in data.items()
        if name in GRID_TYPES and not _typed(value, GRID_TYPES[name])
    }
    axes = data.get("axes")
    axis_shape = "Expected one or two axes, each {“name”: “quality”, “values”: [“low”, “high”]}."
    if (
        not isinstance(axes, list)
        or not 1 <= len(axes) <= 2
        or not all(
            isinstance(axis, dict)
            and set(axis) == {"name", "values"}
            and isinstance(axis["name"], str)
            and isinstance(axis["values"], list)
            and all(isinstance(value, str) for value in axis["values"])
            for axis in axes
        )
    ):
        fields["axes"] = [axis_shape]
    variables = data.get("variables") or {}
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        fields["variables"] = ["Expected an object of variable names and their text."]
    if "confirm" not in data or data["confirm"] is None:
        fields["confirm"] = ["Say true (queue it now) or false (only plan it: nothing is written)."]
    if fields:
        raise _refuse(fields)
    form_data = {form: data[api] for form, api in GRID_FORM_FIELDS.items() if data.get(api) is not None} | {
        name: data[name] for name in ("model", "quality", "size", "overnight") if data.get(name) is not None
    }
    for number, axis in enumerate(axes, start=1):
        # The page's text box takes values separated by commas or lines; a list says the same.
        form_data |= {f"axis{number}": axis["name"], f"values{number}": "\n".join(axis["values"])}
    form_data |= {f"var_{name}": value for name, value in variables.items()}
    return form_data, variables


def _grid_form_errors(form: GridForm) -> ApiError:
    fields: dict[str, list[str]] = {}
    for name, messages in form.errors.items():
        if name in AXIS_FIELDS:
            fields.setdefault("axes", []).extend(f"{AXIS_FIELDS[name]}: {m}" for m in messages)
        elif name.startswith("var_"):
            fields.setdefault("variables", []).extend(f"{{{name[4:]}}}: {m}" for m in messages)
        else:
            fields.setdefault(GRID_FORM_FIELDS.get(name, name), []).extend(messages)
    general = fields.pop("__all__", [])
    message = " ".join(general) or "Some fields are not valid: " + ", ".join(fields) + "."
    return ApiError(400, "invalid", message, fields)


def _plan_answer(plan: grids.Plan) -> dict:
    return {
        "axes": plan.axes,
        "cells": [
            {
                "values": cell.values,
                "prompt": cell.spec.prompt,
                "params": cell.spec.params,
                "estimated_cost": cell.spec.cost,
            }
            for cell in plan.cells
        ],
        "estimated_cost": plan.total,
    }


@extend_schema(
    request=s.GridRequestSerializer,
    responses={201: s.CampaignDetailSerializer, 200: s.GridPlanSerializer} | BUDGET_ERRORS,
    parameters=[IDEMPOTENCY],
)
@api_view(["POST"])
@permission_classes([GENERATE])
@idempotent
def campaign_grid_create(request: Request, project_id: int) -> Response:
    """A variant grid, as the grid page makes it: a template (or a prompt), one or two axes (a
    variable's values, quality, model, size, planning effort), every cell checked and estimated.
    `confirm: false` answers the plan (200: every cell's exact prompt and estimate; nothing written, as
    the page's Show the grid); `confirm: true` queues it (201), every cell reserved at once (402 over a
    budget or the token's limit, saying what is left; nothing created)."""
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    data = _json(request)
    form_data, variables = _grid_input(data)
    # The version asked for (else the newest), as the grid page finds it; the form refuses one that
    # is not a version of this project's template.
    version = chosen_template_version(access.project, form_data)
    form = GridForm(form_data, project=access.project, template_version=version)
    if not form.is_valid():
        raise _grid_form_errors(form)
    known = set(version.variables) if version is not None else set()
    if unknown := [name for name in variables if name not in known]:
        reasons = [f"{{{name}}} is not a variable of this template." for name in unknown]
        raise ApiError(400, "invalid", " ".join(reasons), {"variables": reasons})
    kit = form.kit_version()
    prompt = form.cleaned_data.get("prompt", "")
    overnight = form.cleaned_data["overnight"]
    try:
        plan = form.plan(project=access.project)
    except grids.GridProblem as problem:
        field = {"axis1": "axes", "axis2": "axes", "values": "axes", "prompt": "prompt"}.get(problem.field)
        raise ApiError(400, "invalid", str(problem), {field: [str(problem)]} if field else {}) from None
    if not data["confirm"]:
        return Response(s.GridPlanSerializer(_plan_answer(plan)).data)
    name = form.campaign_name(plan)
    try:
        campaign = api_grid_create(
            token=request.auth,
            plan=plan,
            project=access.project,
            author=request.user,
            name=name,
            template_version=version,
            brand_kit_version=kit,
            prompt=prompt,
            base=form.base(),
            overnight=overnight,
        )
    except (spend.BudgetExceeded, TokenLimitExceeded) as refusal:
        raise over_budget(refusal, plan.total) from None
    campaign = _campaign(request, project_id, campaign.pk)
    return Response(s.CampaignDetailSerializer(_campaign_detail(campaign)).data, status=201)
