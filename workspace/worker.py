"""The worker's side of a job: claim, call, record and charge, store, finish; and the sweep.

Every state change is one of the transitions on `Job.objects` (see the `Job` docstring), so two workers,
a duplicate message or a sweep racing a worker can never both win. Imports run one way: tasks → worker
→ models, imageapi, outputs, spend, queue; nothing here imports the web-side services.
"""

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone

from workspace import (
    campaign_runs,
    formats,
    imageapi,
    observability,
    outputs,
    provenance,
    queue,
    spend,
    webhooks,
)
from workspace.models import PAUSED, ApiCall, Image, Job, Turn

logger = logging.getLogger(__name__)

INTERRUPTED_REASON = "The worker handling this job stopped before it finished."
OUT_OF_TIME_REASON = "OpenAI did not produce the image in time, even after retrying."
MISSING_INPUT_REASON = "An input image is missing from storage; choose the inputs again."


def worker_name() -> str:
    # Computed per claim: a prefork child has its own pid.
    return f"{socket.gethostname()}:{os.getpid()}"


# --- Running one job ------------------------------------------------------------------------------------


# Set on a warm shutdown: a thread finishes the job it holds and takes no other.
shutting_down = threading.Event()


def jobs_run_next(*, finisher: "Finisher | None" = None, sent_for: int | None = None) -> int:
    """What a worker's message does: claim the next job in turn and run it, then the next, until none
    is due (or the worker is stopping). Returns how many it ran.

    Messages only wake workers; the queue is the job rows. A thread that has run a job takes the next
    without a message, so a lost message loses nothing while anything runs, and the person at their
    fair-share limit whose message finds nothing to claim is served by their own running threads.
    """
    ran = 0
    while not shutting_down.is_set():
        job = Job.objects.claim_next(worker=worker_name(), calls_per_user=settings.FAIR_SHARE_CALLS_PER_USER)
        if job is None:
            return ran
        # The message's request id belongs to the job it was sent for; another job this thread takes
        # was submitted by another request, so its lines carry no request id rather than a wrong one.
        request_id = None if job.pk == sent_for else observability.NONE
        with observability.bound(job_id=job.pk, request_id=request_id):
            _run_claimed(job, finisher=finisher)
        ran += 1
    return ran


def job_run(*, job_id: int, finisher: "Finisher | None" = None) -> None:
    """Claim this job, call the API, record and charge the call, store the images, finish. Safe to call
    any number of times: only the claim's winner does anything.

    With a finisher, the images are checked, thumbnailed and stored on its threads, and this returns as
    soon as the API has answered and the call is charged: the caller's slot is for calls in flight, and
    the next job's call need not wait for this one's pixels.
    """
    with observability.bound(job_id=job_id):  # every line logged for this job says which job
        job = Job.objects.claim(job_id, worker=worker_name())
        if job is None:
            return  # another worker has it, it is over, or its retry is not due
        _run_claimed(job, finisher=finisher)


def _run_claimed(job: Job, *, finisher: "Finisher | None") -> None:
    observability.observe_claim(job)
    lease_keeper.hold(job.claim_token)
    handed_off = False
    try:
        answer = _received_answer(job)
        if answer is None:
            answer = _call(job)
            _record_and_charge(job, answer)
        if answer.failure is not None:
            _record_failure(job, answer.failure)
        elif finisher is not None:
            release_connection()  # the backlog may be full: wait for room without holding a connection
            finisher.submit(lambda: _store_then_release(job, answer))
            handed_off = True
        else:
            _store_and_finish(job, answer)
    finally:
        if not handed_off:
            lease_keeper.release(job.claim_token)


class MissingInput(Exception):
    pass


@dataclass
class Answer:
    """What the API sent for a claimed job (or why there is nothing), kept until its images are stored."""

    attempt: int
    previews: "PreviewSaver"
    result: imageapi.CallResult | None = None
    failure: imageapi.CallFailure | None = None
    first_input: bytes | None = None
    mask: bytes | None = None
    # The raw answer files kept for this answer (see ApiCall.received), and the call they belong to.
    received: list[str] = field(default_factory=list)
    api_call_id: int | None = None

    @property
    def facts(self) -> imageapi.CallFacts | None:
        return self.result.facts if self.result is not None else self.failure.facts


def _received_answer(job: Job) -> Answer | None:
    """An answer an earlier attempt was charged for but never stored (its worker died in between), read
    back from storage, so this attempt stores it instead of paying for the same images again."""
    call = _kept_answer(job.pk).order_by("-id").only("pk", "received", "request_id").first()
    if call is None:
        return None
    answer = Answer(
        attempt=job.attempts, previews=PreviewSaver(job), received=call.received, api_call_id=call.pk
    )
    try:
        images = []
        for index, name in enumerate(call.received):
            with default_storage.open(name, "rb") as handle:
                images.append(imageapi.GeneratedImage(data=handle.read(), index=index))
        if job.is_edit and job.mask:  # a masked edit is pasted back onto its first input
            inputs, answer.mask = edit_files(job)
            answer.first_input = inputs[0][1] if answer.mask else None
    except (FileNotFoundError, MissingInput) as error:
        # Nothing left to store from: forget it, and this attempt calls again.
        logger.warning("job %s: the answer of call %s cannot be read back (%s)", job.pk, call.pk, error)
        _forget_received(answer)
        return None
    answer.result = imageapi.CallResult(images=images, facts=imageapi.CallFacts(endpoint=""))
    logger.info("job %s attempt %s: storing the answer call %s received", job.pk, job.attempts, call.pk)
    return answer


def _keep_received(job: Job, answer: Answer) -> None:
    """Write the answered images' bytes as they came (no decode) where a later attempt can find them."""
    prefix = job.answer_prefix(answer.attempt)
    for image in answer.result.images:
        extension = formats.extension(outputs.sniff_format(image.data) or job.output_format)
        answer.received.append(
            default_storage.save(f"{prefix}{image.index}.{extension}", ContentFile(image.data))
        )


def _forget_received(answer: Answer) -> None:
    """The answer is stored (or cannot be): clear its call's claim on it, then delete its raw files."""
    if answer.api_call_id is not None:
        ApiCall.objects.filter(pk=answer.api_call_id).update(received=[])
    outputs.delete_files(answer.received)
    answer.received = []


def _call(job: Job) -> Answer:
    """The API call for a claimed job: the images, or the failure (nothing recorded yet)."""
    previews = PreviewSaver(job)
    answer = Answer(attempt=job.attempts, previews=previews)
    try:
        inputs, answer.mask = edit_files(job) if job.is_edit or job.is_turn else ([], None)
        markup = _stored_bytes(job.markup.name) if job.is_edit and job.markup else None
        stream = job.streams_previews  # may read the model registry: before the connection goes back
        release_connection()  # the call is seconds to minutes of waiting on OpenAI, not on the database
        if job.is_turn:
            answer.result = _call_turn(job, inputs, previews)
        else:
            answer.result = imageapi.call(
                params=job.api_params(),
                edit=job.is_edit,
                stream=stream,
                timeout=_call_timeout(job),
                inputs=inputs,
                mask=answer.mask,
                markup=markup,
                on_partial=previews,
            )
    except MissingInput:
        answer.failure = imageapi.CallFailure(MISSING_INPUT_REASON, transient=False, code="missing_input")
    except imageapi.CallFailure as failure:
        previews.discard()
        answer.failure = failure
    else:
        # A masked edit's output is pasted back onto the first input when it is stored.
        answer.first_input = inputs[0][1] if answer.mask else None
    return answer


def _call_turn(job: Job, inputs: list[imageapi.FileTuple], previews: "PreviewSaver") -> imageapi.CallResult:
    """A conversation turn's Responses API call: continue the parent turn's response, or show the image.

    The turn's row says which response it continues; the parent finished before this turn could be
    sent (workspace.conversations), so its response id is there.
    """
    turn = Turn.objects.select_related("conversation", "parent").get(job_id=job.pk)
    previous = turn.parent.response_id if turn.parent is not None else ""
    return imageapi.respond(
        mainline_model=turn.conversation.mainline_model,
        image_model=job.model,
        message=job.prompt,
        previous_response_id=previous,
        first_image=None if previous else inputs[0],
        timeout=_call_timeout(job),
        on_partial=previews,
    )


def release_connection() -> None:
    """Give this thread's database connection back to the pool (with Postgres's pool, closing returns it).

    Dozens of threads wait on OpenAI at once; each holds a connection only for its database steps, so a
    worker needs a handful, not one per call in flight. Never inside a transaction (a test's, too).
    """
    if not connection.in_atomic_block:
        connection.close()


def _call_timeout(job: Job) -> float:
    remaining = (job.deadline_at - timezone.now()).total_seconds()
    # Leave room to store the images and record the outcome before the deadline.
    return max(1.0, min(settings.OPENAI_CALL_TIMEOUT, remaining - 5))


def edit_files(job: Job) -> tuple[list[imageapi.FileTuple], bytes | None]:
    """The edit's inputs in their chosen order, and its mask, read from storage."""
    files: list[imageapi.FileTuple] = []
    for item in job.inputs.select_related("image", "reference").order_by("position"):
        source = item.image or item.reference
        if not source.file.name:  # a purged image keeps its row for lineage, not its file
            raise MissingInput(f"image {source.pk}, deleted")
        try:
            with default_storage.open(source.file.name, "rb") as handle:
                data = handle.read()
        except FileNotFoundError as error:
            raise MissingInput(source.file.name) from error
        extension = formats.extension(source.format)
        files.append((f"input-{item.position + 1}.{extension}", data, source.content_type))
    mask = None
    if job.mask:
        with default_storage.open(job.mask.name, "rb") as handle:
            mask = handle.read()
    return files, mask


def _stored_bytes(name: str) -> bytes:
    try:
        with default_storage.open(name, "rb") as handle:
            return handle.read()
    except FileNotFoundError as error:
        raise MissingInput(name) from error


class PreviewSaver:
    """Keeps the newest streamed partial image where the job card can show it, and removes them after."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.prefix = job.attempt_prefix(job.attempts)
        self.saved: list[str] = []

    def __call__(self, index: int, data: bytes) -> None:
        # Stored as sent, not decoded: decoding each partial cost the worker ~10 ms a job, and it is
        # served only to members, with its sniffed type, nosniff and a sandbox CSP, until the final lands.
        image_format = outputs.sniff_format(data)
        if image_format is None:
            return  # a preview is a courtesy; the final image decides
        try:
            name = default_storage.save(
                f"{self.prefix}preview-{index}.{formats.extension(image_format)}", ContentFile(data)
            )
            self.saved.append(name)
            Job.objects.show_preview(self.job.pk, token=self.job.claim_token, name=name, count=index + 1)
        except (OperationalError, InterfaceError, OSError) as error:
            # Runs inside the stream: raising here would abandon an answer OpenAI bills for (a database
            # restarting mid-stream lost a billed call in make chaos). The final image still lands.
            logger.warning("job %s: could not show preview %s: %r", self.job.pk, index, error)
        finally:
            release_connection()  # the call goes on streaming

    def discard(self) -> None:
        # The names are known: no folder listing (a killed attempt's leftovers are the sweep's to find).
        outputs.delete_files(self.saved)
        self.saved.clear()


def _record_and_charge(job: Job, answer: Answer) -> None:
    """Write the ApiCall row for the call, and for an answered one its charge, in one transaction."""
    facts = answer.facts
    if facts is None:
        return  # no call was made
    if answer.failure is None:
        outcome = ApiCall.Outcome.OK
    else:
        outcome = ApiCall.Outcome.TRANSIENT if answer.failure.transient else ApiCall.Outcome.PERMANENT
    record = ApiCall(
        job=job,
        attempt=answer.attempt,
        endpoint=facts.endpoint,
        outcome=outcome,
        request_id=facts.request_id,
        http_status=facts.http_status,
        latency_ms=facts.latency_ms,
        error_type=facts.error_type,
        error_code=answer.failure.code if answer.failure is not None else "",
        error_detail=facts.error_detail,
        response_size=facts.size,
        response_quality=facts.quality,
        response_background=facts.background,
        response_format=facts.output_format,
        **token_columns(facts.usage),
    )
    if answer.failure is not None:
        # A refused call returns no usage: nothing to charge. A response that ran and made no image
        # still reports (and is billed for) what it used.
        record = _save_call(job, record, charge=bool(facts.usage))
        logger.info(
            "image call failed job=%s attempt=%s code=%s transient=%s request_id=%s",
            job.pk,
            answer.attempt,
            answer.failure.code,
            answer.failure.transient,
            record.request_id,
        )
        return
    try:
        _keep_received(job, answer)
    except OSError:
        # Storage is away: still record and charge; only a crash before the store would pay twice.
        logger.exception("job %s: could not keep the answer until it is stored", job.pk)
        outputs.delete_files(answer.received)
        answer.received = []
    record.received = answer.received
    answer.api_call_id = _save_call(job, record, charge=True).pk


def _save_call(job: Job, record: ApiCall, *, charge: bool = False) -> ApiCall:
    """Save the call's row (and its charge) in one transaction, riding out a database restart: the call
    happened and, answered, was paid for, so giving up here would leave it off the ledger and make the
    next attempt pay again. A retry first looks for the row, in case the commit landed as the
    connection broke; the charge is idempotent on its call.
    """
    deadline = time.monotonic() + settings.DB_POOL_TIMEOUT
    retrying = False
    while True:
        try:
            with transaction.atomic():
                existing = None
                if retrying and record.request_id:
                    existing = ApiCall.objects.filter(
                        job_id=job.pk, attempt=record.attempt, request_id=record.request_id
                    ).first()
                if existing is not None:
                    record = existing
                else:
                    record.save()
                if charge:
                    spend.charge(api_call=record, job=job)
            return record
        except (OperationalError, InterfaceError):
            if connection.in_atomic_block or time.monotonic() > deadline:
                raise
            logger.warning("job %s: the database is away; recording its call again shortly", job.pk)
            retrying = True
            record.pk, record._state.adding = None, True
            connection.close()
            time.sleep(0.5)


def token_columns(usage: dict | None) -> dict:
    if usage is None:
        return {}
    if "image_gen" in usage:
        # A conversation turn: the columns show the image tool's tokens; the whole usage (the
        # mainline's too) is kept in `usage` and priced in parts by spend.charge.
        return {**token_columns(usage.get("image_gen") or {}), "usage": usage}
    input_details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    output_image_tokens = output_details.get("image_tokens")
    if output_image_tokens is None:
        # Older responses give no breakdown: all output tokens of an images call are image tokens.
        output_image_tokens = usage.get("output_tokens")
    return {
        "usage": usage,
        "input_text_tokens": input_details.get("text_tokens"),
        "input_image_tokens": input_details.get("image_tokens"),
        "output_image_tokens": output_image_tokens,
        "output_text_tokens": output_details.get("text_tokens", 0),
        "total_tokens": usage.get("total_tokens"),
    }


def _store_then_release(job: Job, answer: Answer) -> None:
    try:
        _store_and_finish(job, answer)
    finally:
        lease_keeper.release(job.claim_token)


def _store_and_finish(job: Job, answer: Answer) -> None:
    try:
        stored = outputs.store_outputs(
            prefix=job.attempt_prefix(answer.attempt),
            images=[(image.index, image.data) for image in answer.result.images],
            paste_onto=(answer.first_input, answer.mask) if answer.mask else None,
        )
    except outputs.UnreadableImage as error:
        answer.previews.discard()
        _forget_received(answer)  # the next attempt calls again rather than reading these bytes again
        logger.warning("job %s: unreadable image from the API: %s", job.pk, error)
        _record_failure(
            job, imageapi.CallFailure(imageapi.REASONS["unreadable"], transient=True, code="unreadable")
        )
        return
    if _finish(job, stored, answer):
        # Stored: the raw copy has done its job (a lost claim keeps it, for the attempt that took over).
        outputs.delete_files(answer.received)
    answer.previews.discard()


def _finish(job: Job, stored: list[outputs.StoredFile], answer: Answer | None = None) -> bool:
    now = timezone.now()
    with transaction.atomic():
        won = Job.objects.finish(job.pk, token=job.claim_token, now=now)
        if won:
            if answer is not None and answer.api_call_id is not None:
                ApiCall.objects.filter(pk=answer.api_call_id).update(received=[])
            images_add(job=job, stored=stored, now=now)
            if job.is_turn:
                _finish_turn(job)
            webhooks.job_ended(job_id=job.pk)  # the event commits with the transition
            transaction.on_commit(lambda: provenance.checks_queue(job_id=job.pk))
            if job.campaign_id is not None:
                # After the commit, so the last of a campaign's jobs to end sees all of them ended.
                transaction.on_commit(
                    lambda: campaign_runs.job_ended(job_id=job.pk, campaign_id=job.campaign_id)
                )
    if not won:
        # The lease was lost (the sweep gave the job to another worker, or it was canceled meanwhile).
        logger.warning("job %s: finished after losing its claim; discarding this attempt's files", job.pk)
        outputs.delete_files([name for item in stored for name in outputs.stored_names(item)])
    return won


def images_add(*, job: Job, stored: list[outputs.StoredFile], now) -> None:
    """The Image rows of a job's stored outputs; inside the transaction that marks it succeeded (the
    worker's finish, and the overnight lane's batch_finish)."""
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


def _finish_turn(job: Job) -> None:
    """The turn's response id (from its answered call) and image, with the job's transition."""
    call = ApiCall.objects.filter(job_id=job.pk, outcome=ApiCall.Outcome.OK).order_by("-id").first()
    response_id = ((call.usage if call is not None else None) or {}).get("response_id") or ""
    image = Image.objects.filter(job_id=job.pk).order_by("index").first()
    Turn.objects.filter(job_id=job.pk).update(response_id=response_id, image=image)


def backoff_seconds(*, attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never sooner than the service asked."""
    ceiling = min(settings.JOB_RETRY_MAX_SECONDS, settings.JOB_RETRY_BASE_SECONDS * (2 ** (attempt - 1)))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        # The service knows its own limits; the job's deadline is what bounds a long wait.
        delay = max(delay, retry_after)
    return delay


def _record_failure(job: Job, failure: imageapi.CallFailure) -> None:
    """A transient failure with attempts and time left schedules a retry; anything else fails the job."""
    reason = failure.reason
    if failure.transient:
        delay = backoff_seconds(attempt=job.attempts, retry_after=failure.retry_after)
        next_attempt_at = timezone.now() + timedelta(seconds=delay)
        if job.attempts >= job.max_attempts:
            reason = f"Gave up after {job.attempts} attempts. {failure.reason}"
        elif next_attempt_at >= job.deadline_at:
            reason = f"{OUT_OF_TIME_REASON} Last problem: {failure.reason}"
        else:
            with transaction.atomic():
                if Job.objects.schedule_retry(
                    job.pk,
                    token=job.claim_token,
                    code=failure.code,
                    reason=failure.reason,
                    at=next_attempt_at,
                ):
                    transaction.on_commit(lambda: queue.send_job(job.pk, countdown=delay))
            return
    _fail(job.pk, token=job.claim_token, code=failure.code, message=reason)


def _fail(job_id: int, **transition) -> bool:
    """Job.objects.fail, with the job.failed webhook event in the same transaction."""
    with transaction.atomic():
        won = Job.objects.fail(job_id, **transition)
        if won:
            webhooks.job_ended(job_id=job_id)
            received_discard(job_id=job_id)  # a failed job has no next attempt to store a kept answer
            transaction.on_commit(lambda: campaign_runs.job_ended(job_id=job_id))
    return won


def _kept_answer(job_id: int):
    """The job's calls whose paid answer is kept in storage, not yet stored as its images."""
    return ApiCall.objects.filter(job_id=job_id, outcome=ApiCall.Outcome.OK, received__0__isnull=False)


def received_discard(*, job_id: int) -> int:
    """A job that ended without storing its kept answer (failed, canceled) will never read those raw
    files: clear the calls' claim on them and delete them once that commits. Returns how many files.

    Called inside the transaction that ends the job, so the rows and the state change go together; the
    files go only after the commit (a rollback leaves rows that name files still there).
    """
    names = [
        name for received in _kept_answer(job_id).values_list("received", flat=True) for name in received
    ]
    if names:
        _kept_answer(job_id).update(received=[])
        transaction.on_commit(lambda: outputs.delete_files(names))
    return len(names)


# --- Leases and the finisher -------------------------------------------------------------------------


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

    def holds(self, token) -> bool:
        with self._lock:
            return str(token) in self._tokens

    def renew_now(self) -> int:
        with self._lock:
            tokens = list(self._tokens)
        return Job.objects.renew(tokens)

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
                # In the submitter's context: the finisher's log lines carry the job's and request's ids.
                self._executor.submit(copy_context().run, self._run, work)
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


# --- The sweep -------------------------------------------------------------------------------------------


LOST_WAKE_LIMIT = 500  # messages one sweep sends at most
SWEEP_LOCK_KEY = 0x61746C73  # "atls": the advisory lock only one sweep at a time holds
_sweep_lock = threading.Lock()  # SQLite has no advisory locks; a laptop runs one beat


def jobs_sweep() -> dict[str, int]:
    """Recover jobs that a dead worker or a lost message left behind. Run by beat every few seconds.

    One sweep at a time across every beat and worker: a second that starts while one runs returns at
    once, doing nothing ("skipped"). The lock is Postgres's, held by the sweep's transaction, so a
    sweep that dies releases it with its connection; the messages go out once that transaction commits.
    """
    if connection.vendor != "postgresql":
        if not _sweep_lock.acquire(blocking=False):
            return {"skipped": 1}
        try:
            return _sweep()
        finally:
            _sweep_lock.release()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [SWEEP_LOCK_KEY])
            if not cursor.fetchone()[0]:
                return {"skipped": 1}
        return _sweep()


def _sweep() -> dict[str, int]:
    now = timezone.now()
    counts = {"requeued": 0, "failed": 0, "resent": 0, "woken": 0}
    expired = Job.objects.filter(status=Job.Status.RUNNING, lease_expires_at__lt=now)
    for job in expired.only("pk", "project_id", "attempts", "max_attempts", "claim_token", "deadline_at"):
        out_of_tries = job.attempts >= job.max_attempts or job.deadline_at <= now
        # The dead attempt was charged for an answer it kept but never stored: failing now would throw
        # away what was paid for, so one more attempt stores it (it calls nothing; see _received_answer).
        # Only for the attempt that paid: if that extra attempt dies too, the job fails.
        paid_for = out_of_tries and _kept_answer(job.pk).filter(attempt=job.attempts).exists()
        if out_of_tries and not paid_for:
            message = f"{INTERRUPTED_REASON} It was tried {job.attempts} times; retry it when ready."
            won = _fail(
                job.pk, token=job.claim_token, code="interrupted", message=message, lease_expired_by=now
            )
            counts["failed"] += won
        else:
            with transaction.atomic():
                won = Job.objects.requeue(
                    job.pk,
                    token=job.claim_token,
                    reason=f"{INTERRUPTED_REASON} Trying again.",
                    lease_expired_by=now,
                    extra_attempt=paid_for,
                )
                if won:
                    transaction.on_commit(lambda job_id=job.pk: queue.send_job(job_id))
            counts["requeued"] += won
        if won:
            # Whatever the dead attempt wrote (its preview too: the row no longer points at it).
            outputs.delete_prefixed(prefix=job.attempt_prefix(job.attempts))

    # Messages the broker refused (unsent): one each, at once.
    unsent = Job.objects.filter(status__in=Job.WAITING_STATUSES, enqueued_at__isnull=True).exclude(
        lane=Job.Lane.OVERNIGHT
    )
    for job_id, due_at in unsent.values_list("pk", "next_attempt_at")[:LOST_WAKE_LIMIT]:
        # Stamped first, so the next sweep does not send it yet again while this message is on its way.
        if Job.objects.resend(job_id, now=now):
            # An unsent retry keeps its backoff: the message waits until it is due.
            countdown = (due_at - now).total_seconds() if due_at is not None and due_at > now else None
            # After the commit: until then the stamp's row lock hides the job from the claim the message
            # wakes (SKIP LOCKED), and that worker would find nothing, leaving the job to the slow check.
            transaction.on_commit(
                lambda job_id=job_id, countdown=countdown: queue.send_job(job_id, countdown=countdown)
            )
            counts["resent"] += 1
    counts["woken"] = _wake_if_messages_were_lost(now)
    if any(counts.values()):
        logger.info("sweep: %s", counts)
    return counts


def _wake_if_messages_were_lost(now) -> int:
    """Wake workers for due jobs whose messages were lost (a broker restart), never for a backlog.

    A message only wakes a worker, which then takes jobs in turn until none is due, so a job waits for
    nothing in particular: it needs some worker running, or a message on its way. Lost is therefore:
    a job due for JOB_REQUEUE_AFTER_SECONDS, while no job runs anywhere (no thread will come back for
    it) and the broker's queue holds no message (none is on its way). A backlog behind slow calls has
    jobs running, so it is never sent twice; a prefetched message sits with a worker whose threads are
    all running jobs. Each message sent then claims one job and drains the rest.
    """
    stale = now - timedelta(seconds=settings.JOB_REQUEUE_AFTER_SECONDS)
    due = (
        Job.objects.filter(
            Q(status=Job.Status.QUEUED) | Q(status=Job.Status.RETRYING, next_attempt_at__lte=now)
        )
        .exclude(lane=Job.Lane.OVERNIGHT)
        .exclude(campaign__status=PAUSED)
    )  # a batch's or a person's to wake
    overdue = due.filter(
        Q(status=Job.Status.QUEUED, enqueued_at__lt=stale)
        | Q(status=Job.Status.RETRYING, next_attempt_at__lt=stale)
    )
    if not overdue.exists() or Job.objects.filter(status=Job.Status.RUNNING).exists():
        return 0
    if queue.messages_waiting() != 0:  # on their way, or the broker cannot say (then sending fails too)
        return 0
    woken = 0
    for job_id in due.order_by("lane", "enqueued_at", "pk").values_list("pk", flat=True)[:LOST_WAKE_LIMIT]:
        # Sent once the sweep's transaction commits, like every message the sweep sends (see above).
        transaction.on_commit(lambda job_id=job_id: queue.send_job(job_id))
        woken += 1
    return woken
