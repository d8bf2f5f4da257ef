"""The overnight lane: jobs sent through OpenAI's Batch API at half price, results within 24 hours.

A job in `Job.Lane.OVERNIGHT` is never claimed by a worker. Beat runs two steps every
OVERNIGHT_POLL_SECONDS, each under a Postgres advisory lock of its own so overlapping ticks skip:

- `overnight_dispatch` gathers the waiting overnight jobs, groups them by project and endpoint (at most
  50,000 lines and 200 MB per input file, OpenAI's limits), writes one JSONL line per job (`custom_id`
  names the job; edits use the JSON edit body, their inputs uploaded through the Files API and named by
  `file_id`), uploads it (`purpose="batch"`), creates the batch (`completion_window="24h"`) and records
  it as an `OvernightBatch`. The row and the jobs' link to it are written before anything is uploaded.
- `overnight_poll` asks OpenAI about each open batch; once it has ended (completed, expired, cancelled
  or failed) it reads the output and error files line by line: each answered line's images are stored
  by the worker's own code, its call recorded and charged from the line's own `usage` at the batch
  rate (one ApiCall per job and batch: collecting twice charges nothing twice), and the job succeeds;
  a failed line fails its job with a reason in plain words. Jobs the batch ended without (it expired or
  was cancelled first) fail saying so. Finishing releases the job's reservation, as the worker's does.
  Then it deletes the files closed batches left at OpenAI (`delete_files`): storage there is billed and
  holds customers' images. A delete that fails is tried again at the next poll; it never holds a job.

`overnight_cancel` cancels overnight jobs and, once none of a batch's jobs waits, the OpenAI batch.
Imports run one way: tasks → overnight → worker, models, imageapi, outputs, spend.
"""

import binascii
import contextlib
import hashlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import openai
import pybase64
from django.db import connection, transaction
from django.utils import timezone

from workspace import campaign_runs, imageapi, jobs, outputs, provenance, spend, webhooks, worker
from workspace.models import ApiCall, Job, OvernightBatch

logger = logging.getLogger(__name__)

GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"
# OpenAI's limits for one batch input file (openai-images-api.md §13, batch_create_params.py).
MAX_LINES = 50_000
MAX_INPUT_BYTES = 200 * 1024 * 1024
COMPLETION_WINDOW = "24h"
# Our clock and OpenAI's may disagree a little; recovery reads batches created this much before our row.
RECOVER_CLOCK_SLACK_SECONDS = 600
# Uploads and downloads of up to 200 MB, and output files of many images, need longer than one call.
FILE_TIMEOUT = 1800.0
# A delete is one small call; a slow one waits for the next poll rather than holding this one.
DELETE_TIMEOUT = 30.0
# How long one poll spends deleting (an edit batch may leave thousands of images); the rest wait a tick.
DELETE_BUDGET_SECONDS = 60.0

DISPATCH_LOCK_KEY = 0x61746F64  # "atod"
POLL_LOCK_KEY = 0x61746F70  # "atop"

EXPIRED_REASON = "The overnight batch expired before this image was made."
CANCELLED_REASON = "The overnight batch was cancelled before this image was made."
NO_RESULT_REASON = "OpenAI's overnight batch ended without a result for this image."
REFUSED_REASON = "OpenAI refused the overnight batch this image was in: {errors}"
TOO_LARGE_REASON = "This request is larger than an overnight batch file may be; run it in the Studio."
LINE_FAILED_REASON = "OpenAI could not make this image: {message}"


def custom_id(job_id: int) -> str:
    """The batch line's id: stable, and naming the job it maps back to."""
    return f"job-{job_id}"


def job_id_of(line_id: object) -> int | None:
    if isinstance(line_id, str) and line_id.startswith("job-") and line_id[4:].isdigit():
        return int(line_id[4:])
    return None


_local_locks = {DISPATCH_LOCK_KEY: threading.Lock(), POLL_LOCK_KEY: threading.Lock()}


@contextlib.contextmanager
def _exclusive(key: int) -> Iterator[bool]:
    """Yields whether this process got the lock; a second dispatcher or poller skips its tick.

    A session lock, not a transaction's: a dispatch spends minutes uploading, and its rows must be
    visible (committed) as it goes. Released in `finally`, or by Postgres when the connection dies.
    """
    if connection.vendor != "postgresql":  # SQLite: one beat on one laptop
        lock = _local_locks[key]
        got = lock.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                lock.release()
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        got = cursor.fetchone()[0]
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def _client() -> openai.OpenAI:
    # The same client as every image call (base URL, key, no SDK retries: creating a batch twice would
    # pay twice), with a longer timeout for files.
    return imageapi.get_client().with_options(timeout=FILE_TIMEOUT)


def _from_epoch(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value else None


# --- Dispatch ----------------------------------------------------------------------------------------------


def overnight_dispatch() -> int:
    """Send every waiting overnight job in a batch. Returns how many jobs were sent."""
    with _exclusive(DISPATCH_LOCK_KEY) as mine:
        if not mine:
            return 0
        _recover_unsent()
        waiting = Job.objects.overnight_waiting().order_by("project_id", "kind", "pk")
        groups: dict[tuple[int, str], list[int]] = {}
        for job_id, project_id, kind in waiting.values_list("pk", "project_id", "kind"):
            groups.setdefault((project_id, kind), []).append(job_id)
        sent = 0
        for (project_id, kind), job_ids in groups.items():
            endpoint = EDITS if kind == Job.Kind.EDIT else GENERATIONS
            while job_ids:
                chunk, job_ids = job_ids[:MAX_LINES], job_ids[MAX_LINES:]
                try:
                    done, left = _send_batch(project_id=project_id, endpoint=endpoint, job_ids=chunk)
                except openai.APIError:
                    # Logged with the batch; its jobs wait for the next tick rather than hammering OpenAI.
                    return sent
                sent += done
                job_ids = left + job_ids  # what did not fit in 200 MB goes in the next file
        return sent


def _send_batch(*, project_id: int, endpoint: str, job_ids: list[int]) -> tuple[int, list[int]]:
    """One batch of these jobs: (how many were sent, those that did not fit in the input file)."""
    with transaction.atomic():
        batch = OvernightBatch.objects.create(project_id=project_id, endpoint=endpoint)
        if not Job.objects.batch_assign(job_ids, batch_id=batch.pk):
            batch.delete()  # canceled meanwhile: nothing to send
            return 0, []
    client = _client()
    # sha256 of an input image → its file id. One upload per batch, never shared with another batch, so
    # deleting a closed batch's files never takes one from a batch still open.
    uploaded: dict[str, str] = {}
    input_file_id = ""
    lines, size, left = 0, 0, []
    try:
        with tempfile.TemporaryFile() as jsonl:
            for job in batch.jobs.filter(status=Job.Status.QUEUED).order_by("pk"):
                body = _line_body(client, job, uploaded)
                if body is None:
                    continue  # failed: an input is missing
                line = json.dumps(
                    {"custom_id": custom_id(job.pk), "method": "POST", "url": endpoint, "body": body},
                    separators=(",", ":"),
                ).encode()
                if len(line) + 1 > MAX_INPUT_BYTES:  # alone too big for any file: never sendable
                    _fail_job(job, code="too_large", message=TOO_LARGE_REASON)
                    continue
                if size + len(line) + 1 > MAX_INPUT_BYTES:
                    left.append(job.pk)
                    continue
                jsonl.write(line + b"\n")
                lines, size = lines + 1, size + len(line) + 1
            if left:
                Job.objects.batch_unassign(batch_id=batch.pk, job_ids=left)
            if not lines:
                _close_unsent(batch, errors="", files=list(uploaded.values()))
                return 0, left
            jsonl.seek(0)
            input_file = client.files.create(
                file=(f"atelier-overnight-{batch.pk}.jsonl", jsonl, "application/jsonl"), purpose="batch"
            )
            input_file_id = input_file.id
        batch.input_file_id, batch.image_file_ids = input_file.id, list(uploaded.values())
        batch.line_count, batch.input_bytes = lines, size
        batch.save(update_fields=["input_file_id", "image_file_ids", "line_count", "input_bytes"])
        remote = client.batches.create(
            input_file_id=input_file.id,
            endpoint=endpoint,
            completion_window=COMPLETION_WINDOW,
            # Finds the batch again should this process die before it records the id (_recover_unsent).
            metadata={"atelier_batch": str(batch.pk), "project": str(project_id)},
        )
    except Exception as error:
        # Refused by OpenAI, or stopped here (storage away while reading an edit's inputs): either way
        # the jobs wait for the next batch, and the files already uploaded are recorded for deletion
        # rather than left on the account.
        logger.warning("overnight batch %s could not be sent: %r", batch.pk, error)
        _close_unsent(batch, errors=str(error)[:2000], files=[input_file_id, *uploaded.values()])
        raise
    OvernightBatch.objects.sent(batch.pk, openai_batch_id=remote.id, status=remote.status)
    logger.info("overnight batch %s sent as %s: %s lines, %s bytes", batch.pk, remote.id, lines, size)
    return lines, left


def _line_body(client: openai.OpenAI, job: Job, uploaded: dict[str, str]) -> dict | None:
    """The request exactly as a synchronous call sends it; an edit's images by uploaded file id."""
    body = job.api_params()
    if not job.is_edit:
        return body
    try:
        inputs, mask = worker.edit_files(job)
    except worker.MissingInput:
        _fail_job(job, code="missing_input", message=worker.MISSING_INPUT_REASON)
        return None
    body["images"] = [{"file_id": _upload_image(client, name, data, uploaded)} for name, data, _ in inputs]
    if mask is not None:
        body["mask"] = {"file_id": _upload_image(client, "mask.png", mask, uploaded)}
    return body


def _upload_image(client: openai.OpenAI, name: str, data: bytes, uploaded: dict[str, str]) -> str:
    key = hashlib.sha256(data).hexdigest()
    if key not in uploaded:
        uploaded[key] = client.files.create(file=(name, data), purpose="vision").id
    return uploaded[key]


def _close_unsent(batch: OvernightBatch, *, errors: str, files: list[str]) -> None:
    """The batch was not (or need not be) sent: its jobs wait for the next one, and the files uploaded
    for it are deleted by the next poll."""
    with transaction.atomic():
        Job.objects.batch_unassign(batch_id=batch.pk)
        OvernightBatch.objects.not_sent(batch.pk, errors=errors, files=_distinct(files))


def _distinct(file_ids: list[str]) -> list[str]:
    return list(dict.fromkeys(file_id for file_id in file_ids if file_id))


def _recover_unsent() -> None:
    """Batches a dead dispatcher left preparing (this one holds the lock, so no live one owns them):
    adopt the one OpenAI created, found by its metadata, or put the jobs back to wait."""
    stale = list(OvernightBatch.objects.open().filter(status=OvernightBatch.PREPARING))
    if not stale:
        return
    found: dict[str, object] = {}
    wanted = {str(batch.pk) for batch in stale}
    # A batch OpenAI made for one of ours was created after our row: read newest first, page by page
    # (the SDK follows the cursor), until each is found or the rest are older than the oldest row.
    since = min(batch.created_at for batch in stale).timestamp() - RECOVER_CLOCK_SLACK_SECONDS
    try:
        for remote in _client().batches.list(limit=100):
            tag = (remote.metadata or {}).get("atelier_batch")
            if tag:
                found.setdefault(tag, remote)
            if wanted <= found.keys() or remote.created_at < since:
                break
    except openai.APIError as error:
        # Unknown whether OpenAI runs them: undoing one it runs would send its jobs twice and delete
        # the files it reads. Asked again next tick.
        logger.warning("overnight: cannot list batches to recover %s: %r", [b.pk for b in stale], error)
        return
    for batch in stale:
        remote = found.get(str(batch.pk))
        if remote is not None:
            OvernightBatch.objects.sent(batch.pk, openai_batch_id=remote.id, status=remote.status)
        else:
            files = [batch.input_file_id, *batch.image_file_ids]
            _close_unsent(batch, errors="The dispatcher stopped before the batch was sent.", files=files)


# --- Poll and collect -------------------------------------------------------------------------------------


def overnight_poll() -> int:
    """Ask OpenAI about every open batch and collect those that ended, then delete the files closed
    batches left at OpenAI. Returns how many batches were collected."""
    with _exclusive(POLL_LOCK_KEY) as mine:
        if not mine:
            return 0
        collected = 0
        open_batches = OvernightBatch.objects.open().exclude(openai_batch_id="")
        for batch in open_batches.order_by("pk"):
            try:
                collected += _poll_batch(batch)
            except openai.APIError as error:
                logger.warning("overnight batch %s: OpenAI did not answer: %r; next tick", batch.pk, error)
        # After collecting, so deleting thousands of images never delays a batch's results.
        delete_files()
        return collected


def _poll_batch(batch: OvernightBatch) -> int:
    client = _client()
    remote = client.batches.retrieve(batch.openai_batch_id)
    counts = remote.request_counts
    if remote.errors is not None and remote.errors.data:
        batch.errors = "; ".join(str(error.message or error.code) for error in remote.errors.data)[:2000]
    OvernightBatch.objects.polled(
        batch.pk,
        status=remote.status,
        completed=counts.completed if counts is not None else batch.completed_count,
        failed=counts.failed if counts is not None else batch.failed_count,
        errors=batch.errors,
    )
    if remote.status not in OvernightBatch.FINAL_STATUSES:
        if remote.status != "cancelling" and not batch.jobs.filter(status=Job.Status.QUEUED).exists():
            _cancel_remote(batch)  # every job of it was canceled from its card
        return 0
    for file_id in (remote.output_file_id, remote.error_file_id):
        if file_id:
            with client.files.with_streaming_response.content(file_id) as response:
                for text in response.iter_lines():
                    if text.strip():
                        _collect_line(batch, json.loads(text))
    reason, code = {
        "expired": (EXPIRED_REASON, "batch_expired"),
        "cancelled": (CANCELLED_REASON, "batch_cancelled"),
        "failed": (REFUSED_REASON.format(errors=batch.errors or "no reason given"), "batch_failed"),
    }.get(remote.status, (NO_RESULT_REASON, "batch_no_result"))
    for job in batch.jobs.filter(status=Job.Status.QUEUED):
        _fail_job(job, code=code, message=reason)
    finished = _from_epoch(
        remote.completed_at or remote.expired_at or remote.cancelled_at or remote.failed_at
    )
    # The input as OpenAI names it too: an adopted batch (_recover_unsent) never recorded its own.
    files = [remote.input_file_id, batch.input_file_id, *batch.image_file_ids]
    files += [remote.output_file_id, remote.error_file_id]
    OvernightBatch.objects.collected(
        batch.pk,
        output_file_id=remote.output_file_id or "",
        error_file_id=remote.error_file_id or "",
        finished_at=finished or timezone.now(),
        files=_distinct(files),
    )
    logger.info("overnight batch %s %s: %s", batch.pk, remote.status, counts)
    return 1


def delete_files(*, budget: float = DELETE_BUDGET_SECONDS) -> int:
    """Delete the files closed batches left at OpenAI (their input, images, output and error files).

    Only closed batches: every line's result is stored by then, and no open batch names a file of
    another (each uploads its own). One that is already gone counts as deleted; any other refusal
    leaves the id in `files_to_delete` for the next poll. Never raises for OpenAI. Returns how many
    were deleted.
    """
    client = imageapi.get_client().with_options(timeout=DELETE_TIMEOUT)
    deadline = time.monotonic() + budget
    deleted = 0
    pending = OvernightBatch.objects.with_files_to_delete().order_by("pk").only("pk", "files_to_delete")
    for batch in pending:
        left: list[str] = []
        for index, file_id in enumerate(batch.files_to_delete):
            if time.monotonic() >= deadline:
                left += batch.files_to_delete[index:]
                break
            try:
                gone = client.files.delete(file_id).deleted
            except openai.NotFoundError:
                gone = True  # deleted by an earlier poll that died before recording it, or by hand
            except openai.APIError as error:
                logger.warning(
                    "overnight batch %s: file %s not deleted: %r; next poll", batch.pk, file_id, error
                )
                gone = False
            if gone:
                deleted += 1
            else:
                left.append(file_id)
        OvernightBatch.objects.files_deleted(batch.pk, left=left)
        if time.monotonic() >= deadline:
            break
    if deleted:
        logger.info("overnight: deleted %s files of closed batches at OpenAI", deleted)
    return deleted


def _collect_line(batch: OvernightBatch, line: dict) -> None:
    """One line of the output or error file: its job's images, call and charge, or its failure."""
    job = Job.objects.filter(pk=job_id_of(line.get("custom_id")), overnight_batch=batch).first()
    if job is None:
        logger.warning("overnight batch %s: a line for no job of it (%r)", batch.pk, line.get("custom_id"))
        return
    if ApiCall.objects.filter(job=job, overnight_batch=batch).exists():
        return  # collected by an earlier poll
    response = line.get("response") if isinstance(line.get("response"), dict) else {}
    body = response.get("body") if isinstance(response.get("body"), dict) else {}
    status = response.get("status_code")
    record = ApiCall(
        job=job,
        attempt=job.attempts,
        endpoint="batch.images.edit" if job.is_edit else "batch.images.generate",
        outcome=ApiCall.Outcome.OK,
        request_id=str(response.get("request_id") or line.get("id") or "")[:100],
        http_status=status,
        latency_ms=0,
        overnight_batch=batch,
    )
    if line.get("error") is None and status == 200:
        _collect_images(batch, job, record, body)
    else:
        _collect_failure(batch, job, record, line.get("error"), status, body)


def _collect_images(batch: OvernightBatch, job: Job, record: ApiCall, body: dict) -> None:
    record.response_size = str(body.get("size") or "")[:16]
    record.response_quality = str(body.get("quality") or "")[:10]
    record.response_background = str(body.get("background") or "")[:12]
    record.response_format = str(body.get("output_format") or "")[:8]
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
    for name, value in worker.token_columns(usage).items():
        setattr(record, name, value)
    stored: list[outputs.StoredFile] | None = None
    live = job.status == Job.Status.QUEUED
    if live:  # a job canceled meanwhile is still charged (OpenAI made it) but keeps no images
        try:
            images = [
                (index, pybase64.b64decode(item["b64_json"], validate=True))
                for index, item in enumerate(body.get("data") or [])
            ]
            if not images:
                raise outputs.UnreadableImage("a line without images")
            paste_onto = None
            if job.is_edit and job.mask:  # a masked edit is pasted back onto its first input
                inputs, mask = worker.edit_files(job)
                paste_onto = (inputs[0][1], mask)
            stored = outputs.store_outputs(
                prefix=job.attempt_prefix(job.attempts), images=images, paste_onto=paste_onto
            )
        except (
            outputs.UnreadableImage,
            binascii.Error,
            KeyError,
            TypeError,
            ValueError,
            worker.MissingInput,
        ):
            logger.warning("overnight batch %s: job %s's images cannot be read", batch.pk, job.pk)
            record.error_code = "unreadable"
    now = timezone.now()
    with transaction.atomic():
        record.save()
        spend.charge(api_call=record, job=job, batch=True)
        if stored is not None and Job.objects.batch_finish(job.pk, batch_id=batch.pk, now=now):
            worker.images_add(job=job, stored=stored, now=now)
            webhooks.job_ended(job_id=job.pk)
            # Checked like any output once stored (workspace/provenance.py); a failed check never fails it.
            transaction.on_commit(lambda job_id=job.pk: provenance.checks_queue(job_id=job_id))
            _campaign_hook(job)
            stored = None  # kept
        elif live and record.error_code:
            _fail_job(job, code="unreadable", message=imageapi.REASONS["unreadable"])
    if stored is not None:  # the job left the batch meanwhile (canceled): its files go
        outputs.delete_files([name for item in stored for name in outputs.stored_names(item)])


def _collect_failure(
    batch: OvernightBatch, job: Job, record: ApiCall, error: object, status: object, body: dict
) -> None:
    """A line that made nothing: recorded (no usage, no charge), and its job failed in plain words."""
    detail = body.get("error") if isinstance(body.get("error"), dict) else None
    detail = detail or (error if isinstance(error, dict) else {})
    code, message = str(detail.get("code") or ""), str(detail.get("message") or "")
    if code == "batch_expired":
        reason = EXPIRED_REASON
    elif code == "batch_cancelled":
        reason = CANCELLED_REASON
    elif isinstance(status, int) and status >= 400:
        reason = imageapi.failure_for_status(status=status, code=code, message=message).reason
    else:
        reason = LINE_FAILED_REASON.format(message=message[:300] or "no reason given")
    record.outcome = ApiCall.Outcome.PERMANENT
    record.error_code = code[:80]
    record.error_type = str(detail.get("type") or "")[:80]
    record.error_detail = message[:2000]
    with transaction.atomic():
        record.save()
        _fail_job(job, code=code or "batch_line_failed", message=reason)


def _fail_job(job: Job, *, code: str, message: str) -> bool:
    """batch_fail, with the job.failed webhook event in the same transaction."""
    with transaction.atomic():
        won = Job.objects.batch_fail(job.pk, batch_id=job.overnight_batch_id, code=code[:64], message=message)
        if won:
            webhooks.job_ended(job_id=job.pk)
            _campaign_hook(job)
    return won


def _campaign_hook(job: Job) -> None:
    # After the commit, as the worker does, so the last of a campaign's jobs sees all of them ended.
    if job.campaign_id is not None:
        transaction.on_commit(lambda: campaign_runs.job_ended(job_id=job.pk, campaign_id=job.campaign_id))


# --- Cancel -----------------------------------------------------------------------------------------------


def overnight_cancel(*, job_ids: list[int]) -> int:
    """Cancel these overnight jobs (those still waiting), releasing their reservations, and cancel each
    OpenAI batch none of whose jobs waits any more. Returns how many jobs were canceled.

    A campaign's "cancel the rest" passes its overnight jobs' ids. A line OpenAI had already made is
    still collected and charged (it was paid for); its images are not kept.
    """
    canceled, batch_ids = 0, set()
    for job in Job.objects.filter(pk__in=job_ids, lane=Job.Lane.OVERNIGHT).only("pk", "overnight_batch_id"):
        if jobs.job_cancel(job=job):
            canceled += 1
            if job.overnight_batch_id is not None:
                batch_ids.add(job.overnight_batch_id)
    for batch in OvernightBatch.objects.open().filter(pk__in=batch_ids):
        if batch.openai_batch_id and not batch.jobs.filter(status=Job.Status.QUEUED).exists():
            try:
                _cancel_remote(batch)
            except openai.APIError as error:
                # The poll's next tick sees a batch nobody waits for and cancels it then.
                logger.warning("overnight batch %s: cancel refused: %r", batch.pk, error)
    return canceled


def _cancel_remote(batch: OvernightBatch) -> None:
    remote = _client().batches.cancel(batch.openai_batch_id)
    counts = remote.request_counts
    OvernightBatch.objects.polled(
        batch.pk,
        status=remote.status,
        completed=counts.completed if counts is not None else batch.completed_count,
        failed=counts.failed if counts is not None else batch.failed_count,
        errors="",
    )
    logger.info("overnight batch %s: nobody waits for it any more; cancelled at OpenAI", batch.pk)
