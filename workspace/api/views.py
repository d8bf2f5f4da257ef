"""The API's views: each parses, calls one service, renders. Access is workspace.access's (another
project's object is a 404, an archived project's write a 409); validation is the forms'."""

import base64
import binascii
import functools
import hashlib
import io
import re
from collections import defaultdict

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import OuterRef, Q, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import parse_header_parameters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from workspace import (
    batches,
    campaign_forms,
    campaign_runs,
    edits,
    export,
    gallery,
    jobs,
    library,
    lineage,
    spend,
    uploads,
    webhooks,
)
from workspace.access import object_access, project_access
from workspace.api import serializers as s
from workspace.api.auth import NeedsStaff, needs
from workspace.api.errors import ApiError
from workspace.api.idempotency import HEADER, idempotent
from workspace.api.tokens import TokenLimitExceeded, api_batch_confirm, api_job_create, api_job_retry
from workspace.campaign_forms import BatchForm
from workspace.campaign_models import Campaign, PromptTemplate, TemplateVersion
from workspace.forms import EditForm, GenerationForm, SpendPeriodForm, WebhookForm
from workspace.models import Image, Job, Membership, Project, Role
from workspace.views._common import serve
from workspace.webhook_models import WebhookDelivery, WebhookEndpoint

READ, GENERATE, ADMIN = needs("read"), needs("generate"), needs("admin")
ERRORS = {code: s.ErrorSerializer for code in (400, 401, 403, 404, 429)}
WRITE_ERRORS = ERRORS | {402: s.ErrorSerializer, 409: s.ErrorSerializer}
IDEMPOTENCY = OpenApiParameter(
    HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="Any unique string (a UUID): the same key and body within 24 h get the first answer again.",
)

# What JSON type each field of the forms takes (the forms then apply their own rules and messages).
STRING, INTEGER, BASE64, BOOLEAN = "a string", "a whole number", "a base64-encoded PNG", "true or false"
GENERATION_TYPES = {
    "prompt": STRING, "model": STRING, "size": STRING, "width": INTEGER, "height": INTEGER,
    "quality": STRING, "output_format": STRING, "output_compression": INTEGER, "background": STRING,
    "moderation": STRING, "complexity": STRING, "n": INTEGER,
    "frame_count": INTEGER, "frame_duration_ms": INTEGER, "svg_model": STRING, "svg_effort": STRING,
}  # fmt: skip
EDIT_TYPES = {name: kind for name, kind in GENERATION_TYPES.items() if name != "moderation"} | {
    "input_fidelity": STRING,
    "inputs": "a list of “img:ID” and “ref:ID” strings",
    "mask": BASE64,
}


def _typed(value, kind: str) -> bool:
    if value is None:
        return True
    if kind in (STRING, BASE64):
        return isinstance(value, str)
    if kind == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == BOOLEAN:
        return isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _body(request: Request, types: dict[str, str]) -> dict:
    """The JSON object sent, checked for unknown fields and JSON types; 400 naming each problem."""
    if not isinstance(request.data, dict) or request.content_type.split(";")[0].strip() != "application/json":
        raise ApiError(400, "invalid", "Send a JSON object (Content-Type: application/json).")
    fields = {name: ["Unknown field."] for name in request.data if name not in types}
    fields |= {
        name: [f"Expected {types[name]}."]
        for name, value in request.data.items()
        if name in types and not _typed(value, types[name])
    }
    if fields:
        raise ApiError(400, "invalid", "Some fields are not valid: " + ", ".join(fields) + ".", fields)
    return {name: value for name, value in request.data.items() if value is not None}


def _valid_form(form_class: type[GenerationForm], data: dict) -> GenerationForm:
    """The browser's form, filled with the form's own defaults where the request left a field out."""
    defaults = {name: f.initial for name, f in form_class.base_fields.items() if f.initial is not None}
    if form_class is EditForm:
        defaults["size"] = "auto"
    form = form_class(defaults | data)
    if not form.is_valid():
        fields = {name: list(messages) for name, messages in form.errors.items()}
        general = fields.pop("__all__", [])
        message = " ".join(general) or "Some fields are not valid: " + ", ".join(fields) + "."
        raise ApiError(400, "invalid", message, fields)
    return form


def _job_answer(job: Job, status: int = 200) -> Response:
    return Response(s.JobSerializer(job).data, status=status)


# --- Projects ---------------------------------------------------------------------------------------


@extend_schema(responses={200: s.ProjectSerializer(many=True)} | ERRORS, operation_id="projects_list")
@api_view(["GET"])
@permission_classes([READ])
def project_list(request: Request) -> Response:
    """Projects you belong to (staff: every project), with your role."""
    role = Membership.objects.filter(project=OuterRef("pk"), user=request.user).values("role")[:1]
    projects = (
        Project.objects.for_user(request.user).annotate(role=Subquery(role)).distinct().order_by("name", "id")
    )
    return Response(s.ProjectSerializer(projects, many=True).data)


@extend_schema(responses={200: s.ProjectSerializer} | ERRORS)
@api_view(["GET"])
@permission_classes([READ])
def project_detail(request: Request, project_id: int) -> Response:
    access = project_access(request.user, project_id)
    project = access.project
    project.role = access.role.value if access.is_member else None
    return Response(s.ProjectSerializer(project).data)


# --- Templates ----------------------------------------------------------------------------------------


@extend_schema(responses={200: s.TemplateSerializer(many=True)} | ERRORS)
@api_view(["GET"])
@permission_classes([READ])
def template_list(request: Request, project_id: int) -> Response:
    """The project's prompt templates (read-only), each with its newest version."""
    access = project_access(request.user, project_id)
    templates = PromptTemplate.objects.filter(project=access.project).order_by("name", "id")
    versions = defaultdict(list)
    for version in (
        TemplateVersion.objects.filter(template__project=access.project)
        .select_related("created_by", "brand_kit_version__kit")
        .order_by("template_id", "-number")
    ):
        versions[version.template_id].append(version)
    answer = []
    for template in templates:
        latest = versions[template.pk][0]
        kit = latest.brand_kit_version
        answer.append(
            {
                "id": template.pk,
                "name": template.name,
                "archived": template.archived_at is not None,
                "latest": {
                    "id": latest.pk,
                    "number": latest.number,
                    "text": latest.text,
                    "variables": latest.variables,
                    "brand_kit": None
                    if kit is None
                    else {"id": kit.kit_id, "name": kit.kit.name, "version": kit.number},
                    "references": [ref.pk for ref in latest.references.order_by("id")],
                    "defaults": latest.defaults,
                    "samples": latest.samples,
                    "created_at": latest.created_at,
                },
                "versions": [
                    {
                        "id": version.pk,
                        "number": version.number,
                        "created_at": version.created_at,
                        "created_by": version.created_by.get_username(),
                    }
                    for version in versions[template.pk]
                ],
            }
        )
    return Response(s.TemplateSerializer(answer, many=True).data)


# --- Jobs ---------------------------------------------------------------------------------------------


JOB_PAGE_SIZE = 20
CURSOR = OpenApiParameter("cursor", OpenApiTypes.STR, description="From the previous page's next_cursor.")


class ByMethod(BasePermission):
    """GET (and HEAD, OPTIONS) needs the read scope, anything else the generate scope."""

    def has_permission(self, request, view) -> bool:
        scope = READ() if request.method in ("GET", "HEAD", "OPTIONS") else GENERATE()
        self.message = scope.message
        return scope.has_permission(request, view)


@extend_schema(
    methods=["GET"],
    parameters=[CURSOR, OpenApiParameter("status", OpenApiTypes.STR, enum=Job.Status.values)],
    responses={200: s.JobPageSerializer} | ERRORS,
    operation_id="projects_jobs_list",
)
@extend_schema(
    methods=["POST"],
    request=s.GenerationRequestSerializer,
    responses={201: s.JobSerializer} | WRITE_ERRORS,
    parameters=[IDEMPOTENCY],
    operation_id="projects_jobs_create",
)
@api_view(["GET", "POST"])
@permission_classes([ByMethod])
def job_create(request: Request, project_id: int) -> Response:
    """GET: the project's jobs, newest first, a page at a time (keyset cursor), optionally of one status.
    POST: queue a generation, with the studio form's rules and messages; 402 over a budget."""
    if request.method == "POST":
        return _job_create(request, project_id)
    access = project_access(request.user, project_id)
    query = request.query_params
    found = Job.objects.filter(project=access.project)
    status = query.get("status", "")
    if status:
        if status not in Job.Status.values:
            reason = "Expected one of: " + ", ".join(Job.Status.values) + "."
            raise ApiError(400, "invalid", reason, {"status": [reason]})
        found = found.filter(status=status)
    cursor = query.get("cursor", "")
    if cursor:
        if not re.fullmatch(r"[0-9]{1,18}", cursor):
            raise ApiError(400, "invalid", "That cursor is not valid.", {"cursor": ["Not a cursor."]})
        found = found.filter(pk__lt=int(cursor))
    page = list(found.prefetch_related("inputs").order_by("-id")[: JOB_PAGE_SIZE + 1])
    more = len(page) > JOB_PAGE_SIZE
    page = page[:JOB_PAGE_SIZE]
    return Response(
        {"jobs": s.JobSerializer(page, many=True).data, "next_cursor": str(page[-1].pk) if more else ""}
    )


@idempotent
def _job_create(request: Request, project_id: int) -> Response:
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    form = _valid_form(GenerationForm, _body(request, GENERATION_TYPES))
    job = api_job_create(
        token=request.auth,
        project=access.project,
        author=request.user,
        prompt=form.cleaned_data["prompt"],
        params=form.job_params(),
    )
    return _job_answer(job, 201)


@extend_schema(
    request=s.EditRequestSerializer, responses={201: s.JobSerializer} | WRITE_ERRORS, parameters=[IDEMPOTENCY]
)
@api_view(["POST"])
@permission_classes([GENERATE])
@idempotent
def edit_create(request: Request, project_id: int) -> Response:
    """Queue an edit of earlier images and references (`inputs`, the first one edited)."""
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    data = _body(request, EDIT_TYPES)
    tokens = data.pop("inputs", [])
    encoded_mask = data.pop("mask", None)
    form = _valid_form(EditForm, data)
    chosen = edits.inputs_resolve(project=access.project, tokens=tokens)
    if chosen.problem or not chosen.chosen:
        reason = chosen.problem or "Choose at least one image to edit."
        raise ApiError(400, "invalid", reason, {"inputs": [reason]})
    mask = _mask(encoded_mask, first=chosen.chosen[0]) if encoded_mask is not None else None
    job = api_job_create(
        token=request.auth,
        project=access.project,
        author=request.user,
        prompt=form.cleaned_data["prompt"],
        params=form.job_params(),
        inputs=chosen.chosen,
        mask=mask,
    )
    return _job_answer(job, 201)


def _mask(encoded: str, *, first) -> bytes:
    """The `mask` field: base64 of a PNG, held to the edit form's rules (edits.mask_check); 400 naming
    the field otherwise."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        reason = "Expected a base64-encoded PNG."
        raise ApiError(400, "invalid", reason, {"mask": [reason]}) from None
    try:
        return edits.mask_check(first=first, upload=SimpleUploadedFile("mask.png", raw))
    except uploads.UploadRejected as refusal:
        raise ApiError(400, "invalid", str(refusal), {"mask": [refusal.reason]}) from None


@extend_schema(responses={200: s.JobSerializer} | ERRORS)
@api_view(["GET"])
@permission_classes([READ])
def job_detail(request: Request, project_id: int, job_id: int) -> Response:
    """A job's status, and its images once it has succeeded."""
    _, job = object_access(request.user, Job.objects.all(), project_id=project_id, pk=job_id)
    return _job_answer(job)


@extend_schema(request=None, responses={200: s.JobSerializer} | WRITE_ERRORS)
@api_view(["POST"])
@permission_classes([GENERATE])
def job_cancel(request: Request, project_id: int, job_id: int) -> Response:
    """Cancel a job that has not started; 409 if it already has."""
    _, job = object_access(
        request.user, Job.objects.all(), project_id=project_id, pk=job_id, needs=Role.EDITOR, writes=True
    )
    if not jobs.job_cancel(job=job):
        raise ApiError(
            409, "too_late", f"This job is {job.get_status_display().lower()}; it cannot be canceled."
        )
    job.refresh_from_db()
    return _job_answer(job)


@extend_schema(request=None, responses={200: s.JobSerializer} | WRITE_ERRORS, parameters=[IDEMPOTENCY])
@api_view(["POST"])
@permission_classes([GENERATE])
@idempotent
def job_retry(request: Request, project_id: int, job_id: int) -> Response:
    """Queue a failed or canceled job again, charged to you; 409 if it is not failed or canceled."""
    _, job = object_access(
        request.user, Job.objects.all(), project_id=project_id, pk=job_id, needs=Role.EDITOR, writes=True
    )
    if not api_job_retry(token=request.auth, job=job, actor=request.user):
        raise ApiError(409, "not_retryable", "Only a failed or canceled job can be retried.")
    job.refresh_from_db()
    return _job_answer(job)


# --- Images and references -----------------------------------------------------------------------


@extend_schema(
    parameters=[
        OpenApiParameter("cursor", OpenApiTypes.STR, description="From the previous page's next_cursor."),
        *[OpenApiParameter(name, OpenApiTypes.STR) for name in ("q", "model", "review", "kind", "aspect")],
        OpenApiParameter("author", OpenApiTypes.INT),
        OpenApiParameter("favourites", OpenApiTypes.BOOL),
        OpenApiParameter("since", OpenApiTypes.DATE),
        OpenApiParameter("until", OpenApiTypes.DATE),
    ],
    responses={200: s.ImagePageSerializer} | ERRORS,
    operation_id="projects_images_list",
)
@api_view(["GET"])
@permission_classes([READ])
def image_list(request: Request, project_id: int) -> Response:
    """The gallery: newest first, with its filters, a page at a time (keyset cursor)."""
    access = project_access(request.user, project_id)
    authors = list(Membership.objects.filter(project=access.project).values_list("user_id", "user__username"))
    if request.user.pk not in {pk for pk, _ in authors}:
        authors.append((request.user.pk, request.user.get_username()))
    query = request.query_params
    form = gallery.GalleryFilterForm(query, authors=authors)
    if not form.is_valid():
        fields = {name: list(messages) for name, messages in form.errors.items()}
        raise ApiError(400, "invalid", "Some filters are not valid: " + ", ".join(fields) + ".", fields)
    images = gallery.filtered(project=access.project, user=request.user, data=form.cleaned_data)
    try:
        page = gallery.page(images, cursor=query.get("cursor", ""))
    except gallery.BadCursor:
        raise ApiError(400, "invalid", "That cursor is not valid.", {"cursor": ["Not a cursor."]}) from None
    return Response(
        {"images": s.ImageSummarySerializer(page.items, many=True).data, "next_cursor": page.next_cursor}
    )


def _visible_image(request: Request, project_id: int, image_id: int) -> Image:
    _, image = object_access(request.user, Image.objects.visible(), project_id=project_id, pk=image_id)
    return image


@extend_schema(responses={200: s.ImageDetailSerializer} | ERRORS)
@api_view(["GET"])
@permission_classes([READ])
def image_detail(request: Request, project_id: int, image_id: int) -> Response:
    """An image's metadata, the job that made it, and its lineage."""
    image = _visible_image(request, project_id, image_id)
    parents = [
        {
            "position": item.position,
            "input": f"img:{item.image_id}" if item.image_id else f"ref:{item.reference_id}",
        }
        for item in lineage.parents(image)
    ]
    answer = {
        "id": image.pk,
        "project_id": image.project_id,
        "job": image.job,
        "index": image.index,
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "bytes": image.bytes,
        "created_at": image.created_at,
        "review_state": image.review_state,
        "parents": parents,
        "children": [child.pk for child in lineage.children(image)],
        "ancestors": [earlier.pk for earlier in lineage.ancestors(image)],
        "links": s._image_links(image),
        "made_with": export.made_with(image.job),
    }
    return Response(s.ImageDetailSerializer(answer).data)


@extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY} | ERRORS)
@api_view(["GET"])
@permission_classes([READ])
def image_download(request: Request, project_id: int, image_id: int) -> HttpResponse:
    """The image file, as an attachment (a redirect to a signed URL when media is in a bucket)."""
    image = _visible_image(request, project_id, image_id)
    return serve(image.file.name, content_type=image.content_type, download_name=image.download_name)


@extend_schema(
    request={"multipart/form-data": s.ReferenceUploadSerializer},
    responses={201: s.ReferenceUploadResultSerializer} | WRITE_ERRORS | {413: s.ErrorSerializer},
)
@api_view(["POST"])
@permission_classes([GENERATE])
def reference_upload(request: Request, project_id: int) -> Response:
    """Add references to the library: verified and re-encoded without metadata, like the library page."""
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    files = request.FILES.getlist("files") if hasattr(request.FILES, "getlist") else []
    unknown = [name for name in request.data if name != "files"]
    if unknown:
        raise ApiError(
            400,
            "invalid",
            "Unknown fields: " + ", ".join(unknown) + ".",
            {n: ["Unknown field."] for n in unknown},
        )
    if not files:
        raise ApiError(
            400, "invalid", "Send one or more images as multipart “files”.", {"files": ["Required."]}
        )
    stored, rejected = library.references_upload(project=access.project, user=request.user, files=files)
    answer = {
        "references": s.ReferenceSerializer(stored, many=True).data,
        "rejected": {refusal.filename: refusal.reason for refusal in rejected},
    }
    if not stored:
        reason = " ".join(str(refusal) for refusal in rejected)
        raise ApiError(400, "upload_rejected", reason, {"files": [str(refusal) for refusal in rejected]})
    return Response(answer, status=201)


# --- Spend ------------------------------------------------------------------------------------------


@extend_schema(responses={200: s.SpendSerializer} | ERRORS)
@api_view(["GET"])
@permission_classes([READ])
def my_spend(request: Request) -> Response:
    """This month: spent, simulated (demo mode), held by unfinished jobs, and your budget."""
    summary = spend.summary_for(request.user)
    return Response(s.SpendSerializer(summary).data)


@extend_schema(
    parameters=[
        OpenApiParameter("period", OpenApiTypes.STR, enum=["this_month", "last_month", "custom"]),
        OpenApiParameter("start", OpenApiTypes.DATE),
        OpenApiParameter("end", OpenApiTypes.DATE),
    ],
    responses={200: s.SpendReportSerializer} | ERRORS,
)
@api_view(["GET"])
@permission_classes([ADMIN, NeedsStaff])
def user_spend(request: Request) -> Response:
    """Staff: each person's spend over a period (this month unless told)."""
    form = SpendPeriodForm(request.query_params)
    if not form.is_valid():
        fields = {name: list(messages) for name, messages in form.errors.items()}
        raise ApiError(400, "invalid", "Some fields are not valid: " + ", ".join(fields) + ".", fields)
    report = spend.report(start=form.cleaned_data["start"], end=form.cleaned_data["end"])
    users = [
        {
            "user_id": row["user_id"],
            "username": row["user__username"],
            "cost": row["cost"],
            "simulated_cost": row["simulated_cost"],
        }
        for row in report.by_user
    ]
    return Response(s.SpendReportSerializer({"start": report.start, "end": report.end, "users": users}).data)


# --- Webhooks (owners only, like the settings page) --------------------------------------------------

WEBHOOK_TYPES = {"url": STRING, "description": STRING, "events": "a list of event names"}


def _owner(request: Request, project_id: int, *, writes: bool = False):
    return project_access(request.user, project_id, needs=Role.OWNER, writes=writes).project


@extend_schema(
    methods=["GET"],
    responses={200: s.WebhookEndpointSerializer(many=True)} | ERRORS,
    operation_id="projects_webhooks_list",
)
@extend_schema(
    methods=["POST"],
    request=s.WebhookCreateSerializer,
    responses={201: s.WebhookEndpointSecretSerializer} | WRITE_ERRORS,
    operation_id="projects_webhooks_create",
)
@api_view(["GET", "POST"])
@permission_classes([ByMethod])
def webhook_list(request: Request, project_id: int) -> Response:
    """GET: the project's webhook endpoints (never their secrets). POST: add one; the answer carries
    its signing secret, this once. An address that leads somewhere private is a 400 on `url`."""
    if request.method == "GET":
        project = _owner(request, project_id)
        found = WebhookEndpoint.objects.filter(project=project)
        return Response(s.WebhookEndpointSerializer(found, many=True).data)
    project = _owner(request, project_id, writes=True)
    data = _body(request, WEBHOOK_TYPES)
    if "events" not in data:
        data["events"] = WebhookForm.base_fields["events"].initial
    form = WebhookForm(data)
    if not form.is_valid():
        fields = {name: list(messages) for name, messages in form.errors.items()}
        raise ApiError(400, "invalid", "Some fields are not valid: " + ", ".join(fields) + ".", fields)
    try:
        endpoint = webhooks.endpoint_add(
            project=project,
            url=form.cleaned_data["url"],
            events=form.cleaned_data["events"],
            description=form.cleaned_data["description"],
            actor=request.user,
        )
    except webhooks.WebhookRefused as refusal:
        raise ApiError(400, "invalid", str(refusal), {"url": [str(refusal)]}) from None
    return Response(s.WebhookEndpointSecretSerializer(endpoint).data, status=201)


@extend_schema(methods=["DELETE"], request=None, responses={204: None} | WRITE_ERRORS)
@api_view(["DELETE"])
@permission_classes([GENERATE])
def webhook_detail(request: Request, project_id: int, endpoint_id: int) -> Response:
    """Remove an endpoint and its delivery log; nothing more is sent to it."""
    project = _owner(request, project_id, writes=True)
    try:
        webhooks.endpoint_remove(project=project, endpoint_id=endpoint_id, actor=request.user)
    except WebhookEndpoint.DoesNotExist:
        raise NotFound("Not found.") from None
    return Response(status=204)


@extend_schema(request=None, responses={200: s.WebhookEndpointSecretSerializer} | WRITE_ERRORS)
@api_view(["POST"])
@permission_classes([GENERATE])
def webhook_rotate(request: Request, project_id: int, endpoint_id: int) -> Response:
    """A new signing secret, shown this once; the previous one signs too until previous_secret_valid_until."""
    project = _owner(request, project_id, writes=True)
    try:
        endpoint = webhooks.endpoint_rotate(project=project, endpoint_id=endpoint_id, actor=request.user)
    except WebhookEndpoint.DoesNotExist:
        raise NotFound("Not found.") from None
    return Response(s.WebhookEndpointSecretSerializer(endpoint).data)


@extend_schema(request=None, responses={202: s.WebhookDeliverySerializer} | WRITE_ERRORS)
@api_view(["POST"])
@permission_classes([GENERATE])
def webhook_ping(request: Request, project_id: int, endpoint_id: int) -> Response:
    """Queue a `webhook.ping` message to the endpoint, whatever events it chose."""
    project = _owner(request, project_id, writes=True)
    try:
        delivery = webhooks.endpoint_ping(project=project, endpoint_id=endpoint_id)
    except WebhookEndpoint.DoesNotExist:
        raise NotFound("Not found.") from None
    return Response(s.WebhookDeliverySerializer(delivery).data, status=202)


@extend_schema(responses={200: s.WebhookDeliverySerializer(many=True)} | ERRORS)
@api_view(["GET"])
@permission_classes([READ])
def webhook_deliveries(request: Request, project_id: int, endpoint_id: int) -> Response:
    """The endpoint's recent messages, newest first, each with its attempts."""
    project = _owner(request, project_id)
    try:
        found = webhooks.endpoint_deliveries(project=project, endpoint_id=endpoint_id)
    except WebhookEndpoint.DoesNotExist:
        raise NotFound("Not found.") from None
    return Response(s.WebhookDeliverySerializer(found, many=True).data)


@extend_schema(request=None, responses={202: s.WebhookDeliverySerializer} | WRITE_ERRORS)
@api_view(["POST"])
@permission_classes([GENERATE])
def webhook_redeliver(request: Request, project_id: int, endpoint_id: int, delivery_id: int) -> Response:
    """Send a finished message (succeeded or failed) once more, same id and body (the settings page's
    Redeliver); 409 while it is still being delivered."""
    project = _owner(request, project_id, writes=True)
    try:
        delivery = webhooks.delivery_redeliver(
            project=project, endpoint_id=endpoint_id, delivery_id=delivery_id
        )
    except WebhookDelivery.DoesNotExist:
        raise NotFound("Not found.") from None
    except webhooks.WebhookRefused as refusal:
        raise ApiError(409, "still_delivering", str(refusal)) from None
    return Response(s.WebhookDeliverySerializer(delivery).data, status=202)


# --- Not found, and the documentation page -------------------------------------------------------


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
@authentication_classes([])
@permission_classes([])
@throttle_classes([])
def not_found(request: Request, rest: str = "") -> Response:
    raise NotFound("There is no such API address.")


def docs(request: HttpRequest) -> HttpResponse:
    """Swagger UI from static/vendor, started by a static script (no inline code under the CSP)."""
    return render(request, "workspace/api_docs.html")


# --- Campaigns (grids and catalog batches; made on the campaign pages, or batches here) ----------------

CAMPAIGN_PAGE_SIZE = 20
BATCH_TYPES = {
    "template_id": INTEGER, "template_version_id": INTEGER, "csv": STRING, "name": STRING,
    "key_column": STRING, "kit_id": INTEGER, "model": STRING, "quality": STRING, "size": STRING,
    "overnight": BOOLEAN, "confirm": BOOLEAN,
}  # fmt: skip
# The batch form's field names, as this API names them.
BATCH_FORM_FIELDS = {
    "template": "template_id", "template_version": "template_version_id", "file": "csv", "kit": "kit_id",
}  # fmt: skip
FORM_FIELDS = {api: form for form, api in BATCH_FORM_FIELDS.items()}
CAMPAIGN_ACTIONS = ("confirm", "pause", "resume", "cancel", "retry")


def _campaign(request: Request, project_id: int, campaign_id: int, **needs_kwargs) -> Campaign:
    _, campaign = object_access(
        request.user,
        Campaign.objects.select_related("template_version__template", "brand_kit_version__kit").defer("rows"),
        project_id=project_id,
        pk=campaign_id,
        **needs_kwargs,
    )
    return campaign


def _campaign_summary(campaign: Campaign) -> dict:
    version, kit = campaign.template_version, campaign.brand_kit_version
    args = [campaign.project_id, campaign.pk]
    return {
        "id": campaign.pk,
        "kind": campaign.kind,
        "name": campaign.name,
        "status": campaign.status,
        "template": None
        if version is None
        else {"id": version.template_id, "name": version.template.name, "version": version.number},
        "brand_kit": None if kit is None else {"id": kit.kit_id, "name": kit.kit.name, "version": kit.number},
        "overnight": campaign.overnight,
        "axes": campaign.axes,
        "key_column": campaign.key_column,
        "columns": campaign.columns,
        "estimated_cost": campaign.estimated_cost,
        "created_at": campaign.created_at,
        "finished_at": campaign.finished_at,
        "links": {
            "self": reverse("api:campaign-detail", args=args),
            "page": campaign.get_absolute_url(),
            **{action: reverse(f"api:campaign-{action}", args=args) for action in CAMPAIGN_ACTIONS},
        },
    }


def _campaign_detail(campaign: Campaign) -> dict:
    progress = campaign_runs.progress(campaign)
    return _campaign_summary(campaign) | {
        "progress": {
            name: getattr(progress, name)
            for name in (
                "total",
                "done",
                "running",
                "waiting",
                "failed",
                "canceled",
                "percent",
                "cost",
                "held",
            )
        }
    }


@extend_schema(
    parameters=[CURSOR],
    responses={200: s.CampaignPageSerializer} | ERRORS,
    operation_id="projects_campaigns_list",
)
@api_view(["GET"])
@permission_classes([READ])
def campaign_list(request: Request, project_id: int) -> Response:
    """The project's campaigns, newest first, a page at a time (keyset cursor); drafts only your own,
    as on the campaigns page."""
    access = project_access(request.user, project_id)
    found = (
        Campaign.objects.filter(project=access.project)
        .filter(~Q(status=Campaign.Status.DRAFT) | Q(author=request.user))
        .select_related("template_version__template", "brand_kit_version__kit")
        .defer("rows")
    )
    cursor = request.query_params.get("cursor", "")
    if cursor:
        if not re.fullmatch(r"[0-9]{1,18}", cursor):
            raise ApiError(400, "invalid", "That cursor is not valid.", {"cursor": ["Not a cursor."]})
        found = found.filter(pk__lt=int(cursor))
    page = list(found.order_by("-id")[: CAMPAIGN_PAGE_SIZE + 1])
    more = len(page) > CAMPAIGN_PAGE_SIZE
    page = page[:CAMPAIGN_PAGE_SIZE]
    answer = {
        "campaigns": [_campaign_summary(campaign) for campaign in page],
        "next_cursor": str(page[-1].pk) if more else "",
    }
    return Response(s.CampaignPageSerializer(answer).data)


@extend_schema(responses={200: s.CampaignDetailSerializer} | ERRORS)
@api_view(["GET"])
@permission_classes([READ])
def campaign_detail(request: Request, project_id: int, campaign_id: int) -> Response:
    """A campaign, with its progress: jobs by state, charged so far, still held."""
    campaign = _campaign(request, project_id, campaign_id)
    return Response(s.CampaignDetailSerializer(_campaign_detail(campaign)).data)


def _action_answer(campaign: Campaign, *, canceled: int = 0, queued: int = 0) -> Response:
    campaign.refresh_from_db(fields=["status", "finished_at", "estimated_cost"])
    answer = {"campaign": _campaign_detail(campaign), "canceled": canceled, "queued": queued}
    return Response(s.CampaignActionSerializer(answer).data)


def _not_now(campaign: Campaign, action: str, allowed: str) -> ApiError:
    return ApiError(
        409,
        "not_allowed_now",
        f"This campaign is {campaign.get_status_display().lower()}; only {allowed} campaign can be {action}.",
    )


def _controlled(request: Request, project_id: int, campaign_id: int) -> Campaign:
    """Like the campaign page's controls: an editor, in a project that is not archived."""
    return _campaign(request, project_id, campaign_id, needs=Role.EDITOR, writes=True)


ACTION_SCHEMA = {"request": None, "responses": {200: s.CampaignActionSerializer} | WRITE_ERRORS}


@extend_schema(**ACTION_SCHEMA)
@api_view(["POST"])
@permission_classes([GENERATE])
def campaign_pause(request: Request, project_id: int, campaign_id: int) -> Response:
    """Stop starting its jobs (running ones finish, waiting ones keep their reservation); 409 unless
    running."""
    campaign = _controlled(request, project_id, campaign_id)
    if not campaign_runs.campaign_pause(campaign=campaign):
        raise _not_now(campaign, "paused", "a running")
    return _action_answer(campaign)


@extend_schema(**ACTION_SCHEMA)
@api_view(["POST"])
@permission_classes([GENERATE])
def campaign_resume(request: Request, project_id: int, campaign_id: int) -> Response:
    """Start its waiting jobs again; 409 unless paused."""
    campaign = _controlled(request, project_id, campaign_id)
    if not campaign_runs.campaign_resume(campaign=campaign):
        raise _not_now(campaign, "resumed", "a paused")
    return _action_answer(campaign)


@extend_schema(**ACTION_SCHEMA)
@api_view(["POST"])
@permission_classes([GENERATE])
def campaign_cancel(request: Request, project_id: int, campaign_id: int) -> Response:
    """Cancel every job not yet started (their reservations go back to the budgets); running ones
    finish. 409 unless running or paused."""
    campaign = _controlled(request, project_id, campaign_id)
    if not campaign.is_running:
        raise _not_now(campaign, "canceled", "a running or paused")
    return _action_answer(campaign, canceled=campaign_runs.campaign_cancel(campaign=campaign))


@extend_schema(
    request=None,
    responses={200: s.CampaignActionSerializer} | WRITE_ERRORS,
    parameters=[IDEMPOTENCY],
)
@api_view(["POST"])
@permission_classes([GENERATE])
@idempotent
def campaign_retry(request: Request, project_id: int, campaign_id: int) -> Response:
    """Queue its failed jobs again, charged to you: all of them or, over a budget (402), none. 409 for
    a draft."""
    campaign = _controlled(request, project_id, campaign_id)
    if campaign.status == Campaign.Status.DRAFT:
        raise ApiError(409, "not_allowed_now", "This batch is a draft: nothing of it has run yet.")
    return _action_answer(
        campaign, queued=campaign_runs.campaign_retry_failed(campaign=campaign, actor=request.user)
    )


def _batch_refused(refusal: batches.BatchRefused) -> ApiError:
    problems = [
        {"row": problem.row, "column": problem.column, "message": problem.message}
        for problem in refusal.problems
    ]
    lines = [
        (f"Row {p['row']}" if p["row"] else "The file")
        + (f", column “{p['column']}”" if p["column"] else "")
        + f": {p['message']}"
        for p in problems
    ]
    count = f"{refusal.total} problem{'s' if refusal.total != 1 else ''}"
    return ApiError(
        400,
        "invalid_csv",
        f"The CSV has {count}; nothing was created. {refusal}",
        {"csv": lines},
        {"problems": problems, "problem_count": refusal.total},
    )


# A multipart body's parts besides the file (the form fields, the boundaries) fit well within this.
MULTIPART_SLACK_BYTES = 64 * 1024
TRUE_WORDS, FALSE_WORDS = ("true", "1", "on", "yes"), ("false", "0", "off", "no", "")


def upload_body(view):
    """Read a multipart body (a CSV `file`) up to the batch page's own limit, before the Idempotency-Key
    hash reads it: Django's read stops at DATA_UPLOAD_MAX_MEMORY_SIZE (1 MB), which is meant for typed
    form fields, so a larger file would be refused before the form could say anything. Over the limit
    is a 413 in the API's shape, read no further. JSON bodies keep Django's 1 MB."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        http = request._request
        if request.content_type.startswith("multipart/") and not hasattr(http, "_body"):
            try:
                length = int(http.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit = campaign_forms.MAX_CSV_BYTES
            if length > limit + MULTIPART_SLACK_BYTES:
                raise ApiError(
                    413,
                    "too_large",
                    f"This upload is {length:,} bytes; a batch's CSV file may be at most {limit:,} bytes "
                    "(the batch page's limit). Split it into several batches.",
                )
            # What HttpRequest.body does, without its 1 MB cap: the parsers then read this copy.
            http._body = _same_boundary(http, http.read())
            http._stream = io.BytesIO(http._body)
        return view(request, *args, **kwargs)

    return wrapper


def _same_boundary(http: HttpRequest, raw: bytes) -> bytes:
    """The body with its multipart boundary replaced by one made from the content: clients pick a new
    random boundary for every request, and the Idempotency-Key's hash (content type and bytes) would
    then take a retried upload for another request (a 409) instead of answering it again."""
    _, params = parse_header_parameters(http.META.get("CONTENT_TYPE", ""))
    boundary = params.get("boundary", "")
    if not boundary or not boundary.isascii():
        return raw  # the parser refuses it in its own words
    marker = b"--" + boundary.encode("ascii")
    canonical = "atelier-" + hashlib.sha256(raw.replace(marker, b"--")).hexdigest()
    http.META["CONTENT_TYPE"] = f"multipart/form-data; boundary={canonical}"
    return raw.replace(marker, b"--" + canonical.encode("ascii"))


def _multipart_flag(data, name: str) -> bool | None:
    value = data.get(name)
    if value is None:
        return None
    word = str(value).strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        reason = "Expected true or false."
        raise ApiError(400, "invalid", f"Some fields are not valid: {name}.", {name: [reason]})
    return word in TRUE_WORDS


def _batch_input(request: Request) -> tuple[dict, dict, bool | None]:
    """(form data, form files, confirm) from a JSON body with the CSV as text, or from a multipart
    upload with the CSV as its `file` (for files over the JSON body's 1 MB)."""
    if not request.content_type.startswith("multipart/"):
        data = _body(request, BATCH_TYPES)
        confirm = data.pop("confirm", None)
        text = data.pop("csv", "")
        files = {"file": SimpleUploadedFile("api.csv", text.encode("utf-8"), "text/csv")} if text else {}
        return {FORM_FIELDS.get(name, name): value for name, value in data.items()}, files, confirm
    names = set(request.data.keys())
    unknown = sorted(names - set(BATCH_TYPES) - {"file"})
    if unknown:
        fields = {name: ["Unknown field."] for name in unknown}
        raise ApiError(400, "invalid", "Some fields are not valid: " + ", ".join(unknown) + ".", fields)
    uploads_sent = request.FILES.getlist("file") if hasattr(request.FILES, "getlist") else []
    if (
        len(uploads_sent) > 1
        or ("file" in names and not uploads_sent)
        or ("file" in names and "csv" in names)
    ):
        reason = "Send one CSV file as “file”, or the CSV text as “csv”, not both."
        raise ApiError(400, "invalid", reason, {"file": [reason]})
    files = {"file": uploads_sent[0]} if uploads_sent else {}
    if not files and request.data.get("csv"):
        files = {"file": SimpleUploadedFile("api.csv", request.data["csv"].encode("utf-8"), "text/csv")}
    flags = {name: _multipart_flag(request.data, name) for name in ("confirm", "overnight")}
    data = {
        FORM_FIELDS.get(name, name): request.data.get(name)
        for name in names - {"file", "csv", "confirm", "overnight"}
    }
    if flags["overnight"] is not None:
        data["overnight"] = flags["overnight"]
    return data, files, flags["confirm"]


def batch_form_errors(form, *, uploaded: bool) -> ApiError:
    """The batch form's errors under the API's field names (a multipart upload's file is `file`)."""
    names = BATCH_FORM_FIELDS | ({"file": "file"} if uploaded else {})
    fields = {names.get(name, name): list(messages) for name, messages in form.errors.items()}
    general = fields.pop("__all__", [])
    message = " ".join(general) or "Some fields are not valid: " + ", ".join(fields) + "."
    return ApiError(400, "invalid", message, fields)


@extend_schema(
    request={"application/json": s.BatchRequestSerializer, "multipart/form-data": s.BatchUploadSerializer},
    responses={201: s.CampaignDetailSerializer}
    | WRITE_ERRORS
    | {400: s.BatchErrorSerializer, 402: s.OverBudgetErrorSerializer, 413: s.ErrorSerializer},
    parameters=[IDEMPOTENCY],
)
@api_view(["POST"])
@permission_classes([GENERATE])
@upload_body
@idempotent
def campaign_batch_create(request: Request, project_id: int) -> Response:
    """A catalog batch from a CSV, every row checked first (the batch page's rules): problems are a
    400 listing each with its row and column, and nothing is created. The CSV is JSON `csv` text (within
    the body's 1 MB) or a multipart `file` (up to the batch page's 50 MB and 100,000 rows).
    `confirm: false` keeps it as a draft (confirm it with `…/{campaign}/confirm`); `confirm: true`
    queues every row, the whole estimate reserved at once (402 over a budget, nothing created)."""
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    form_data, files, confirm = _batch_input(request)
    uploaded = request.content_type.startswith("multipart/")
    if confirm is None:
        reason = "Say true (queue it now) or false (keep it as a draft)."
        raise ApiError(400, "invalid", reason, {"confirm": [reason]})
    form = BatchForm(form_data, files, project=access.project)
    if not form.is_valid():
        raise batch_form_errors(form, uploaded=uploaded)
    upload = form.cleaned_data["file"]
    version = form.cleaned_data["template_version"]  # the one asked for, else the newest
    try:
        campaign, _checked = batches.batch_draft(
            project=access.project,
            author=request.user,
            # CSV text has no file name: named as before; an uploaded file by its name, as the page does.
            name=form.cleaned_data["name"] or f"{version}: {upload.name if uploaded else 'API batch'}"[:120],
            source_name=upload.name,
            template_version=version,
            brand_kit_version=form.kit_version(),
            data=upload.read(),
            base=form.base(),
            key_column=form.cleaned_data["key_column"].strip(),
            overnight=form.cleaned_data["overnight"],
        )
        if confirm:
            api_batch_confirm(token=request.auth, campaign=campaign, author=request.user)
    except batches.BatchRefused as refusal:
        raise _batch_refused(refusal) from None
    except (spend.BudgetExceeded, TokenLimitExceeded) as refusal:
        raise over_budget(refusal, campaign.estimated_cost) from None
    campaign = _campaign(request, project_id, campaign.pk)
    return Response(s.CampaignDetailSerializer(_campaign_detail(campaign)).data, status=201)


def over_budget(refusal: spend.BudgetExceeded | TokenLimitExceeded, total) -> ApiError:
    """A budget's (or the token's own limit's) refusal of a whole campaign, in the campaign pages'
    words, with what is left to spend."""
    whose = "this token's own limit" if isinstance(refusal, TokenLimitExceeded) else "the budget"
    return ApiError(
        402,
        "over_budget",
        f"This would hold about ${total or 0:.2f} back, but only ${refusal.remaining:.2f} is left of "
        f"{whose} this month. Nothing was queued: make the grid or the file smaller, or ask for a larger "
        "budget.",
        extra={"remaining": f"{refusal.remaining:.2f}", "needed": f"{total or 0:.2f}"},
    )
