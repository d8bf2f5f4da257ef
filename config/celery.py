import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("atelier")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def sweep_when_a_worker_starts(**_kwargs) -> None:
    # A worker that starts after a crash picks up what the dead one left without waiting for beat.
    app.send_task("workspace.tasks.sweep_jobs")
