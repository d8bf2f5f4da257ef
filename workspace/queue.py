"""Waking a worker for a job: the one place that sends a message.

The message is sent by task name, so neither the web-side services nor the worker import the tasks
module (which imports the worker): there is no import cycle to break with a function-local import.
"""

from celery import current_app

RUN_JOB = "workspace.tasks.run_job"


def send_job(job_id: int, *, countdown: float | None = None) -> None:
    """Ask a worker to run the job; the row, not the message, says whether there is anything to do."""
    current_app.send_task(RUN_JOB, args=(job_id,), countdown=countdown)
