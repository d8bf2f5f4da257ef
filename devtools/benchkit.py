"""The benchmarks' kit (bench, bench_gallery): statistics, timing, /proc readings, machine facts, the
quiet-machine wait, the stand-in and worker processes, and the report's table and JSON file.

Everything two benchmarks would otherwise each write lives here once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.db import connection

# --------------------------------------------------------------------------------------------------
# Statistics and timing


def percentile(values: Iterable[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), so p95 of 20 values is meaningful."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "p95": percentile(values, 0.95),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def ms_since(started: float) -> float:
    """Milliseconds from a ``time.perf_counter()`` reading until now."""
    return (time.perf_counter() - started) * 1000


def fmt_ms(value: float) -> str:
    return f"{value:.1f} ms"


class SqlTimer:
    """Sums the time spent in the database driver (an execute_wrapper, a few µs a query)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.count += 1


# --------------------------------------------------------------------------------------------------
# /proc readings (Linux; each returns nothing rather than fail elsewhere)


def system_busy_seconds() -> float:
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def commands_cpu_seconds(prefixes: tuple[str, ...]) -> float:
    """CPU used so far by processes whose command starts with one of `prefixes`, including their exited
    children (Postgres backends are reaped by the postmaster)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.find("(") + 1 : text.rfind(")")].startswith(prefixes):
            fields = text.rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15]) / ticks  # utime stime cutime cstime
    return total


def process_cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU of one live process; None when there is no such process."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def proc_status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def proc_kib(pid: int, key: str) -> int | None:
    value = proc_status(pid).get(key)
    return int(value.split()[0]) if value else None


def reset_peak_rss(pid: int) -> bool:
    """Linux resets VmHWM to the current RSS on "5" written to clear_refs (needs the same user or root)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def children_of(pid: int) -> list[int]:
    try:
        found = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            found.extend(int(child) for child in children)
        return found
    except OSError:
        return []


class CpuMeter:
    """How busy the machine was during a phase, in cores: this bench, the services it uses, the rest.

    "Bench" is this process, the processes it follows (a stand-in) and the CPU of processes it stopped
    meanwhile (``add``, for workers). "Services" are every process whose command starts with one of
    ``services``, exited ones included: they also serve other people's processes. ``service_pids`` are
    service processes serving this bench alone (its Postgres backend), reported on their own.
    """

    def __init__(
        self,
        *,
        follow: tuple[int, ...] = (),
        services: tuple[str, ...] = ("postgres", "redis-server"),
        service_pids: tuple[int, ...] = (),
    ) -> None:
        self.services = services
        self.followed0 = {pid: process_cpu_seconds(pid) or 0.0 for pid in follow}
        self.service_pids0 = {pid: process_cpu_seconds(pid) or 0.0 for pid in service_pids}
        self.started = time.monotonic()
        self.system0 = system_busy_seconds()
        self.services0 = commands_cpu_seconds(services)
        times = os.times()
        self.self0 = times.user + times.system
        self.added = 0.0

    def add(self, pid: int) -> None:
        """Count a followed process's CPU before it exits (its CPU vanishes with it)."""
        self.added += process_cpu_seconds(pid) or 0.0

    @staticmethod
    def _since(readings: dict[int, float]) -> float:
        return sum((process_cpu_seconds(pid) or cpu0) - cpu0 for pid, cpu0 in readings.items())

    def result(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        times = os.times()
        bench = times.user + times.system - self.self0 + self.added + self._since(self.followed0)
        own_services = self._since(self.service_pids0)
        services = max(commands_cpu_seconds(self.services) - self.services0, own_services)
        busy = system_busy_seconds() - self.system0
        return {
            "elapsed_s": elapsed,
            "machine_busy_cores": busy / elapsed,
            "bench_cores": bench / elapsed,
            "services_cores": services / elapsed,
            "own_service_processes_cores": own_services / elapsed,
            "other_processes_cores": max(0.0, busy - bench - services) / elapsed,
        }


def wait_for_quiet(patience: float, *, meter: Callable[[], CpuMeter], out: Callable[[str], None]) -> float:
    """Other processes' CPU use (cores) over 2 s; with patience, wait until it drops under 0.25."""
    deadline = time.monotonic() + patience
    while True:
        sample = meter()
        time.sleep(2)
        other = sample.result()["other_processes_cores"]
        if other < 0.25 or time.monotonic() >= deadline:
            break
        out(f"waiting for a quieter machine: other processes use {other:.2f} cores")
        time.sleep(8)
    out(f"other processes' CPU use before measuring: {other:.2f} cores")
    return other


# --------------------------------------------------------------------------------------------------
# What ran where


def git_facts() -> dict[str, Any]:
    """Read-only: the commit and which files differ from it (other people edit this tree meanwhile)."""

    def git(*args: str) -> str:
        with contextlib.suppress(Exception):
            return subprocess.run(
                ["git", *args], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=10, check=False
            ).stdout.rstrip()
        return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "modified": [line[3:] for line in git("status", "--porcelain").splitlines()],
    }


def machine_facts(*, postgres_settings: tuple[str, ...] = ("server_version",)) -> dict[str, Any]:
    """The machine, the versions and the database: enough to tell two runs' figures apart."""
    import django

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        memory = f"{int(Path('/proc/meminfo').read_text().split()[1]) // 1024} MB"
    facts: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory": memory,
        "load_average_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "os": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "database": connection.vendor,
        "debug": settings.DEBUG,
        "conn_max_age": settings.DATABASES["default"].get("CONN_MAX_AGE"),
        "git": git_facts(),
    }
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for name in postgres_settings:
                cursor.execute(f"SHOW {name}")
                facts[f"postgres_{name}"] = cursor.fetchone()[0]
    return facts


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


# --------------------------------------------------------------------------------------------------
# Options and the report


def add_run_arguments(parser: CommandParser) -> None:
    """The options every benchmark takes: a quiet machine, a label, where the JSON goes."""
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for other processes to use less than a quarter of a core",
    )
    parser.add_argument("--label", default="", help="a tag for this run, kept in the JSON and file name")
    parser.add_argument("--results-dir", default=str(settings.BASE_DIR / "bench" / "results"))


@dataclass
class Metric:
    name: str
    value: Any
    unit: str = ""
    target: str = ""
    passed: bool | None = None
    note: str = ""

    @classmethod
    def at_most(cls, name: str, value: Any, limit: float, *, unit: str = "", note: str = "") -> Metric:
        """A metric with a ceiling: passes when ``value <= limit``."""
        shown = f"≤ {limit:g}" + ("" if unit in ("", "ratio") else f" {unit}")
        return cls(name, value, unit, shown, value <= limit, note)

    @classmethod
    def at_least(cls, name: str, value: Any, limit: float, *, unit: str = "", note: str = "") -> Metric:
        """A metric with a floor: passes when ``value >= limit``."""
        shown = f"≥ {limit:g}" + ("" if unit in ("", "ratio") else f" {unit}")
        return cls(name, value, unit, shown, value >= limit, note)

    def row(self) -> str:
        if self.value is None:
            value = "n/a"
        elif isinstance(self.value, float):
            value = f"{self.value:.{2 if self.unit in ('', 'ratio') else 1}f}"
        else:
            value = str(self.value)
        unit = "" if self.unit in ("", "ratio") else f" {self.unit}"
        verdict = "-" if self.passed is None else ("pass" if self.passed else "**FAIL**")
        return f"| {self.name} | {value}{unit} | {self.target or '-'} | {verdict} |"


def metrics_table(metrics: list[Metric]) -> list[str]:
    return ["| Metric | Value | Target | Result |", "|---|---|---|---|", *(m.row() for m in metrics)]


def write_results(folder: str | Path, prefix: str, label: str, payload: dict[str, Any]) -> Path:
    """``<folder>/<prefix>-<UTC stamp>[-<label>].json``; returns the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    label = re.sub(r"[^A-Za-z0-9_.-]", "-", label)
    path = folder / f"{prefix}-{stamp}{'-' + label if label else ''}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def shown_path(path: Path) -> Path:
    return path.relative_to(settings.BASE_DIR) if path.is_relative_to(settings.BASE_DIR) else path


# --------------------------------------------------------------------------------------------------
# Processes a benchmark starts


class BenchFailure(CommandError):
    pass


class StandinProcess:
    """The stand-in in a process of its own (``python -m standin``), driven over its control URLs.

    The real API is another machine: its request handling must not share a GIL with this process,
    which submits the jobs and polls for them. It still shares the cores, which is pessimistic.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "standin", "--port", "0", "--quiet"],
            cwd=settings.BASE_DIR,
            stdout=subprocess.PIPE,
            text=True,
        )
        announcement = self.process.stdout.readline()  # "Stand-in OpenAI Images API at <url>"
        if " at " not in announcement:
            self.process.kill()
            raise BenchFailure(f"the stand-in did not start: {announcement!r}")
        self.base_url = announcement.split(" at ", 1)[1].split()[0]
        self._latency, self._latency_jitter = 0.0, 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    def _control(self, action: str, payload: dict[str, Any]) -> None:
        request = urllib.request.Request(
            f"{self.base_url.removesuffix('/v1')}/_standin/{action}",
            data=json.dumps(payload).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    @property
    def latency(self) -> float:
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._control("latency", {"latency": seconds, "latency_jitter": self._latency_jitter})
        self._latency = seconds

    @property
    def latency_jitter(self) -> float:
        return self._latency_jitter

    @latency_jitter.setter
    def latency_jitter(self, seconds: float) -> None:
        self._control("latency", {"latency": self._latency, "latency_jitter": seconds})
        self._latency_jitter = seconds

    def reset(self) -> None:
        self._control("reset", {})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process.stdout.close()


@dataclass
class Worker:
    process: subprocess.Popen
    name: str
    concurrency: int
    log_path: Path
    log_file: Any
    cpu_at_start: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)  # warm shutdown: finish what is running, then exit
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        with contextlib.suppress(Exception):
            self.log_file.close()


def start_worker(
    *, name: str, queue: str, concurrency: int, env: dict[str, str], log_path: Path, loglevel: str = "WARNING"
) -> Worker:
    """A Celery worker (threads pool) reading only `queue`, its output in `log_path`."""
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "threads"]
    command += [
        "--concurrency",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        loglevel,
    ]
    command += ["-Q", queue, "-n", name]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("w")
    process = subprocess.Popen(
        command, env=env, cwd=settings.BASE_DIR, stdout=log_file, stderr=subprocess.STDOUT
    )
    return Worker(process=process, name=name, concurrency=concurrency, log_path=log_path, log_file=log_file)


# --------------------------------------------------------------------------------------------------
# A worker's memory, sampled (bench_campaign)


def rss_kib_tree(pid: int) -> int | None:
    """VmRSS of a process plus its children's (a prefork pool's), in KiB; None when it is gone."""
    own = proc_kib(pid, "VmRSS")
    if own is None:
        return None
    return own + sum(proc_kib(child, "VmRSS") or 0 for child in children_of(pid))


def growth_per(samples: list[tuple[float, float]], per: float) -> float | None:
    """The least-squares slope of y over x, times `per` (e.g. MB per 1,000 jobs); None for too few
    distinct x. A slope over every sample, not end minus start: one garbage collection or one large
    allocation at either end would otherwise decide the figure."""
    xs = [x for x, _ in samples]
    if len(set(xs)) < 3:
        return None
    return statistics.linear_regression(xs, [y for _, y in samples]).slope * per


def route_tasks_to(queue: str) -> None:
    """Send this process's Celery tasks to `queue` only (a bench's own worker reads it with -Q)."""
    from config.celery import app

    app.conf.task_default_queue = queue
    app.conf.task_default_routing_key = queue
    app.conf.task_routes = {"workspace.tasks.*": {"queue": queue, "routing_key": queue}}
    with contextlib.suppress(AttributeError):
        del app.amqp.queues  # a cached_property built from the old default queue, if anything built it
    app.amqp.flush_routes()  # the routes table is cached too, once anything was sent
    with contextlib.suppress(AttributeError):
        app.amqp.router = app.amqp.Router()
    route = app.amqp.router.route({}, "workspace.tasks.run_job", args=(0,), kwargs={})
    routed = getattr(route.get("queue"), "name", route.get("queue"))
    if routed != queue:
        raise BenchFailure(f"run_job would go to queue {routed!r}, not {queue!r}")


def worker_env(
    *, base_url: str, queue: str, concurrency: int, media_root: Path, **extra: str
) -> dict[str, str]:
    """The environment of a bench's worker: this process's database and broker, the stand-in, its own
    queue and media folder, and no fair-share limit (one bench user measures the pipeline)."""
    env = os.environ.copy()
    env.update(
        {
            "DATABASE_URL": settings.DATABASE_URL,
            "REDIS_URL": settings.REDIS_URL,
            "OPENAI_BASE_URL": base_url,
            "OPENAI_API_KEY": "bench",
            "CELERY_QUEUE": queue,
            "WORKER_CONCURRENCY": str(concurrency),
            "DEBUG": "true" if settings.DEBUG else "false",
            "MEDIA_ROOT": str(media_root),
            "FAIR_SHARE_CALLS_PER_USER": "0",
        }
        | extra
    )
    env.pop("DEMO_MODE", None)
    return env


def remove_queue(queue: str) -> int:
    """Delete a bench queue's keys from the Redis broker; returns how many went."""
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    removed = client.delete(queue, f"_kombu.binding.{queue}")
    for key in client.scan_iter(match=f"*{queue}*"):
        removed += client.delete(key)
    return removed
