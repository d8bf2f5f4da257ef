"""Waking a worker for a job: the one place that sends a message.

The message is sent by task name, so neither the web-side services nor the worker import the tasks
module (which imports the worker): there is no import cycle to break with a function-local import.
"""

import logging

from celery import current_app
from django.conf import settings
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from workspace.models import Job

logger = logging.getLogger(__name__)

RUN_JOB = "workspace.tasks.run_job"

# How many workers a newly queued (or resumed) campaign wakes: each thread that finishes a job takes the
# next one without a message (worker.jobs_run_next), so a message a row would only fill the broker.
WAKE_MESSAGES = 32

# What a broker that is restarting or out of reach raises from a publish (the file-system broker: OSError).
BROKER_ERRORS = (KombuError, RedisError, OSError)


def send_job(job_id: int, *, countdown: float | None = None) -> bool:
    """Ask a worker to run the job; the row, not the message, says whether there is anything to do.

    A broker that is away does not undo the job: the row is the truth, so the failure is logged, the
    row marked unsent, and the sweep sends it at its next tick once the broker answers. False then.
    """
    try:
        current_app.send_task(RUN_JOB, args=(job_id,), countdown=countdown)
    except BROKER_ERRORS:
        logger.warning(
            "job %s: the broker refused its message; the sweep sends it again", job_id, exc_info=True
        )
        try:
            Job.objects.unsent(job_id)
        except Exception:
            # The database is away too: the row keeps enqueued_at, so the sweep's lost-message check
            # sends it after JOB_REQUEUE_AFTER_SECONDS instead.
            logger.warning("job %s: could not mark it unsent", job_id, exc_info=True)
        return False
    return True


def messages_waiting() -> int | None:
    """Messages in the work queue that no worker has taken yet (a prefetched one is a worker's), or
    None when the broker does not answer. The sweep's test for a lost message."""
    queue = current_app.conf.task_default_queue or settings.CELERY_TASK_DEFAULT_QUEUE
    try:
        with current_app.connection_for_write() as conn:
            return conn.default_channel.queue_declare(queue=queue, passive=False).message_count
    except BROKER_ERRORS:
        logger.warning("could not count the messages waiting in %s", queue, exc_info=True)
        return None
