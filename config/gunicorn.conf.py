"""gunicorn's settings for every way the web runs (compose, `make run`, the load and chaos tools).

Several gunicorn processes each count their own requests. A scrape of /metrics reaches one of them, so
without this each scrape would report a different share of the traffic. prometheus_client's
multiprocess mode has every process write its samples to files in one folder, and /metrics adds them
up (workspace/views/metrics.py). The folder is emptied when gunicorn starts, so a restart starts the
counters again as Prometheus expects, and a process that exits has its live gauges dropped.
"""

import os
import shutil
import tempfile

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def on_starting(server) -> None:
    # Set in the master before any worker is forked: each worker reads it when it first imports
    # prometheus_client, so it must be in the environment the workers inherit.
    folder = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="atelier-metrics-")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    os.environ[MULTIPROC_ENV] = folder


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
