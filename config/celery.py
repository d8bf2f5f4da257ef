import os
import sys
from pathlib import Path

from celery import Celery
from celery.beat import PersistentScheduler
from celery.signals import (
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _process_role(argv: list[str]) -> str | None:
    """ "worker" or "beat" when this process is `celery … worker` or `celery … beat` (also `python -m
    celery`), else None. Read before the settings, which size the database pool by it."""
    if not argv or "celery" not in Path(argv[0]).parts[-2:]:
        return None
    return next((word for word in argv[1:] if word in ("worker", "beat")), None)


def _cap_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas, as MALLOC_ARENA_MAX would, unless that variable says otherwise.

    glibc gives each thread that allocates at once an arena of its own, up to 8 per core, and a freed
    chunk goes back only to its arena: a worker's dozens of call threads, each decoding and encoding
    megabyte images, fragment as many arenas, and its RSS grew ~10 MB per 1,000 jobs without levelling
    off (`manage.py bench_campaign`). Two arenas keep it flat. Called before any pool thread starts;
    a no-op off glibc.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # glibc read it at start-up
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    m_arena_max = -8  # malloc.h
    return bool(mallopt(m_arena_max, arenas))


if _role := _process_role(sys.argv):
    os.environ.setdefault("ATELIER_PROCESS_ROLE", _role)
    if _role == "worker":
        _cap_malloc_arenas(2)

app = Celery("atelier")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def sweep_when_a_worker_starts(**_kwargs) -> None:
    from workspace.worker import shutting_down

    shutting_down.clear()  # a worker started again in the same process (tests) takes jobs again
    # A worker that starts after a crash picks up what the dead one left without waiting for beat.
    app.send_task("workspace.tasks.sweep_jobs")


@worker_ready.connect
def serve_worker_metrics(**_kwargs) -> None:
    # The worker's own metrics (queue wait, API calls, spend: workspace/observability.py) on its own
    # port, one scrape target per worker process, wherever it runs; off unless METRICS_PORT_WORKER is set.
    from django.conf import settings
    from prometheus_client import start_http_server

    if settings.METRICS_PORT_WORKER:
        start_http_server(settings.METRICS_PORT_WORKER, addr=settings.METRICS_ADDR_WORKER)


@before_task_publish.connect
def carry_request_id(headers=None, **_kwargs) -> None:
    # A job sent while serving a request carries that request's id to the worker's log lines.
    from workspace.observability import add_request_id

    if headers is not None:
        add_request_id(headers)


@task_prerun.connect
def bind_request_id(task=None, **_kwargs) -> None:
    from workspace.observability import bind_task

    if task is not None:
        bind_task(task.request)


@task_prerun.connect
@task_postrun.connect
def close_stale_connections(**_kwargs) -> None:
    # With the pool (CONN_MAX_AGE=0) this gives the task's connection back between tasks; without it,
    # it drops connections past CONN_MAX_AGE or broken, as requests do.
    from django.db import close_old_connections

    close_old_connections()


@worker_shutting_down.connect
def take_no_more_jobs(**_kwargs) -> None:
    # A thread runs jobs one after another while any is due: on a warm shutdown it finishes the one it
    # holds and stops, rather than draining the whole backlog first.
    from workspace.worker import shutting_down

    shutting_down.set()


@worker_shutdown.connect
def store_what_was_answered(**_kwargs) -> None:
    # A warm shutdown waits for the calls in flight; the images they brought back are stored too.
    from workspace.worker import drain_worker_finisher

    drain_worker_finisher()


class Scheduler(PersistentScheduler):
    """Beat's scheduler, except that it runs the sweep itself rather than queueing it for a worker.

    The sweep is what recovers a killed worker's jobs and lost messages, so it must run on time: on the
    work queue it waited behind the backlog (a message prefetched per thread, each behind a call of up to
    minutes), and a separate queue still shares the workers' busy threads. Beat is idle between ticks;
    two beats cannot double-sweep (jobs_sweep takes a lock and the second returns at once).
    """

    RUN_HERE = frozenset({"workspace.tasks.sweep_jobs"})

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        if entry.task not in self.RUN_HERE:
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        from django.db import close_old_connections

        entry = self.reserve(entry) if advance else entry
        try:
            # An error is logged by beat (apply_entry) and the next tick tries again.
            self.app.tasks[entry.task]()
        finally:
            close_old_connections()  # back to the pool until the next tick
        return None
