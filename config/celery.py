import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("atelier")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def sweep_when_a_worker_starts(**_kwargs) -> None:
    # A worker that starts after a crash picks up what the dead one left without waiting for beat.
    app.send_task("workspace.tasks.sweep_jobs")


@task_prerun.connect
@task_postrun.connect
def close_stale_connections(**_kwargs) -> None:
    # With connections reused across tasks, drop those past CONN_MAX_AGE or broken, as requests do.
    from django.db import close_old_connections

    close_old_connections()


@worker_shutdown.connect
def store_what_was_answered(**_kwargs) -> None:
    # A warm shutdown waits for the calls in flight; the images they brought back are stored too.
    from workspace.worker import drain_worker_finisher

    drain_worker_finisher()
