"""The web-tier burst of `make bench`: submits through a live gunicorn while two workers and beat run,
timing each submit and sampling Postgres's connection count (issue 13, items 1 and 6).

Kept apart from the bench command: it starts processes of its own (gunicorn and beat) and talks HTTP,
while the rest of the bench drives the pipeline from inside its process.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings

from devtools.benchkit import percentile
from devtools.loadkit import GENERATION_FORM, Session, free_port

# As in docker-compose.yml's web service: the production shape, not `make run`'s smaller one.
GUNICORN_WORKERS, GUNICORN_THREADS = 3, 4

COUNT_SQL = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
BY_ROLE_SQL = (
    "SELECT coalesce(nullif(application_name, ''), backend_type), count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() GROUP BY 1 ORDER BY 1"
)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A created job answers 302 back to the project: that answer is the result, not a page to fetch."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class ConnectionSampler:
    """Counts the database's connections every `interval` seconds on a connection of its own (one of
    those counted), and keeps the peak with its breakdown by `application_name` (`atelier worker`...)."""

    dsn: str
    interval: float = 0.1
    samples: list[int] = field(default_factory=list)
    peak: int = 0
    peak_by_role: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ConnectionSampler:
        self._thread = threading.Thread(target=self._run, name="connection-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, application_name="atelier bench sampler") as conn:
            while not self._stop.is_set():
                count = conn.execute(COUNT_SQL).fetchone()[0]
                self.samples.append(count)
                if count > self.peak:
                    self.peak = count
                    # Only when a new peak is seen: the breakdown costs a second query.
                    self.peak_by_role = dict(conn.execute(BY_ROLE_SQL).fetchall())
                self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


class Gunicorn:
    """The web tier as compose runs it, on a free loopback port, logging to `log_path`."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = log_path.open("w")
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--config",
            "config/gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{self.port}",
        ]
        command += ["--workers", str(GUNICORN_WORKERS), "--threads", str(GUNICORN_THREADS), "--timeout", "60"]
        self.process = subprocess.Popen(  # noqa: S603 (our own gunicorn)
            command, env=env, cwd=settings.BASE_DIR, stdout=self.log_file, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1):  # noqa: S310 (http://)
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = self.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"gunicorn did not start:\n{tail}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        stop_process(self.process)
        with contextlib.suppress(Exception):
            self.log_file.close()


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def burst(session: Session, path: str, *, count: int, clients: int) -> dict[str, Any]:
    """`clients` threads post the generation form `count` times in all, each as fast as answered.

    Every submit must come back as the form's redirect (302): anything else is counted as a failure
    with its status, and the first few are kept to say why.
    """
    headers = session.headers() | {"Content-Type": "application/x-www-form-urlencoded"}
    body = urllib.parse.urlencode(GENERATION_FORM | {"csrfmiddlewaretoken": session.cookie("csrftoken")})
    opener = urllib.request.build_opener(_NoRedirect)
    url = f"{session.base_url}{path}"
    timings: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    remaining = [count]
    start_gate = threading.Barrier(clients)

    def client() -> None:
        start_gate.wait()  # every client starts at once: a burst, not a ramp
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            started = time.perf_counter()
            status, reason = 0, ""
            try:
                with opener.open(
                    urllib.request.Request(url, data=body.encode(), headers=headers),  # noqa: S310 (http://)
                    timeout=60,
                ):
                    status = 200
            except urllib.error.HTTPError as error:
                status, reason = error.code, error.read(200).decode(errors="replace")
            except OSError as error:
                reason = repr(error)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                timings.append(elapsed)
                if status != 302:
                    failures.append(f"{status} {reason}".strip())

    threads = [threading.Thread(target=client, name=f"submit-{i}") for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "submits": count,
        "clients": clients,
        "elapsed_s": elapsed,
        "per_second": count / elapsed,
        "p50_ms": percentile(timings, 0.5),
        "p95_ms": percentile(timings, 0.95),
        "failures": len(failures),
        "failure_examples": failures[:3],
    }
