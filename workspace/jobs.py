"""Job services: create, claim, run, retry, cancel and sweep.

The job row is the truth. Every state change is a conditional UPDATE naming the state it expects, so two
workers, a duplicate message or a sweep racing a worker can never both win.
"""

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone

from workspace import imageapi, outputs, spend
from workspace.models import Image, Job, JobInput, Project, Reference

ZERO = Decimal(0)

logger = logging.getLogger(__name__)


def worker_name() -> str:
    # Computed per claim: a prefork child has its own pid.
    return f"{socket.gethostname()}:{os.getpid()}"


INTERRUPTED_REASON = "The worker handling this job stopped before it finished."
OUT_OF_TIME_REASON = "OpenAI did not produce the image in time, even after retrying."


def _enqueue(job_id: int, *, countdown: float | None = None) -> None:
    from workspace.tasks import run_job

    run_job.apply_async((job_id,), countdown=countdown)


def job_estimate(*, prompt: str, params: dict, input_images: int = 0) -> spend.Estimate:
    return spend.estimate(
        model=params["model"],
        quality=params["quality"],
        size=params["size"],
        n=params["n"],
        prompt=prompt,
        input_images=input_images,
    )


def job_create(*, project: Project, author, prompt: str, params: dict) -> Job:
    """Reserve the estimate against the budgets, create a queued job, and send it once committed.

    Raises spend.BudgetExceeded, creating nothing, when a budget cannot cover the estimate.
    """
    estimate = job_estimate(prompt=prompt, params=params)
    with transaction.atomic():
        job = _reserve_and_create(
            project=project, author=author, prompt=prompt, params=params, cost=estimate.cost
        )
        transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _reserve_and_create(*, project: Project, author, prompt: str, params: dict, cost, **fields) -> Job:
    """Hold the estimate against the budgets and create the queued row; inside the caller's transaction."""
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
    *, project: Project, author, prompt: str, params: dict, inputs: list, mask: bytes | None = None
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
                folder = outputs.job_folder(project_id=project.pk, job_id=job.pk)
                written.append(default_storage.save(f"{folder}/mask.png", ContentFile(mask)))
                job.mask = written[-1]
                job.save(update_fields=["mask"])
            transaction.on_commit(lambda: _enqueue(job.pk))
    except BaseException:
        outputs.delete_files(written)
        raise
    return job


def job_reproduce(*, job: Job, author) -> Job:
    """The same request again: same prompt, parameters, inputs and mask, as a new job."""
    params = {name: getattr(job, name) for name in REQUEST_FIELDS}
    if not job.is_edit:
        return job_create(project=job.project, author=author, prompt=job.prompt, params=params)
    inputs = [item.image or item.reference for item in job.inputs.select_related("image", "reference")]
    mask = None
    if job.mask:
        with default_storage.open(job.mask.name, "rb") as handle:
            mask = handle.read()
    return edit_create(
        project=job.project, author=author, prompt=job.prompt, params=params, inputs=inputs, mask=mask
    )


REQUEST_FIELDS = (
    "model",
    "size",
    "size_preset",
    "quality",
    "output_format",
    "output_compression",
    "background",
    "moderation",
    "complexity",
    "n",
    "input_fidelity",
)


def job_cancel(*, job: Job) -> bool:
    """Cancel a job that has not started (or is waiting to retry). False if it was too late."""
    changed = Job.objects.filter(pk=job.pk, status__in=[Job.Status.QUEUED, Job.Status.RETRYING]).update(
        status=Job.Status.CANCELED,
        finished_at=timezone.now(),
        next_attempt_at=None,
        retry_reason="",
        reserved_cost=0,
    )
    return bool(changed)


def job_retry(*, job: Job) -> bool:
    """Queue a failed or canceled job again, with a fresh set of attempts, deadline and reservation.

    Raises spend.BudgetExceeded when a budget cannot cover it any more.
    """
    amount = job.estimated_cost if job.estimated_cost is not None else ZERO
    with transaction.atomic():
        spend.reserve(user=job.author, project=job.project, amount=amount)
        changed = Job.objects.filter(pk=job.pk, status__in=[Job.Status.FAILED, Job.Status.CANCELED]).update(
            reserved_cost=amount,
            status=Job.Status.QUEUED,
            attempts=0,
            error_message="",
            error_code="",
            retry_reason="",
            next_attempt_at=None,
            finished_at=None,
            claim_token=None,
            lease_expires_at=None,
            deadline_at=Job.new_deadline(),
            enqueued_at=timezone.now(),
        )
        if changed:
            transaction.on_commit(lambda: _enqueue(job.pk))
    return bool(changed)


def job_claim(*, job_id: int) -> Job | None:
    """Take the job for this worker with a lease, or None if someone else has it or it is done.

    One conditional UPDATE … RETURNING (Postgres, and SQLite since 3.35): the statement that decides who
    runs the job also returns the row, where update() would need a SELECT after it. This is on the path
    from one answered call to the next call, which dozens of threads share.
    """
    now = timezone.now()
    fields = {field.name: field for field in Job._meta.concrete_fields}

    def column(name: str) -> str:
        return connection.ops.quote_name(fields[name].column)

    def value(name: str, python_value):
        return fields[name].get_db_prep_value(python_value, connection)

    status, attempts = column("status"), column("attempts")
    # Names come from the model and every value is a parameter.
    sql = (
        f"UPDATE {connection.ops.quote_name(Job._meta.db_table)} SET {status} = %s, "  # noqa: S608
        f"{column('claim_token')} = %s, {column('lease_expires_at')} = %s, {attempts} = {attempts} + 1, "
        f"{column('started_at')} = %s, {column('worker')} = %s "
        f"WHERE {column('id')} = %s AND {attempts} < {column('max_attempts')} "
        f"AND ({status} = %s OR ({status} = %s AND {column('next_attempt_at')} <= %s)) RETURNING *"
    )
    params = [
        Job.Status.RUNNING.value,
        value("claim_token", Job.new_claim_token()),
        value("lease_expires_at", now + timedelta(seconds=settings.JOB_LEASE_SECONDS)),
        value("started_at", now),
        worker_name(),
        job_id,
        Job.Status.QUEUED.value,
        Job.Status.RETRYING.value,
        value("next_attempt_at", now + timedelta(seconds=1)),
    ]
    claimed = list(Job.objects.raw(sql, params))
    return claimed[0] if claimed else None


class LeaseKeeper:
    """Renews the leases of the jobs this process is running, from one background thread.

    The lease is short so that a killed worker's job is picked up within seconds by the sweep, while a
    living worker keeps its job however long the API takes.
    """

    def __init__(self) -> None:
        self._tokens: dict[str, int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, token) -> None:
        with self._lock:
            self._tokens[str(token)] = self._tokens.get(str(token), 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()

    def release(self, token) -> None:
        with self._lock:
            self._tokens.pop(str(token), None)

    def renew_now(self) -> int:
        with self._lock:
            tokens = list(self._tokens)
        if not tokens:
            return 0
        return Job.objects.filter(claim_token__in=tokens, status=Job.Status.RUNNING).update(
            lease_expires_at=timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS)
        )

    def _run(self) -> None:
        while True:
            time.sleep(settings.JOB_LEASE_RENEW_SECONDS)
            try:
                self.renew_now()
            except Exception:
                logger.exception("could not renew job leases")
            finally:
                # A connection held between ticks is one fewer for the workers (and keeps test DBs busy).
                connection.close()


lease_keeper = LeaseKeeper()


def backoff_seconds(*, attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never sooner than the service asked."""
    ceiling = min(settings.JOB_RETRY_MAX_SECONDS, settings.JOB_RETRY_BASE_SECONDS * (2 ** (attempt - 1)))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        # The service knows its own limits; the job's deadline is what bounds a long wait.
        delay = max(delay, retry_after)
    return delay


def job_run(*, job_id: int, finisher: "Finisher | None" = None) -> None:
    """Claim the job, call the API, store the images. Safe to call any number of times.

    With a finisher, the images are checked, thumbnailed and stored on its threads, and this returns as
    soon as the API has answered and the call is charged: the caller's slot is for calls in flight, and
    the next job's call need not wait for this one's pixels.
    """
    job = job_claim(job_id=job_id)
    if job is None:
        return
    lease_keeper.hold(job.claim_token)
    handed_off = False
    try:
        answer = _call(job)
        if answer is not None:
            if finisher is not None:
                finisher.submit(lambda: _store_then_release(job, answer))
                handed_off = True
            else:
                _store_and_finish(job, answer)
    finally:
        if not handed_off:
            lease_keeper.release(job.claim_token)


def _store_then_release(job: Job, answer: "Answer") -> None:
    try:
        _store_and_finish(job, answer)
    finally:
        lease_keeper.release(job.claim_token)


class Finisher:
    """A few threads that store answered jobs' images, so a worker's call slots only wait on OpenAI.

    The backlog is bounded: when it is full, the next answered call waits for room, holding its slot,
    so a worker never takes in more images than it can store. The lease stays renewed until a job is
    stored; a worker killed with jobs in the backlog leaves them to the sweep, like any other crash.
    """

    def __init__(self, *, threads: int, backlog: int) -> None:
        self.threads = threads
        self._room = threading.BoundedSemaphore(backlog)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, work: Callable[[], None]) -> None:
        self._room.acquire()
        try:
            with self._lock:
                if self._executor is None:  # created in the process that uses it (prefork children)
                    self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="finisher")
                self._executor.submit(self._run, work)
        except BaseException:
            self._room.release()
            raise

    def _run(self, work: Callable[[], None]) -> None:
        close_old_connections()  # as Celery does around a task: no connection past its age or broken
        try:
            work()
        except Exception:
            logger.exception("storing a job's images failed; the sweep retries it when its lease runs out")
        finally:
            close_old_connections()
            self._room.release()

    def drain(self) -> None:
        """Finish everything handed over (a warm shutdown), then stop the threads."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


_finisher: Finisher | None = None
_finisher_lock = threading.Lock()


def worker_finisher() -> Finisher:
    """This process's finisher, sized from the settings."""
    global _finisher
    with _finisher_lock:
        if _finisher is None:
            _finisher = Finisher(
                threads=settings.JOB_FINISH_THREADS, backlog=settings.CELERY_WORKER_CONCURRENCY
            )
        return _finisher


def drain_worker_finisher() -> None:
    if _finisher is not None:
        _finisher.drain()


def _call_timeout(job: Job) -> float:
    remaining = (job.deadline_at - timezone.now()).total_seconds()
    # Leave room to store the images and record the outcome before the deadline.
    return max(1.0, min(settings.OPENAI_CALL_TIMEOUT, remaining - 5))


class MissingInput(Exception):
    pass


def _edit_files(job: Job) -> tuple[list[imageapi.FileTuple], bytes | None]:
    """The edit's inputs in their chosen order, and its mask, read from storage."""
    files: list[imageapi.FileTuple] = []
    for item in job.inputs.select_related("image", "reference").order_by("position"):
        source = item.image or item.reference
        try:
            with default_storage.open(source.file.name, "rb") as handle:
                data = handle.read()
        except FileNotFoundError as error:
            raise MissingInput(source.file.name) from error
        extension = outputs.EXTENSIONS[source.format]
        files.append((f"input-{item.position + 1}.{extension}", data, source.content_type))
    mask = None
    if job.mask:
        with default_storage.open(job.mask.name, "rb") as handle:
            mask = handle.read()
    return files, mask


class PreviewSaver:
    """Keeps the newest streamed partial image where the job card can show it, and removes them after."""

    def __init__(self, job: Job, attempt: int) -> None:
        self.job = job
        self.prefix = outputs.attempt_prefix(project_id=job.project_id, job_id=job.pk, attempt=attempt)
        self.saved: list[str] = []

    def __call__(self, index: int, data: bytes) -> None:
        # Stored as sent, not decoded: decoding each partial cost the worker ~10 ms a job, and it is
        # served only to members, with its sniffed type, nosniff and a sandbox CSP, until the final lands.
        image_format = outputs.sniff_format(data)
        if image_format is None:
            return  # a preview is a courtesy; the final image decides
        name = default_storage.save(
            f"{self.prefix}preview-{index}.{outputs.EXTENSIONS[image_format]}", ContentFile(data)
        )
        self.saved.append(name)
        Job.objects.filter(pk=self.job.pk, claim_token=self.job.claim_token).update(
            preview=name, preview_count=index + 1
        )

    def discard(self) -> None:
        # The names are known: no folder listing (a killed attempt's leftovers are the sweep's to find).
        outputs.delete_files(self.saved)
        self.saved.clear()


@dataclass
class Answer:
    """What the API sent for a claimed job, kept until its images are stored."""

    attempt: int
    result: imageapi.CallResult
    first_input: bytes | None
    mask: bytes | None
    previews: PreviewSaver


def _call(job: Job) -> Answer | None:
    """The API call for a claimed job; None when it failed (and the failure is recorded)."""
    attempt = job.attempts
    previews = PreviewSaver(job, attempt)
    try:
        inputs, mask = _edit_files(job) if job.is_edit else ([], None)
        result = imageapi.call(
            job=job,
            attempt=attempt,
            timeout=_call_timeout(job),
            inputs=inputs,
            mask=mask,
            on_partial=previews,
        )
    except MissingInput:
        message = "An input image is missing from storage; choose the inputs again."
        _record_failure(job, imageapi.CallFailure(message, transient=False, code="missing_input"))
        return None
    except imageapi.CallFailure as failure:
        previews.discard()
        _record_failure(job, failure)
        return None
    first_input = inputs[0][1] if mask else None
    return Answer(attempt=attempt, result=result, first_input=first_input, mask=mask, previews=previews)


def _store_and_finish(job: Job, answer: Answer) -> None:
    try:
        stored = outputs.store_outputs(
            project_id=job.project_id,
            job_id=job.pk,
            attempt=answer.attempt,
            images=[(image.index, image.data) for image in answer.result.images],
            paste_onto=(answer.first_input, answer.mask) if answer.mask else None,
        )
    except outputs.UnreadableImage as error:
        answer.previews.discard()
        logger.warning("job %s: unreadable image from the API: %s", job.pk, error)
        _record_failure(
            job, imageapi.CallFailure(imageapi.REASONS["unreadable"], transient=True, code="unreadable")
        )
        return
    _finish(job, stored)
    answer.previews.discard()


def _finish(job: Job, stored: list[outputs.StoredFile]) -> None:
    now = timezone.now()
    with transaction.atomic():
        won = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, claim_token=job.claim_token).update(
            status=Job.Status.SUCCEEDED,
            reserved_cost=0,
            preview="",
            finished_at=now,
            lease_expires_at=None,
            retry_reason="",
            next_attempt_at=None,
        )
        if won:
            Image.objects.bulk_create(
                [
                    Image(
                        job_id=job.pk,
                        project_id=job.project_id,
                        index=item.index,
                        file=item.name,
                        thumbnail=item.thumbnail_name,
                        width=item.width,
                        height=item.height,
                        format=item.format,
                        bytes=item.bytes,
                        sha256=item.sha256,
                        composite=item.composite_name,
                        composite_thumbnail=item.composite_thumbnail_name,
                        created_at=now,
                        author_id=job.author_id,
                        model=job.model,
                        kind=job.kind,
                    )
                    for item in stored
                ]
            )
    if not won:
        # The lease was lost (the sweep gave the job to another worker, or it was canceled meanwhile).
        logger.warning("job %s: finished after losing its claim; discarding this attempt's files", job.pk)
        outputs.delete_files(
            [
                name
                for item in stored
                for name in (
                    item.name,
                    item.thumbnail_name,
                    item.composite_name,
                    item.composite_thumbnail_name,
                )
                if name
            ]
        )


def _record_failure(job: Job, failure: imageapi.CallFailure) -> None:
    now = timezone.now()
    mine = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, claim_token=job.claim_token)
    if failure.transient:
        delay = backoff_seconds(attempt=job.attempts, retry_after=failure.retry_after)
        next_attempt_at = now + timedelta(seconds=delay)
        if job.attempts >= job.max_attempts:
            reason = f"Gave up after {job.attempts} attempts. {failure.reason}"
        elif next_attempt_at >= job.deadline_at:
            reason = f"{OUT_OF_TIME_REASON} Last problem: {failure.reason}"
        else:
            with transaction.atomic():
                if mine.update(
                    preview="",
                    status=Job.Status.RETRYING,
                    retry_reason=failure.reason,
                    error_code=failure.code,
                    next_attempt_at=next_attempt_at,
                    claim_token=None,
                    lease_expires_at=None,
                ):
                    transaction.on_commit(lambda: _enqueue(job.pk, countdown=delay))
            return
        mine.update(
            preview="",
            status=Job.Status.FAILED,
            reserved_cost=0,
            error_message=reason,
            error_code=failure.code,
            retry_reason="",
            next_attempt_at=None,
            finished_at=now,
            claim_token=None,
            lease_expires_at=None,
        )
        return
    mine.update(
        preview="",
        status=Job.Status.FAILED,
        reserved_cost=0,
        error_message=failure.reason,
        error_code=failure.code,
        retry_reason="",
        next_attempt_at=None,
        finished_at=now,
        claim_token=None,
        lease_expires_at=None,
    )


def jobs_sweep() -> dict[str, int]:
    """Recover jobs that a dead worker or a lost message left behind. Run by beat every few seconds."""
    now = timezone.now()
    counts = {"requeued": 0, "failed": 0, "resent": 0}
    expired = Job.objects.filter(status=Job.Status.RUNNING, lease_expires_at__lt=now)
    for job in expired.only("pk", "project_id", "attempts", "max_attempts", "claim_token", "deadline_at"):
        still_expired = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, claim_token=job.claim_token)
        if job.attempts >= job.max_attempts or job.deadline_at <= now:
            changed = still_expired.update(
                status=Job.Status.FAILED,
                reserved_cost=0,
                error_message=f"{INTERRUPTED_REASON} It was tried {job.attempts} times; retry it when ready.",
                error_code="interrupted",
                finished_at=now,
                claim_token=None,
                lease_expires_at=None,
            )
            counts["failed"] += changed
        else:
            with transaction.atomic():
                changed = still_expired.update(
                    status=Job.Status.QUEUED,
                    retry_reason=f"{INTERRUPTED_REASON} Trying again.",
                    claim_token=None,
                    lease_expires_at=None,
                    enqueued_at=now,
                )
                if changed:
                    transaction.on_commit(lambda job_id=job.pk: _enqueue(job_id))
            counts["requeued"] += changed
        if changed:
            outputs.delete_attempt_files(project_id=job.project_id, job_id=job.pk, attempt=job.attempts)

    # Messages that never arrived (a broker restart, a crash between commit and publish).
    stale_queued = Q(
        status=Job.Status.QUEUED, enqueued_at__lt=now - timedelta(seconds=settings.JOB_REQUEUE_AFTER_SECONDS)
    )
    stale_retry = Q(
        status=Job.Status.RETRYING,
        next_attempt_at__lt=now - timedelta(seconds=settings.JOB_REQUEUE_AFTER_SECONDS),
    )
    for job_id in Job.objects.filter(stale_queued | stale_retry).values_list("pk", flat=True)[:500]:
        # Stamp it so the next sweep does not send it yet again while this message is on its way.
        Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(enqueued_at=now)
        Job.objects.filter(pk=job_id, status=Job.Status.RETRYING).update(next_attempt_at=now)
        _enqueue(job_id)
        counts["resent"] += 1
    if any(counts.values()):
        logger.info("sweep: %s", counts)
    return counts
