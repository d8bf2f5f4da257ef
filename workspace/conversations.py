"""Conversations: refining one image over several messages through the Responses API.

Each message is a turn, and each turn is a job (kind CONVERSE) that goes through the same queue, lease,
retries, fair share and budgets as any other: estimated, reserved and enqueued here, run by the worker
(`worker._call_turn`), charged from its response's usage in two parts (spend.charge). The turn's image
is stored as a child of the image it edited (a JobInput), so the family tree shows the conversation.
"""

from django.conf import settings
from django.db import transaction

from workspace import imagemodels, jobs, spend
from workspace.models import Conversation, Image, Job, JobInput, Project, Turn


class TurnRefused(Exception):
    """A turn that cannot be sent, in words for the person who asked."""


def model_problem(model_id: str) -> str:
    """Why this image model cannot take a conversation turn; '' when it can."""
    model = imagemodels.get_model(model_id)
    if model is None or getattr(model, "retired", False):
        return f"{model_id} is retired or unknown, so it cannot make new images; start from a newer model."
    return ""


def conversation_start(*, project: Project, author, image: Image, image_model: str = "") -> Conversation:
    """A new thread refining `image`, with the image's own model unless another is named."""
    if image.project_id != project.pk:
        raise TurnRefused("That image belongs to another project.")
    if not image.editable:
        # The page offers no button for these; a hand-made POST must not reach the API with one.
        raise TurnRefused(
            f"A {image.format.upper()} cannot be refined in a conversation: GIF and SVG are what a model "
            "makes, not what it takes. Start from a still image."
        )
    model = image_model or image.model or imagemodels.DEFAULT_MODEL
    if problem := model_problem(model):
        raise TurnRefused(problem)
    return Conversation.objects.create(
        project=project,
        author=author,
        root_image=image,
        mainline_model=settings.CONVERSATION_MODEL,
        image_model=model,
    )


def conversation_branch(*, turn: Turn, author) -> Conversation:
    """A new thread continuing from `turn`: its image and its response, leaving the old thread as it is."""
    if turn.image_id is None or not turn.response_id:
        raise TurnRefused("Only a turn that has finished its image can be branched.")
    source = turn.conversation
    if problem := model_problem(source.image_model):
        raise TurnRefused(problem)
    return Conversation.objects.create(
        project_id=source.project_id,
        author=author,
        root_image_id=turn.image_id,
        branched_from=turn,
        mainline_model=source.mainline_model,
        image_model=source.image_model,
    )


def turn_send(*, conversation: Conversation, author, message: str) -> Turn:
    """Queue the next message of the thread as a job. Raises TurnRefused, spend.BudgetExceeded or
    jobs.TooManyWaiting, creating nothing."""
    if problem := model_problem(conversation.image_model):
        raise TurnRefused(problem)
    with transaction.atomic():
        # The thread's row is the lock that keeps two messages sent at once from both becoming turn n.
        Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
        if conversation.turns.exclude(job__status__in=Job.FINAL_STATUSES).exists():
            raise TurnRefused("Wait for the last turn to finish before the next message.")
        last = conversation.turns.order_by("-index").first()
        # A failed or canceled turn has no response to continue (a refused message would otherwise end
        # the thread): the next message continues the last turn that made its image.
        good = (
            conversation.turns.filter(job__status=Job.Status.SUCCEEDED, image__isnull=False)
            .exclude(response_id="")
            .select_related("image")
            .order_by("-index")
            .first()
        )
        parent = good or conversation.branched_from
        source = parent.image if parent is not None else conversation.root_image
        if source is None or source.deleted_at is not None:
            raise TurnRefused("The image this turn would edit has been deleted.")
        size = f"{source.width}x{source.height}"
        estimate = spend.turn_estimate(
            mainline_model=conversation.mainline_model,
            image_model=conversation.image_model,
            message=message,
            size=size,
        )
        job = jobs._reserve_and_create(
            project=conversation.project,
            author=author,
            prompt=message,
            params={"model": conversation.image_model, "size": size, "quality": "auto", "n": 1},
            cost=estimate.cost,
            kind=Job.Kind.CONVERSE,
        )
        JobInput.objects.create(job=job, position=0, image=source)
        turn = Turn.objects.create(
            conversation=conversation,
            index=(last.index + 1) if last is not None else 0,
            message=message,
            job=job,
            parent=parent,
            source_image=source,
        )
        transaction.on_commit(lambda: jobs._enqueue(job.pk))
    return turn
