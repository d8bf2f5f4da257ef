"""Content credentials: what OpenAI's provenance check says about each original, checked once.

OpenAI's outputs carry a C2PA manifest (and a SynthID watermark); the workspace stores originals byte
for byte (workspace.outputs never re-encodes one), so the check of a stored original is the check of
what OpenAI sent. Each output is checked by its own task after its job is stored: the check is an
extra call that may fail, and a failure is tried again later with backoff and never touches the job.
Uploaded references are checked when someone asks ("does this photo carry an OpenAI credential?").
"""

import logging
import random
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from workspace import imageapi
from workspace.models import ContentCredential, Image, Reference
from workspace.queue import BROKER_ERRORS

logger = logging.getLogger(__name__)

CHECK_CREDENTIAL = "workspace.tasks.check_credential"


def _send(credential_id: int, *, countdown: float | None = None) -> None:
    # Stamped before the send: a message the broker refuses or later loses is found by the sweep.
    due = timezone.now() + timedelta(seconds=(countdown or 0) + settings.PROVENANCE_LOST_AFTER_SECONDS)
    ContentCredential.objects.filter(pk=credential_id).update(next_check_at=due)
    try:
        current_app.send_task(
            CHECK_CREDENTIAL,
            args=(credential_id,),
            countdown=countdown,
            queue=settings.CELERY_CHECKS_QUEUE,
            routing_key=settings.CELERY_CHECKS_QUEUE,
        )
    except BROKER_ERRORS:
        # The row stays pending: the check is a courtesy, and the image is already safe.
        logger.warning("credential %s: the broker refused its message", credential_id, exc_info=True)


def checks_queue(*, job_id: int) -> None:
    """A pending credential for each image of a finished job, and a task to check each."""
    images = Image.objects.filter(job_id=job_id, content_credential__isnull=True).values_list("pk", flat=True)
    for image_id in list(images):
        credential, created = ContentCredential.objects.get_or_create(image_id=image_id)
        if created:
            _send(credential.pk)


def credentials_sweep(*, limit: int = 500) -> dict[str, int]:
    """Run by beat: send again the checks whose message was lost, and start the checks of outputs whose
    job finished while its worker died before queueing them. Never more than `limit` of each."""
    now = timezone.now()
    lost = ContentCredential.objects.filter(
        state=ContentCredential.State.PENDING,
        attempts__lt=settings.PROVENANCE_MAX_ATTEMPTS,
        next_check_at__lt=now,
    ).values_list("pk", flat=True)[:limit]
    resent = 0
    for credential_id in list(lost):
        _send(credential_id)
        resent += 1
    # Outputs of the last day with no credential row at all (older ones predate the checks).
    unqueued = (
        Image.objects.filter(content_credential__isnull=True, created_at__gte=now - timedelta(days=1))
        .filter(created_at__lt=now - timedelta(seconds=settings.PROVENANCE_LOST_AFTER_SECONDS))
        .values_list("job_id", flat=True)
        .distinct()[:limit]
    )
    jobs = list(unqueued)
    for job_id in jobs:
        checks_queue(job_id=job_id)
    if resent or jobs:
        logger.info("credentials sweep: %s resent, %s jobs' outputs queued", resent, len(jobs))
    return {"resent": resent, "jobs": len(jobs)}


def as_sent_name(reference: Reference) -> str:
    """Where an upload's bytes as sent wait for their check: beside the re-encoded copy, never served."""
    return f"projects/{reference.project_id}/references/{reference.pk}.as-sent"


def reference_check_request(*, reference: Reference) -> ContentCredential:
    """Check an uploaded reference's bytes as sent: a pending credential, sent once the upload commits."""
    credential, _ = ContentCredential.objects.update_or_create(
        reference=reference,
        defaults={"state": ContentCredential.State.PENDING, "attempts": 0, "error": "", "checked_at": None},
    )
    transaction.on_commit(lambda: _send(credential.pk))
    return credential


def _retry_delay(attempt: int) -> float:
    ceiling = settings.PROVENANCE_RETRY_BASE_SECONDS * (2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def credential_check(*, credential_id: int) -> str:
    """Claim a pending credential (one attempt), send its file to the check, store what it says.

    Returns what happened: "checked", "retry", "failed" or "skipped" (someone else has it, or it is done).
    """
    claimed = ContentCredential.objects.filter(
        pk=credential_id,
        state=ContentCredential.State.PENDING,
        attempts__lt=settings.PROVENANCE_MAX_ATTEMPTS,
    ).update(attempts=F("attempts") + 1)
    if not claimed:
        return "skipped"
    credential = ContentCredential.objects.select_related("image", "reference").get(pk=credential_id)
    source = credential.image or credential.reference
    # An output is checked as stored (byte for byte what OpenAI sent); an upload as its sender sent it.
    name = source.file.name if credential.image is not None else as_sent_name(source)
    if not name:
        return _give_up(credential, "The original is gone (deleted), so it cannot be checked.")
    try:
        with default_storage.open(name, "rb") as handle:
            data = handle.read()
        answer = imageapi.check_provenance(
            data=data, filename=source.file.name.rsplit("/", 1)[-1], content_type=source.content_type
        )
    except FileNotFoundError:
        return _give_up(credential, "The original is missing from storage.")
    except imageapi.CallFailure as failure:
        if not failure.transient or credential.attempts >= settings.PROVENANCE_MAX_ATTEMPTS:
            return _give_up(credential, failure.reason)
        ContentCredential.objects.filter(pk=credential.pk).update(error=failure.reason[:300])
        delay = _retry_delay(credential.attempts)
        logger.info("credential %s: check failed (%s), again in %.0f s", credential.pk, failure.code, delay)
        _send(credential.pk, countdown=delay)
        return "retry"
    results = {item.get("type"): item for item in answer.get("results") or []}
    c2pa, synthid = results.get("c2pa") or {}, results.get("synthid") or {}
    ContentCredential.objects.filter(pk=credential.pk, state=ContentCredential.State.PENDING).update(
        state=ContentCredential.State.CHECKED,
        c2pa_outcome=c2pa.get("outcome") or "",
        validation_state=c2pa.get("validation_state") or "",
        issuer=(c2pa.get("issuer") or "")[:200],
        model=(c2pa.get("model") or synthid.get("model") or "")[:64],
        generated_at=(c2pa.get("generated_at") or synthid.get("generated_at") or "")[:40],
        synthid_outcome=synthid.get("outcome") or "",
        error="",
        checked_at=timezone.now(),
    )
    _forget_as_sent(credential)
    return "checked"


def _give_up(credential: ContentCredential, reason: str) -> str:
    ContentCredential.objects.filter(pk=credential.pk).update(
        state=ContentCredential.State.FAILED, error=reason[:300], checked_at=timezone.now()
    )
    _forget_as_sent(credential)
    return "failed"


def _forget_as_sent(credential: ContentCredential) -> None:
    # The upload's bytes as sent were kept only for this check; the library serves the re-encoded copy.
    if credential.reference is not None:
        default_storage.delete(as_sent_name(credential.reference))


def file_check(*, upload) -> dict:
    """Check a file someone holds, now, without storing it: the verdict and what the check said.

    For photos from elsewhere: uploads to the library are re-encoded (their metadata stripped for
    safety), so their stored copies can no longer carry a credential; the check must see the file as is.
    """
    data = upload.read(settings.REFERENCE_MAX_BYTES + 1)
    if len(data) > settings.REFERENCE_MAX_BYTES:
        return {"verdict": "unknown", "error": "That file is too large to check."}
    try:
        answer = imageapi.check_provenance(
            data=data,
            filename=upload.name or "photo",
            content_type=upload.content_type or "application/octet-stream",
        )
    except imageapi.CallFailure as failure:
        return {"verdict": "unknown", "error": failure.reason}
    results = {item.get("type"): item for item in answer.get("results") or []}
    c2pa, synthid = results.get("c2pa") or {}, results.get("synthid") or {}
    state = c2pa.get("validation_state") or ""
    verdict = "verified" if state in ("trusted", "valid") else "invalid" if state == "invalid" else "missing"
    return {"verdict": verdict, "c2pa": c2pa, "synthid": synthid, "error": ""}
