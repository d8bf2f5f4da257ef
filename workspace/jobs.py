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

from workspace import (
    campaign_runs,
    imagemodels,
    outputs,
    spend,
    worker,
)  # a module, not its names: worker imports campaign_runs, which imports this
from workspace.models import Image, Job, JobInput, Project, Reference
from workspace.queue import send_job as _enqueue  # a name of this module, so tests can replace it

ZERO = Decimal(0)


class ModelRetired(Exception):
    """The job's model can no longer be chosen (workspace.imagemodels), in words for the person."""


class TooManyWaiting(Exception):
    """The author already has FAIR_SHARE_QUEUED_PER_USER jobs waiting: nothing is created."""

    def __init__(self, waiting: int) -> None:
        self.waiting = waiting
        super().__init__(f"You have {waiting} jobs waiting; wait for some to finish.")


def job_estimate(
    *, prompt: str, params: dict, input_images: int = 0, lane: int = Job.Lane.INTERACTIVE
) -> spend.Estimate:
    """The estimate a job holds back; the overnight lane's at the Batch API's price."""
    return spend.estimate(
        model=params["model"],
        quality=params["quality"],
        size=params["size"],
        n=params["n"],
        prompt=prompt,
        input_images=input_images,
        batch=lane == Job.Lane.OVERNIGHT,
        output_format=params.get("output_format") or "png",
        frame_count=params.get("frame_count"),
        svg_model=params.get("svg_model") or "",
        svg_effort=params.get("svg_effort") or "",
    )


def _enqueue_on_commit(job: Job) -> None:
    # An overnight job waits for beat's dispatcher (workspace/overnight.py); no worker may run it.
    if job.lane != Job.Lane.OVERNIGHT:
        transaction.on_commit(lambda: _enqueue(job.pk))


def job_create(
    *,
    project: Project,
    author,
    prompt: str,
    params: dict,
    lane: int = Job.Lane.INTERACTIVE,
    origin: dict | None = None,
    estimate: spend.Estimate | None = None,
) -> Job:
    """Reserve the estimate against the budgets, create a queued job, and send it once committed.

    `lane`: the Studio's jobs are interactive; bulk or campaign work passes Job.Lane.BULK and waits
    behind them; Job.Lane.OVERNIGHT reserves at the Batch API's price and is sent in beat's next
    overnight batch instead of to a worker. `origin`: what made the job (Job.ORIGIN_FIELDS: template
    and kit versions, variables, campaign, row, cell), recorded on it. Raises spend.BudgetExceeded,
    creating nothing, when a budget cannot cover the estimate, and TooManyWaiting when the author has
    FAIR_SHARE_QUEUED_PER_USER jobs waiting (overnight jobs are not counted: they wait for a batch,
    not for workers).
    """
    # A caller that has priced the job already (the API, for the token's own limit) passes it in.
    estimate = estimate or job_estimate(prompt=prompt, params=params, lane=lane)
    with transaction.atomic():
        job = _reserve_and_create(
            project=project,
            author=author,
            prompt=prompt,
            params=params,
            cost=estimate.cost,
            lane=lane,
            **_origin(origin),
        )
        _enqueue_on_commit(job)
    return job


def _origin(origin: dict | None) -> dict:
    unknown = set(origin or {}) - set(Job.ORIGIN_FIELDS)
    if unknown:
        raise TypeError(f"Not a field that records what made a job: {', '.join(sorted(unknown))}")
    return dict(origin or {})


def _reserve_and_create(*, project: Project, author, prompt: str, params: dict, cost, **fields) -> Job:
    """Hold the estimate against the budgets and create the queued row; inside the caller's transaction."""
    # One person's thousand jobs would wait in front of nobody (claims take turns), but they would hold
    # their budget and hide everything else they asked for; the limit is a readable refusal instead.
    # Overnight jobs wait for a batch, not for workers, so they do not count against it; a campaign's
    # jobs are reserved and limited as a whole (workspace.campaigns.campaign_jobs_create) and wait in
    # the bulk lane: a queued batch must not shut its author out of the Studio.
    waiting = (
        Job.objects.filter(author=author, status__in=Job.WAITING_STATUSES, campaign__isnull=True)
        .exclude(lane=Job.Lane.OVERNIGHT)
        .count()
    )
    if waiting >= settings.FAIR_SHARE_QUEUED_PER_USER and fields.get("lane") != Job.Lane.OVERNIGHT:
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
    lane: int = Job.Lane.INTERACTIVE,
    origin: dict | None = None,
    estimate: spend.Estimate | None = None,
) -> Job:
    """Queue an edit of `inputs` (Images and References, first one edited) with an optional mask.

    `lane` and `origin` as for job_create (the overnight lane sends the edit in a batch, its inputs by
    file id).

    The caller has checked the inputs belong to the project and the mask fits the first input.
    Raises spend.BudgetExceeded, storing nothing, when a budget cannot cover it.
    """
    estimate = estimate or job_estimate(prompt=prompt, params=params, input_images=len(inputs), lane=lane)
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
                lane=lane,
                **_origin(origin),
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
            _enqueue_on_commit(job)
    except BaseException:
        outputs.delete_files(written)
        raise
    return job


def _refuse_retired_model(job: Job) -> None:
    """Doing a job again chooses its model again, so a retired one is refused as the form refuses it,
    before anything is reserved or sent (the old job and its images still read)."""
    model = imagemodels.get_model(job.model)
    if model is None or model.retired:
        raise ModelRetired(
            imagemodels.retired_problem(model) if model else f"{job.model} is no longer offered."
        )


def job_reproduce(*, job: Job, author) -> Job:
    """The same request again: same prompt, parameters, inputs and mask, as a new job.

    It was made from the same template and kit versions with the same values, so it says so too; it
    is not part of the original's campaign (it was asked for one at a time).
    """
    _refuse_retired_model(job)
    params = job.request_fields()
    origin = {
        "template_version": job.template_version,
        "brand_kit_version": job.brand_kit_version,
        "variables": job.variables,
    }
    # A conversation turn is reproduced as a one-shot edit of the image it edited, with its message:
    # the conversation's context lives in OpenAI's stored response, which a new thread would not share.
    if not job.is_edit and not job.is_turn:
        return job_create(project=job.project, author=author, prompt=job.prompt, params=params, origin=origin)
    inputs = [item.image or item.reference for item in job.inputs.select_related("image", "reference")]
    overlays: dict[str, bytes | None] = {"mask": None, "markup": None}
    for name in overlays:
        stored = getattr(job, name)
        if stored:
            with default_storage.open(stored.name, "rb") as handle:
                overlays[name] = handle.read()
    return edit_create(
        project=job.project,
        author=author,
        prompt=job.prompt,
        params=params,
        inputs=inputs,
        origin=origin,
        **overlays,
    )


def job_cancel(*, job: Job) -> bool:
    """Cancel a job that has not started (or is waiting to retry). False if it was too late.

    A job requeued after its worker died may hold an answer it paid for but never stored: canceled, it
    will never store it, so those raw files go too.
    """
    with transaction.atomic():
        won = Job.objects.cancel(job.pk)
        if won:
            worker.received_discard(job_id=job.pk)  # the worker's side owns kept answers
            if job.campaign_id is not None:
                # Its campaign ends once its last job has, however that job ended (as the worker's do).
                transaction.on_commit(
                    lambda: campaign_runs.job_ended(job_id=job.pk, campaign_id=job.campaign_id)
                )
    return won


def job_retry(*, job: Job, actor) -> bool:
    """`actor` queues a failed or canceled job again: fresh attempts, deadline and reservation.

    The actor becomes the job's author, so their budget holds the estimate and the ledger charges them,
    not whoever asked first. Moving the author (rather than adding a "charged_to") keeps one owner of a
    job's money: the hold, the charge and the badge all already follow `author`.
    An overnight job stays in the overnight lane: it goes in the next batch, at the price it reserved.
    A campaign's job keeps a campaign row's time to wait and runs its campaign again (from its card
    as from the campaign's "retry the failed"), in the same transaction.
    Raises spend.BudgetExceeded when a budget cannot cover it any more, ModelRetired when its model
    has been retired since (nothing changes).
    """
    if job.status in (Job.Status.FAILED, Job.Status.CANCELED):
        _refuse_retired_model(job)
    amount = job.estimated_cost if job.estimated_cost is not None else ZERO
    with transaction.atomic():
        if job.campaign_id is not None:
            # First, so the locks go campaign → budgets → job, the order a confirm and a cancel take.
            campaign_runs.campaign_reopen(campaign_id=job.campaign_id)
        spend.reserve(user=actor, project=job.project, amount=amount)
        won = Job.objects.retry(job.pk, reserve=amount, author_id=actor.pk)
        if won:
            if job.campaign_id is not None:
                campaign_runs.job_requeued(job_id=job.pk)
            _enqueue_on_commit(job)
        elif job.campaign_id is not None:
            transaction.set_rollback(True)  # nothing queued: the campaign stays as it was
    return won
