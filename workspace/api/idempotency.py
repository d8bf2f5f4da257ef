"""Idempotent creation: a POST that creates work carries an `Idempotency-Key`; the same key and body
within API_IDEMPOTENCY_HOURS get the first answer again, and create nothing.

Race-safe by the unique (user, key) constraint: the first request inserts the record, does its work and
stores its answer, all in one transaction. A concurrent duplicate's insert waits on the unique index
until the first commits, then replays its answer (or goes first, if the first rolled back). The same
key with another body is a 409 at any time.
"""

import functools
import hashlib
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.response import Response

from workspace.api.errors import ApiError
from workspace.api.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255


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


def _insert(*, user, key: str, fingerprint: str) -> IdempotencyRecord | None:
    """The new record, or None when the key is taken by a committed record: INSERT … ON CONFLICT DO
    NOTHING. Like a plain INSERT it waits for a concurrent uncommitted insert of the key to end, but a
    taken key is no error, so it needs no savepoint (two round trips on every request) to survive one."""
    now = timezone.now()
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(IdempotencyRecord._meta.get_field(name).column)
        for name in ("user", "key", "request_hash", "created_at")
    )
    unique = ", ".join(quote(IdempotencyRecord._meta.get_field(name).column) for name in ("user", "key"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(IdempotencyRecord._meta.db_table)} ({columns}) VALUES (%s, %s, %s, %s) "  # noqa: S608 - names from the model
            f"ON CONFLICT ({unique}) DO NOTHING RETURNING {quote(IdempotencyRecord._meta.pk.column)}",
            [user.pk, key, fingerprint, connection.ops.adapt_datetimefield_value(now)],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return IdempotencyRecord(pk=row[0], user=user, key=key, request_hash=fingerprint, created_at=now)


def _claim(*, user, key: str, fingerprint: str) -> IdempotencyRecord | Response:
    """Insert the record (ours: do the work), or answer from the record another request committed.

    Inside the caller's transaction. Inserting a key that a concurrent request inserted and has not yet
    committed waits on the unique index until that request ends: then it is a conflict (answer from its
    committed record) or, if that request rolled back, no conflict at all (this request goes first).
    """
    inserted = _insert(user=user, key=key, fingerprint=fingerprint)
    if inserted is not None:
        return inserted
    record = IdempotencyRecord.objects.select_for_update().filter(user=user, key=key).first()
    if record is None:  # removed between our insert and our read (the purge): go first after all
        return _claim(user=user, key=key, fingerprint=fingerprint)
    if record.created_at < _window_start():
        # Past the window it is forgotten: the key starts afresh, with this request.
        record.delete()
        return IdempotencyRecord.objects.create(user=user, key=key, request_hash=fingerprint)
    if record.request_hash != fingerprint:
        raise ApiError(
            409,
            "idempotency_key_reused",
            "This Idempotency-Key was used with another request body; use a new key for a new request.",
        )
    if record.status_code is None:  # kept only if a first request's answer could not be stored
        raise ApiError(
            409,
            "idempotency_in_progress",
            "A request with this Idempotency-Key is still being answered; try again in a moment.",
        )
    return _replay(record)


def _answer(record_id: int, response: Response) -> None:
    """Store the answer on our record: `.filter(pk=…).update(status_code=…, body=…)`, without the
    ORM's building and compiling of an UPDATE on every request (the body goes through the JSON
    field's own preparation, as the ORM's would)."""
    quote = connection.ops.quote_name
    meta = IdempotencyRecord._meta
    body = meta.get_field("body").get_db_prep_save(response.data, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(meta.db_table)} SET {quote(meta.get_field('status_code').column)} = %s, "  # noqa: S608 - names from the model
            f"{quote(meta.get_field('body').column)} = %s WHERE {quote(meta.pk.column)} = %s",
            [response.status_code, body, record_id],
        )


def idempotent(view):
    """For a DRF function view whose POST creates work: requires the header, records the answer.

    The record, the work and the stored answer commit together in one transaction (one commit on the
    hot path), so a duplicate sees either nothing (and goes first) or the whole first answer.
    """

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        key = request.headers.get(HEADER, "").strip()
        if not key:
            raise ApiError(
                400,
                "idempotency_key_required",
                f"Send an {HEADER} header (e.g. a UUID) so that a retried request creates nothing twice.",
            )
        # Printable too: a NUL cannot be stored in Postgres text (schemathesis sent one: a 500).
        if len(key) > MAX_KEY_CHARS or not key.isascii() or not key.isprintable():
            raise ApiError(
                400, "invalid", f"The {HEADER} must be at most {MAX_KEY_CHARS} printable ASCII characters."
            )
        fingerprint = request_hash(request)
        with transaction.atomic():
            claimed = _claim(user=request.user, key=key, fingerprint=fingerprint)
            if isinstance(claimed, Response):
                return claimed
            # An error raised by the view rolls back the record with the work: the key is free again.
            response = view(request, *args, **kwargs)
            _answer(claimed.pk, response)
        return response

    return wrapper


def records_purge() -> int:
    """Delete the records past the window (beat, hourly). Returns how many."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=_window_start()).delete()
    return deleted
