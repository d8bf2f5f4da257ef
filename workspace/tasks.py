"""Celery tasks: thin. They take ids and call the worker; the worker claims the row.

Messages are sent by name (`workspace.queue`), so nothing imports this module but Celery.
"""

from celery import shared_task
from django.db import InterfaceError, OperationalError
from psycopg_pool import PoolTimeout

from workspace import overnight, provenance, review, webhooks, worker

# A database restarting, out of reach or with its pool exhausted: worth trying again shortly, where
# acknowledging the message would leave the job queued until the sweep's lost-message check.
INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError, PoolTimeout)


@shared_task(
    ignore_result=True,
    autoretry_for=INFRASTRUCTURE_ERRORS,
    retry_backoff=True,  # 1, 2, 4 … s
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=10,  # about five minutes; after that the sweep still resends a job left queued
)
def run_job(job_id: int) -> None:
    # The id only names the job this message was sent for (logs); the worker takes the next in turn.
    worker.jobs_run_next(finisher=worker.worker_finisher(), sent_for=job_id)


@shared_task(ignore_result=True)
def sweep_jobs() -> dict[str, int]:
    return worker.jobs_sweep()


# The overnight lane. No ids: each run takes whatever is waiting or open, under a lock of its own, so
# ticks that overlap (a slow upload, two beats) skip rather than send or collect a batch twice.
@shared_task(ignore_result=True)
def overnight_dispatch() -> int:
    return overnight.overnight_dispatch()


@shared_task(ignore_result=True)
def overnight_poll() -> int:
    return overnight.overnight_poll()


@shared_task(ignore_result=True)
def purge_deleted_images() -> int:
    return review.images_purge()


@shared_task(ignore_result=True, autoretry_for=INFRASTRUCTURE_ERRORS, retry_backoff=True, max_retries=10)
def deliver_webhook(delivery_id: int) -> None:
    webhooks.deliveries_attempt(delivery_id=delivery_id)


@shared_task(ignore_result=True)
def sweep_webhooks() -> dict[str, int]:
    return webhooks.deliveries_sweep()


@shared_task(ignore_result=True)
def purge_idempotency_keys() -> int:
    from workspace.api import idempotency

    return idempotency.records_purge()


@shared_task(ignore_result=True, autoretry_for=INFRASTRUCTURE_ERRORS, retry_backoff=True, max_retries=10)
def check_credential(credential_id: int) -> None:
    # The service schedules its own retries (with backoff) when OpenAI's check fails.
    provenance.credential_check(credential_id=credential_id)


@shared_task(ignore_result=True)
def sweep_credentials() -> dict:
    return provenance.credentials_sweep()
