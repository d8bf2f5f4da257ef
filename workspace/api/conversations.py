"""Conversations through the API (workspace.conversations): start one from an image, read it with its
turns, send the next message (optionally branching from a finished turn, as the page's Branch does).
Each turn is a job, held to the token's own limit like any other."""

import re
from decimal import Decimal

from django.db import transaction
from django.db.models import Prefetch, Sum
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from workspace import conversations
from workspace.access import object_access, project_access
from workspace.api import serializers as s
from workspace.api.errors import ApiError
from workspace.api.idempotency import idempotent
from workspace.api.models import ApiToken, ApiTokenJob
from workspace.api.tokens import _hold
from workspace.api.views import CURSOR, ERRORS, GENERATE, IDEMPOTENCY, READ, WRITE_ERRORS, _typed
from workspace.forms import TurnForm
from workspace.models import Conversation, Image, LedgerEntry, Role, Turn

ZERO = Decimal(0)
PAGE_SIZE = 20


def api_turn_send(
    *, token: ApiToken | None, conversation: Conversation, author, message: str, branch_from: Turn | None
) -> Turn:
    """conversations.turn_send (after conversation_branch, given a turn to branch from), held to the
    token's limit and linked to it. Raises TurnRefused, spend.BudgetExceeded, jobs.TooManyWaiting or
    TokenLimitExceeded, creating nothing (not even the branch)."""
    with transaction.atomic():
        if branch_from is not None:
            conversation = conversations.conversation_branch(turn=branch_from, author=author)
        turn = conversations.turn_send(conversation=conversation, author=author, message=message)
        # Checked with the turn's job created but not yet linked: the limit counts the token's others.
        _hold(token, turn.job.estimated_cost or ZERO)
        if token is not None:
            ApiTokenJob.objects.create(token=token, job=turn.job)
    return turn


def _threads():
    images = Prefetch("job__images", queryset=Image.objects.visible().only("id", "job_id").order_by("index"))
    turns = Turn.objects.select_related("job").prefetch_related(images).order_by("index")
    return (
        Conversation.objects.select_related("branched_from")
        .prefetch_related(Prefetch("turns", queryset=turns))
        .annotate(charged=Sum("turns__job__charges__cost"))
    )


def _turn(turn: Turn, charged: dict[int, Decimal]) -> dict:
    job = turn.job
    return {
        "id": turn.pk,
        "conversation": turn.conversation_id,
        "index": turn.index,
        "message": turn.message,
        "job": job.pk,
        "status": job.status,
        "error_message": job.error_message,
        "parent": turn.parent_id,
        "source_image": turn.source_image_id,
        "image": turn.image_id,
        "images": [image.pk for image in job.images.all()],
        "estimated_cost": job.estimated_cost,
        "cost": charged.get(job.pk, ZERO),
        "created_at": job.created_at,
    }


def _summary(conversation: Conversation) -> dict:
    args = [conversation.project_id, conversation.pk]
    return {
        "id": conversation.pk,
        "project": conversation.project_id,
        "root_image": conversation.root_image_id,
        "branched_from": conversation.branched_from_id,
        "image_model": conversation.image_model,
        "mainline_model": conversation.mainline_model,
        "model_problem": conversations.model_problem(conversation.image_model),
        "created_at": conversation.created_at,
        "cost": getattr(conversation, "charged", None) or ZERO,
        "links": {
            "self": reverse("api:conversation-detail", args=args),
            "turns": reverse("api:conversation-turns", args=args),
            "page": conversation.get_absolute_url(),
        },
    }


def _detail(conversation: Conversation) -> dict:
    charged = dict(
        LedgerEntry.objects.filter(job__turn__conversation=conversation)
        .values("job_id")
        .annotate(total=Sum("cost"))
        .values_list("job_id", "total")
    )
    return _summary(conversation) | {"turns": [_turn(turn, charged) for turn in conversation.turns.all()]}


def _answer(project_id: int, conversation_id: int, status: int = 200) -> Response:
    conversation = _threads().get(project_id=project_id, pk=conversation_id)
    return Response(s.ConversationDetailSerializer(_detail(conversation)).data, status=status)


def _empty_body(request: Request) -> None:
    if request.body and (not isinstance(request.data, dict) or request.data):
        fields = (
            {str(name): ["Unknown field."] for name in request.data} if isinstance(request.data, dict) else {}
        )
        raise ApiError(
            400, "invalid", "Send an empty body: a conversation starts from the image alone.", fields
        )


@extend_schema(
    request=s.ConversationStartSerializer,
    responses={201: s.ConversationDetailSerializer} | WRITE_ERRORS,
    parameters=[IDEMPOTENCY],
)
@api_view(["POST"])
@permission_classes([GENERATE])
@idempotent
def conversation_start(request: Request, project_id: int, image_id: int) -> Response:
    """Start a conversation refining this image, with the image's own model (the image page's
    Converse); a retired model is a 400 saying so. Send its first message to `links.turns`."""
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    image = get_object_or_404(Image.objects.visible(), project=access.project, pk=image_id)
    _empty_body(request)
    try:
        conversation = conversations.conversation_start(
            project=access.project, author=request.user, image=image
        )
    except conversations.TurnRefused as refusal:
        raise ApiError(400, "invalid", str(refusal), {"image": [str(refusal)]}) from None
    return _answer(project_id, conversation.pk, 201)


@extend_schema(
    parameters=[CURSOR, OpenApiParameter("image", int, description="Only those started from this image.")],
    responses={200: s.ConversationPageSerializer} | ERRORS,
    operation_id="projects_conversations_list",
)
@api_view(["GET"])
@permission_classes([READ])
def conversation_list(request: Request, project_id: int) -> Response:
    """The project's conversations, newest first, a page at a time (keyset cursor)."""
    access = project_access(request.user, project_id)
    found = Conversation.objects.filter(project=access.project).annotate(
        charged=Sum("turns__job__charges__cost")
    )
    for name in ("cursor", "image"):
        value = request.query_params.get(name, "")
        if value and not re.fullmatch(r"[0-9]{1,18}", value):
            reason = "Not a cursor." if name == "cursor" else "Expected an image id."
            raise ApiError(400, "invalid", f"Some fields are not valid: {name}.", {name: [reason]})
    if cursor := request.query_params.get("cursor", ""):
        found = found.filter(pk__lt=int(cursor))
    if image := request.query_params.get("image", ""):
        found = found.filter(root_image_id=int(image))
    page = list(found.order_by("-id")[: PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    answer = {"conversations": [_summary(c) for c in page], "next_cursor": str(page[-1].pk) if more else ""}
    return Response(s.ConversationPageSerializer(answer).data)


@extend_schema(responses={200: s.ConversationDetailSerializer} | ERRORS)
@api_view(["GET"])
@permission_classes([READ])
def conversation_detail(request: Request, project_id: int, conversation_id: int) -> Response:
    """A conversation with its turns: each turn's status, images and cost."""
    _, conversation = object_access(request.user, _threads(), project_id=project_id, pk=conversation_id)
    return Response(s.ConversationDetailSerializer(_detail(conversation)).data)


@extend_schema(
    request=s.TurnRequestSerializer,
    responses={201: s.ConversationDetailSerializer} | WRITE_ERRORS,
    parameters=[IDEMPOTENCY],
)
@api_view(["POST"])
@permission_classes([GENERATE])
@idempotent
def turn_create(request: Request, project_id: int, conversation_id: int) -> Response:
    """Send the next message: a turn, run as a job (402 over a budget or the token's limit). With
    `branch_from` (a finished turn of this conversation) a new conversation continues from that turn
    and this message is its first turn: the answer is then that new conversation. 409 while the last
    turn has not finished."""
    access = project_access(request.user, project_id, needs=Role.EDITOR, writes=True)
    conversation = get_object_or_404(Conversation, project=access.project, pk=conversation_id)
    data = request.data
    if not isinstance(data, dict) or request.content_type.split(";")[0].strip() != "application/json":
        raise ApiError(400, "invalid", "Send a JSON object (Content-Type: application/json).")
    fields = {str(name): ["Unknown field."] for name in data if name not in ("message", "branch_from")}
    branch_id = data.get("branch_from")
    if branch_id is not None and not _typed(branch_id, "a whole number"):
        fields["branch_from"] = ["Expected a whole number."]
    if "message" in data and not isinstance(data["message"], str):
        fields["message"] = ["Expected a string."]
    if fields:
        raise ApiError(400, "invalid", "Some fields are not valid: " + ", ".join(fields) + ".", fields)
    form = TurnForm({"message": data.get("message", "")})
    if not form.is_valid():
        fields = {name: list(messages) for name, messages in form.errors.items()}
        raise ApiError(400, "invalid", "Some fields are not valid: " + ", ".join(fields) + ".", fields)
    branch_from = None
    if branch_id is not None:
        branch_from = (
            Turn.objects.select_related("conversation")
            .filter(conversation=conversation, pk=branch_id)
            .first()
        )
        if branch_from is None:
            reason = "No such turn in this conversation."
            raise ApiError(400, "invalid", reason, {"branch_from": [reason]})
    try:
        turn = api_turn_send(
            token=request.auth,
            conversation=conversation,
            author=request.user,
            message=form.cleaned_data["message"],
            branch_from=branch_from,
        )
    except conversations.TurnRefused as refusal:
        if problem := conversations.model_problem(conversation.image_model):
            raise ApiError(400, "invalid", problem, {"message": [problem]}) from None
        field = "branch_from" if branch_from is not None and branch_from.image_id is None else "message"
        raise ApiError(409, "not_allowed_now", str(refusal), {field: [str(refusal)]}) from None
    return _answer(project_id, turn.conversation_id, 201)
