"""Celery tasks: thin. They take ids and call a service; the service claims the row."""

from celery import shared_task

from workspace import jobs


@shared_task(ignore_result=True)
def run_job(job_id: int) -> None:
    jobs.job_run(job_id=job_id, finisher=jobs.worker_finisher())


@shared_task(ignore_result=True)
def sweep_jobs() -> dict[str, int]:
    return jobs.jobs_sweep()
