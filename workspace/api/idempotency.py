"""Idempotent creation: a POST that creates work carries an `Idempotency-Key`; the same key and body
within API_IDEMPOTENCY_HOURS get the first answer again, and create nothing.

Race-safe by the unique (user, key) constraint: the first request inserts the record (committed at
once, with no answer yet), does its work and stores its answer in the same transaction as the work.
A concurrent duplicate fails to insert, then waits for that answer for up to WAIT_SECONDS, replays
it, or answers 409 "in progress". The same key with another body is a 409 at any time.
"""

import functools
import hashlib
import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response

from workspace.api.errors import ApiError
from workspace.api.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.05


def _window_start():
    return timezone.now() - timedelta(hours=settings.API_IDEMPOTENCY_HOURS)


def request_hash(request) -> str:
    """What makes two requests "the same": method, path, content type and the body's bytes."""
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.content_type or ""):
        digest.update(part.encode() + b"\0")
    digest.update(request.body)
    return digest.hexdigest()


def _replay(record: IdempotencyRecord) -> Response:
    response = Response(record.body, status=record.status_code)
    response["Idempotent-Replayed"] = "true"
    return response


def _claim(*, user, key: str, fingerprint: str) -> IdempotencyRecord | Response:
    """Insert the record (ours: do the work), or answer from the record another request inserted."""
    try:
        with transaction.atomic():
            # A record past the window is forgotten: the key may be used afresh.
            IdempotencyRecord.objects.filter(user=user, key=key, created_at__lt=_window_start()).delete()
            return IdempotencyRecord.objects.create(user=user, key=key, request_hash=fingerprint)
    except IntegrityError:
        pass
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        record = IdempotencyRecord.objects.filter(user=user, key=key).first()
        if record is None:  # the first request failed and let the key go: try once more as the first
            return _claim(user=user, key=key, fingerprint=fingerprint)
        if record.request_hash != fingerprint:
            raise ApiError(
                409,
                "idempotency_key_reused",
                "This Idempotency-Key was used with another request body; use a new key for a new request.",
            )
        if record.status_code is not None:
            return _replay(record)
        if time.monotonic() >= deadline:
            raise ApiError(
                409,
                "idempotency_in_progress",
                "A request with this Idempotency-Key is still being answered; try again in a moment.",
            )
        time.sleep(POLL_SECONDS)


def idempotent(view):
    """For a DRF function view whose POST creates work: requires the header, records the answer."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        key = request.headers.get(HEADER, "").strip()
        if not key:
            raise ApiError(
                400,
                "idempotency_key_required",
                f"Send an {HEADER} header (e.g. a UUID) so that a retried request creates nothing twice.",
            )
        if len(key) > MAX_KEY_CHARS or not key.isascii():
            raise ApiError(400, "invalid", f"The {HEADER} must be at most {MAX_KEY_CHARS} ASCII characters.")
        claimed = _claim(user=request.user, key=key, fingerprint=request_hash(request))
        if isinstance(claimed, Response):
            return claimed
        try:
            with transaction.atomic():
                response = view(request, *args, **kwargs)
                if response.status_code < 500:
                    IdempotencyRecord.objects.filter(pk=claimed.pk).update(
                        status_code=response.status_code, body=response.data
                    )
        except BaseException:
            # Nothing was created: let the key go, so the same request can be sent again.
            IdempotencyRecord.objects.filter(pk=claimed.pk).delete()
            raise
        return response

    return wrapper


def records_purge() -> int:
    """Delete the records past the window (beat, hourly). Returns how many."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=_window_start()).delete()
    return deleted
