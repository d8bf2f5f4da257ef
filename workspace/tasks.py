"""Celery tasks: thin. They take ids and call the worker; the worker claims the row.

Messages are sent by name (`workspace.queue`), so nothing imports this module but Celery.
"""

from celery import shared_task

from workspace import review, worker


@shared_task(ignore_result=True)
def run_job(job_id: int) -> None:
    worker.job_run(job_id=job_id, finisher=worker.worker_finisher())


@shared_task(ignore_result=True)
def sweep_jobs() -> dict[str, int]:
    return worker.jobs_sweep()


@shared_task(ignore_result=True)
def purge_deleted_images() -> int:
    return review.images_purge()
