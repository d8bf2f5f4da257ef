"""Job services for the web side: estimate, create, reproduce, cancel and retry.

The worker's side (claim, call, store, finish, the sweep) is in `workspace.worker`. Every state change
is one of the transitions on `Job.objects` (see the `Job` docstring).
"""

from decimal import Decimal

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from workspace import outputs, spend
from workspace.models import Image, Job, JobInput, Project, Reference
from workspace.queue import send_job as _enqueue  # a name of this module, so tests can replace it

ZERO = Decimal(0)


class TooManyWaiting(Exception):
    """The author already has FAIR_SHARE_QUEUED_PER_USER jobs waiting: nothing is created."""

    def __init__(self, waiting: int) -> None:
        self.waiting = waiting
        super().__init__(f"You have {waiting} jobs waiting; wait for some to finish.")


def job_estimate(*, prompt: str, params: dict, input_images: int = 0) -> spend.Estimate:
    return spend.estimate(
        model=params["model"],
        quality=params["quality"],
        size=params["size"],
        n=params["n"],
        prompt=prompt,
        input_images=input_images,
        output_format=params.get("output_format") or "png",
        frame_count=params.get("frame_count"),
    )


def job_create(
    *, project: Project, author, prompt: str, params: dict, lane: int = Job.Lane.INTERACTIVE
) -> Job:
    """Reserve the estimate against the budgets, create a queued job, and send it once committed.

    `lane`: the Studio's jobs are interactive; bulk or campaign work passes Job.Lane.BULK and waits
    behind them. Raises spend.BudgetExceeded, creating nothing, when a budget cannot cover the
    estimate, and TooManyWaiting when the author has FAIR_SHARE_QUEUED_PER_USER jobs waiting.
    """
    estimate = job_estimate(prompt=prompt, params=params)
    with transaction.atomic():
        job = _reserve_and_create(
            project=project, author=author, prompt=prompt, params=params, cost=estimate.cost, lane=lane
        )
        transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _reserve_and_create(*, project: Project, author, prompt: str, params: dict, cost, **fields) -> Job:
    """Hold the estimate against the budgets and create the queued row; inside the caller's transaction."""
    # One person's thousand jobs would wait in front of nobody (claims take turns), but they would hold
    # their budget and hide everything else they asked for; the limit is a readable refusal instead.
    waiting = Job.objects.filter(author=author, status__in=Job.WAITING_STATUSES).count()
    if waiting >= settings.FAIR_SHARE_QUEUED_PER_USER:
        raise TooManyWaiting(waiting)
    spend.reserve(user=author, project=project, amount=cost)
    return Job.objects.create(
        project=project,
        author=author,
        prompt=prompt,
        max_attempts=settings.JOB_MAX_ATTEMPTS,
        deadline_at=Job.new_deadline(),
        enqueued_at=timezone.now(),
        estimated_cost=cost,
        reserved_cost=cost,
        **params,
        **fields,
    )


def edit_create(
    *,
    project: Project,
    author,
    prompt: str,
    params: dict,
    inputs: list,
    mask: bytes | None = None,
    markup: bytes | None = None,
) -> Job:
    """Queue an edit of `inputs` (Images and References, first one edited) with an optional mask.

    The caller has checked the inputs belong to the project and the mask fits the first input.
    Raises spend.BudgetExceeded, storing nothing, when a budget cannot cover it.
    """
    estimate = job_estimate(prompt=prompt, params=params, input_images=len(inputs))
    written: list[str] = []
    try:
        with transaction.atomic():
            job = _reserve_and_create(
                project=project,
                author=author,
                prompt=prompt,
                params=params,
                cost=estimate.cost,
                kind=Job.Kind.EDIT,
            )
            JobInput.objects.bulk_create(
                [
                    JobInput(
                        job=job,
                        position=position,
                        image=source if isinstance(source, Image) else None,
                        reference=source if isinstance(source, Reference) else None,
                    )
                    for position, source in enumerate(inputs)
                ]
            )
            if mask is not None:
                written.append(default_storage.save(f"{job.folder}/mask.png", ContentFile(mask)))
                job.mask = written[-1]
                job.save(update_fields=["mask"])
            if markup is not None:
                written.append(default_storage.save(f"{job.folder}/markup.png", ContentFile(markup)))
                job.markup = written[-1]
                job.save(update_fields=["markup"])
            transaction.on_commit(lambda: _enqueue(job.pk))
    except BaseException:
        outputs.delete_files(written)
        raise
    return job


def job_reproduce(*, job: Job, author) -> Job:
    """The same request again: same prompt, parameters, inputs and mask, as a new job."""
    params = job.request_fields()
    if not job.is_edit:
        return job_create(project=job.project, author=author, prompt=job.prompt, params=params)
    inputs = [item.image or item.reference for item in job.inputs.select_related("image", "reference")]
    overlays: dict[str, bytes | None] = {"mask": None, "markup": None}
    for name in overlays:
        stored = getattr(job, name)
        if stored:
            with default_storage.open(stored.name, "rb") as handle:
                overlays[name] = handle.read()
    return edit_create(
        project=job.project, author=author, prompt=job.prompt, params=params, inputs=inputs, **overlays
    )


def job_cancel(*, job: Job) -> bool:
    """Cancel a job that has not started (or is waiting to retry). False if it was too late."""
    return Job.objects.cancel(job.pk)


def job_retry(*, job: Job, actor) -> bool:
    """`actor` queues a failed or canceled job again: fresh attempts, deadline and reservation.

    The actor becomes the job's author, so their budget holds the estimate and the ledger charges them,
    not whoever asked first. Moving the author (rather than adding a "charged_to") keeps one owner of a
    job's money: the hold, the charge and the badge all already follow `author`.
    Raises spend.BudgetExceeded when a budget cannot cover it any more.
    """
    amount = job.estimated_cost if job.estimated_cost is not None else ZERO
    with transaction.atomic():
        spend.reserve(user=actor, project=job.project, amount=amount)
        won = Job.objects.retry(job.pk, reserve=amount, author_id=actor.pk)
        if won:
            transaction.on_commit(lambda: _enqueue(job.pk))
    return won
