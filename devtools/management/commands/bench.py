"""``make bench``: measure the job pipeline end to end against the stand-in Images API.

Everything goes through the real path: the web view (Django's test ``Client``, in this process) or the
``job_create`` service, a Celery message over Redis, a real worker process (threads pool) that calls the
stand-in (a process of its own) over HTTP through the ``openai`` SDK, stores the files and thumbnails,
and flips the row. It measures:

1. orchestration overhead per job (submit to ``succeeded``, minus the stand-in's fixed latency);
2. throughput of one worker at each concurrency (ideal ``ceil(N/C) * latency`` over actual);
3. server time of the job-card poll, and its SQL queries;
4. thumbnail time per image size;
5. the worker's peak memory (VmHWM) during each throughput run;
6. a burst of form submits through a live gunicorn (submits/s, p95) while two workers and beat run, and
   the peak of Postgres connections sampled from ``pg_stat_activity`` meanwhile (``devtools/burstkit.py``).

The bench makes its own user and project, sends to its own queue, keeps media in a temporary folder, and
removes all of it at the end (also after an error or Ctrl+C). It refuses to start when another project has
unfinished jobs, because the worker's start-up sweep would pick them up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, models
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse
from django.utils import timezone

import standin
from config.env import envint
from devtools.benchkit import (
    BenchFailure,
    CpuMeter,
    Metric,
    StandinProcess,
    Worker,
    add_run_arguments,
    children_of,
    command_line,
    fmt_ms,
    machine_facts,
    metrics_table,
    ms_since,
    proc_kib,
    proc_status,
    process_cpu_seconds,
    reset_peak_rss,
    shown_path,
    start_worker,
    summary,
    wait_for_quiet,
    write_results,
)
from devtools.burstkit import (
    GUNICORN_THREADS,
    GUNICORN_WORKERS,
    ConnectionSampler,
    Gunicorn,
    burst,
    stop_process,
)
from workspace import jobs as job_services
from workspace import outputs
from workspace import queue as job_queue
from workspace import worker as job_worker
from workspace.models import UNDECLARED_COLUMNS, ApiCall, Image, Job, Membership, Project, Role

PROMPT = "Bench: a lemon on a blue tiled table, morning light"
FORM_POST = {
    "prompt": PROMPT,
    "model": "gpt-image-2",
    "size": "square",
    "quality": "low",
    "output_format": "png",
    "output_compression": "100",
    "background": "auto",
    "moderation": "auto",
    "complexity": "",
    "n": "1",
}
SERVICE_PARAMS = {
    "model": "gpt-image-2",
    "size": "1024x1024",
    "size_preset": "square",
    "quality": "low",
    "output_format": "png",
    "output_compression": None,
    "background": "auto",
    "moderation": "auto",
    "complexity": "",
    "n": 1,
}
THUMBNAIL_SIZES = ((1024, 1024), (1536, 1024), (2048, 1152))

TARGET_OVERHEAD_MEDIAN_MS = 100.0
TARGET_THROUGHPUT_RATIO = 0.9
TARGET_POLL_P95_MS = 5.0
TARGET_DELIVERIES_PER_JOB = 1.02
TARGET_DB_CONNECTIONS = 50  # two workers at 64 calls in flight, gunicorn and beat, whatever the load
WEB_BURST_CONCURRENCY = 64  # per worker in the web burst: the "64 calls in flight each"
FAIR_SHARE_SLACK_S = 2.0  # a teammate's job starts within one call's latency plus this


# --------------------------------------------------------------------------------------------------
# Small helpers


SOURCE_GLOBS = ("workspace/**/*.py", "config/*.py", "templates/**/*.html")


def source_fingerprint() -> str:
    digest = hashlib.sha256()
    for pattern in SOURCE_GLOBS:
        for path in sorted(settings.BASE_DIR.glob(pattern)):
            with contextlib.suppress(OSError):
                digest.update(str(path.relative_to(settings.BASE_DIR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def delete_with_protected_rows(instance: Any) -> None:
    """Delete a bench-owned row, first removing rows that point at it with on_delete=PROTECT (a ledger).

    Only rows referencing this very instance are touched, and the bench made all of them.
    """
    for relation in instance._meta.related_objects:
        if relation.on_delete is models.PROTECT and not relation.many_to_many:
            relation.related_model._base_manager.filter(**{relation.field.name: instance}).delete()
    type(instance)._base_manager.filter(pk=instance.pk).delete()


@dataclass
class Run:
    """Everything one bench run creates, so teardown can remove exactly that."""

    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    user: Any = None
    project: Project | None = None
    server: StandinProcess | None = None
    media_root: Path | None = None
    workers: list[Worker] = field(default_factory=list)
    queue: str = ""
    clients: list[Client] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)  # gunicorn, beat: stopped at teardown


# --------------------------------------------------------------------------------------------------


class Command(BaseCommand):
    help = "Benchmark the job pipeline (web -> Redis -> Celery worker -> stand-in API -> storage)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--jobs-overhead", type=int, default=None, help="sequential jobs (default 20)")
        parser.add_argument("--latency-overhead", type=float, default=None, help="seconds (default 0.5)")
        parser.add_argument("--jobs-throughput", type=int, default=None, help="jobs per run (default 256)")
        parser.add_argument("--latency-throughput", type=float, default=None, help="seconds (default 4)")
        parser.add_argument("--concurrency", default=None, help="worker concurrencies, e.g. 32,64")
        parser.add_argument("--polls", type=int, default=None, help="job-card requests per case (300)")
        parser.add_argument("--thumbnail-runs", type=int, default=20)
        parser.add_argument(
            "--quick", action="store_true", help="smoke run: 5 / 32 jobs, 1 s throughput latency, 200 polls"
        )
        parser.add_argument("--jobs-backlog", type=int, default=None, help="backlog for deliveries (1000)")
        parser.add_argument("--jobs-fairshare", type=int, default=None, help="one person's backlog (300)")
        parser.add_argument("--submits", type=int, default=None, help="web burst: form submits (300)")
        parser.add_argument("--submit-clients", type=int, default=50, help="web burst: concurrent clients")
        parser.add_argument(
            "--skip",
            default="",
            help="phases to skip: overhead,throughput,poll,thumbnail,backlog,fairshare,web",
        )
        parser.add_argument("--no-warmup", action="store_true", help="do not warm a worker before measuring")
        parser.add_argument("--job-timeout", type=float, default=120.0, help="seconds before giving up")
        parser.add_argument(
            "--worker-processes",
            type=int,
            default=1,
            help="diagnostic: split each throughput concurrency over this many worker processes",
        )
        parser.add_argument(
            "--profile-worker",
            action="store_true",
            help="record each throughput worker with py-spy (if installed) into var/bench/",
        )
        parser.add_argument(
            "--profile-worker-gil",
            action="store_true",
            help="like --profile-worker, but sample only the thread holding the GIL",
        )
        add_run_arguments(parser)
        parser.add_argument(
            "--allow-foreign-jobs",
            action="store_true",
            help="start even if other projects have unfinished jobs (a worker's start-up sweep may run them)",
        )

    # -- entry point

    def handle(self, *args: Any, **options: Any) -> None:
        quick = options["quick"]
        self.opts = {
            "jobs_overhead": options["jobs_overhead"] or (5 if quick else 20),
            "latency_overhead": options["latency_overhead"]
            if options["latency_overhead"] is not None
            else 0.5,
            "jobs_throughput": options["jobs_throughput"] or (32 if quick else 256),
            "latency_throughput": (
                options["latency_throughput"]
                if options["latency_throughput"] is not None
                else (1.0 if quick else 4.0)
            ),
            "concurrency": [int(c) for c in (options["concurrency"] or "32,64").split(",") if c.strip()],
            "polls": options["polls"] or (200 if quick else 300),
            "jobs_backlog": options["jobs_backlog"] or (200 if quick else 1000),
            "jobs_fairshare": options["jobs_fairshare"] or (100 if quick else 300),
            "submits": options["submits"] or (100 if quick else 300),
            "submit_clients": max(1, options["submit_clients"]),
            "thumbnail_runs": options["thumbnail_runs"],
            "quick": quick,
            "warmup": not options["no_warmup"],
            "job_timeout": options["job_timeout"],
            "skip": {s.strip() for s in options["skip"].split(",") if s.strip()},
            "allow_foreign": options["allow_foreign_jobs"],
            "results_dir": options["results_dir"],
            "profile_worker": options["profile_worker"] or options["profile_worker_gil"],
            "profile_gil": options["profile_worker_gil"],
            "wait_idle": options["wait_idle"],
            "label": options["label"],
            "worker_processes": max(1, options["worker_processes"]),
        }
        self.metrics: list[Metric] = []
        self.meter: CpuMeter | None = None
        self.details: dict[str, Any] = {}
        self.notes: list[str] = []
        started = time.time()
        command = command_line()
        self.out(f"# Atelier bench  {datetime.now(UTC).isoformat(timespec='seconds')}")
        self.out(f"command: {command}")
        machine = self.machine_facts()
        self.fingerprint = machine["source_fingerprint"] = source_fingerprint()
        for key, value in machine.items():
            self.out(f"  {key}: {value}")
        shown = {k: sorted(v) if isinstance(v, set) else v for k, v in self.opts.items()}
        self.out(f"options: {json.dumps(shown)}")

        machine["other_load_at_start_cores"] = wait_for_quiet(
            self.opts["wait_idle"], meter=CpuMeter, out=self.out
        )
        run = Run()
        self.run_state = run
        error: BaseException | None = None
        try:
            self.preflight(machine)
            self.setup(run)
            phases: list[tuple[str, Callable[[], None]]] = [
                ("thumbnail", self.bench_thumbnails),
                ("overhead", lambda: self.bench_overhead(run)),
                ("poll", lambda: self.bench_polls(run)),
            ]
            phases += [
                (f"throughput C={c}", lambda c=c: self.bench_throughput(run, c))
                for c in self.opts["concurrency"]
            ]
            phases += [
                ("backlog", lambda: self.bench_backlog(run)),
                ("fairshare", lambda: self.bench_fair_share(run)),
                ("web", lambda: self.bench_web_burst(run)),
            ]
            for name, phase in phases:
                if name.split()[0] in self.opts["skip"]:
                    continue
                self.meter = CpuMeter(follow=(run.server.pid,))
                try:
                    phase()
                finally:
                    load = self.meter.result()
                    self.meter = None
                    self.details.setdefault("cpu", {})[name] = load
                    if load["other_processes_cores"] > 0.25:
                        self.notes.append(
                            f"Other processes on this machine used {load['other_processes_cores']:.2f} of "
                            f"{os.cpu_count()} cores on average during '{name}' (bench, worker and stand-in: "
                            f"{load['bench_cores']:.2f}, Postgres + Redis: "
                            f"{load['services_cores']:.2f}); its figures are pessimistic."
                        )
        except BaseException as exc:  # report what we have, then clean up and re-raise
            error = exc
            self.stderr.write(f"bench aborted: {exc!r}")
        finally:
            self.teardown(run)

        machine["load_average_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        self.report(command, machine, started, error)
        if error is not None:
            if isinstance(error, KeyboardInterrupt):
                raise error
            raise BenchFailure(f"bench did not complete: {error}") from error

    def out(self, text: str = "") -> None:
        self.stdout.write(text)
        self.stdout.flush()

    # -- environment

    def machine_facts(self) -> dict[str, Any]:
        """The kit's facts, plus the pipeline's versions and how many connections Postgres allows."""
        import celery
        import openai
        import PIL

        facts = machine_facts(
            postgres_settings=("server_version", "max_connections", "superuser_reserved_connections")
        )
        redis_version = ""
        with contextlib.suppress(Exception):
            import redis

            redis_version = redis.Redis.from_url(settings.CELERY_BROKER_URL).info("server")["redis_version"]
        return facts | {
            "celery": celery.__version__,
            "openai": openai.__version__,
            "pillow": PIL.__version__,
            "redis": redis_version,
            "db_max_connections": int(facts.get("postgres_max_connections") or 0) or None,
            "db_superuser_reserved": int(facts.get("postgres_superuser_reserved_connections") or 0),
        }

    def preflight(self, machine: dict[str, Any]) -> None:
        if not settings.CELERY_BROKER_URL.startswith("redis"):
            raise BenchFailure("The bench needs REDIS_URL (a real broker); run it through `make bench`.")
        self.check_schema()
        if connection.vendor != "postgresql":
            self.notes.append(f"Database is {connection.vendor}, not PostgreSQL: figures are not comparable.")
        max_connections = machine.get("db_max_connections")
        if max_connections:
            # A worker borrows from its pool (DB_POOL_MAX_SIZE, by default the worker role's), whatever
            # its concurrency; with SQLite there is no pool, but then there is no max_connections either.
            worker_pool = envint("DB_POOL_MAX_SIZE", settings.DB_POOL_DEFAULTS["worker"][0], minimum=1)
            needed = worker_pool + 1  # the worker's pool + this process
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
                in_use = cursor.fetchone()[0]
            available = max_connections - machine.get("db_superuser_reserved", 0) - in_use + 1  # +1: ours
            self.details["db_connections"] = {
                "max_connections": max_connections,
                "superuser_reserved": machine.get("db_superuser_reserved", 0),
                "in_use_before": in_use,
                "needed_at_max_concurrency": needed,
            }
            if needed > available:
                raise BenchFailure(
                    f"Postgres allows {max_connections} connections ({in_use} in use); a worker at "
                    "concurrency "
                    f"{max(self.opts['concurrency'])} needs about {needed}. Raise max_connections."
                )
        foreign = Job.objects.filter(status__in=Job.ACTIVE_STATUSES).count()
        if foreign and not self.opts.get("allow_foreign"):
            raise BenchFailure(
                f"{foreign} unfinished job(s) exist in this database. A bench worker's start-up sweep could "
                "take them over; finish them first (or pass --allow-foreign-jobs)."
            )

    def check_schema(self) -> None:
        """Fail now, not after a 90 s timeout in the worker, when the tables do not match the models."""
        from django.apps import apps
        from django.db.migrations.executor import MigrationExecutor

        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            pending = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan)
            raise BenchFailure(f"Unapplied migrations: {pending}. Run `manage.py migrate` first.")
        problems = []
        with connection.cursor() as cursor:
            tables = set(connection.introspection.table_names(cursor))
            for model in apps.get_app_config("workspace").get_models():
                table = model._meta.db_table
                if table not in tables:
                    problems.append(f"table {table} is missing")
                    continue
                columns = {c.name for c in connection.introspection.get_table_description(cursor, table)}
                expected = {f.column for f in model._meta.local_concrete_fields}
                problems += [f"{table}.{c} is missing" for c in sorted(expected - columns)]
                extra = columns - expected - UNDECLARED_COLUMNS.get(table, set())
                problems += [f"{table}.{c} is not in the model" for c in sorted(extra)]
        if problems:
            raise BenchFailure(
                "The database does not match the models (was a migration edited in place?): "
                + "; ".join(problems)
                + ". On a throw-away database: `manage.py migrate workspace zero && manage.py migrate`."
            )

    # -- setup and teardown

    def setup(self, run: Run) -> None:
        from config.celery import app

        User = get_user_model()
        # The bench queues hundreds of one person's jobs at once: the Studio's limit is not measured here.
        settings.FAIR_SHARE_QUEUED_PER_USER = 10**9
        run.user = User.objects.create_user(
            username=f"bench-{run.suffix}", email=f"bench-{run.suffix}@example.invalid", password=None
        )
        run.project = Project.objects.create(name=f"Bench {run.suffix}", created_by=run.user)
        Membership.objects.create(project=run.project, user=run.user, role=Role.OWNER)
        run.media_root = Path(tempfile.mkdtemp(prefix="atelier-bench-media-"))
        run.server = StandinProcess()
        run.queue = f"bench-{run.suffix}"
        # This process sends to the bench queue only; the worker reads it (CELERY_QUEUE and -Q).
        app.conf.task_default_queue = run.queue
        app.conf.task_default_routing_key = run.queue
        app.conf.task_routes = {"workspace.tasks.*": {"queue": run.queue, "routing_key": run.queue}}
        with contextlib.suppress(AttributeError):
            del app.amqp.queues  # a cached_property built from the old default queue, if anything built it
        with contextlib.suppress(AttributeError):
            app.amqp.router = app.amqp.Router()
        route = app.amqp.router.route({}, "workspace.tasks.run_job", args=(0,), kwargs={})
        queue_name = getattr(route.get("queue"), "name", route.get("queue"))
        if queue_name != run.queue:
            raise BenchFailure(f"run_job would go to queue {queue_name!r}, not {run.queue!r}")
        self.out(f"stand-in at {run.server.base_url}; queue {run.queue}; media in {run.media_root}")

    def teardown(self, run: Run) -> None:
        for process in run.processes:
            stop_process(process)
        for worker in list(run.workers):
            self.stop_worker(run, worker)
        if run.server is not None:
            with contextlib.suppress(Exception):
                run.server.stop()
        with contextlib.suppress(Exception):
            connection.close()  # a fresh connection for the clean-up, whatever state the old one was in
        try:
            if run.project is not None:
                delete_with_protected_rows(run.project)  # jobs, calls, images, memberships, charges
            session_keys = [c.session.session_key for c in run.clients if c.session.session_key]
            for client in run.clients:
                with contextlib.suppress(Exception):
                    client.logout()
            Session.objects.filter(pk__in=session_keys).delete()
            if run.user is not None:
                delete_with_protected_rows(run.user)
            for teammate in get_user_model().objects.filter(username=f"bench-{run.suffix}-teammate"):
                delete_with_protected_rows(teammate)
        except Exception as exc:
            self.stderr.write(f"clean-up of bench rows failed: {exc!r} (user bench-{run.suffix})")
        if run.media_root is not None:
            shutil.rmtree(run.media_root, ignore_errors=True)
        if run.queue:
            self.clean_redis(run.queue)

    def clean_redis(self, queue: str) -> None:
        """Remove the bench queue's keys and any unacked message of ours left in kombu's shared hash."""
        try:
            import redis

            client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
            removed = client.delete(queue, f"_kombu.binding.{queue}")
            for binding_key in ("_kombu.binding.celery.pidbox", "_kombu.binding.celeryev"):
                for member in client.smembers(binding_key):
                    if queue.encode() in member:
                        client.srem(binding_key, member)
                        removed += 1
            for key in client.scan_iter(match=f"*{queue}*"):
                client.delete(key)
                removed += 1
            for tag, payload in client.hscan_iter("unacked"):
                with contextlib.suppress(Exception):
                    _message, _exchange, routing_key = json.loads(payload)
                    if routing_key == queue:
                        client.hdel("unacked", tag)
                        client.zrem("unacked_index", tag)
                        removed += 1
            self.details["redis_keys_removed"] = removed
        except Exception as exc:
            self.stderr.write(f"clean-up of Redis keys for {queue} failed: {exc!r}")

    # -- worker

    def start_worker(
        self, run: Run, concurrency: int, *, loglevel: str = "WARNING", **extra_env: str
    ) -> Worker:
        tag = uuid.uuid4().hex[:8]
        name = f"bench-{tag}@%h"
        env = os.environ.copy()
        env.update(
            {
                "DATABASE_URL": settings.DATABASE_URL,
                "REDIS_URL": settings.REDIS_URL,
                "OPENAI_BASE_URL": run.server.base_url,
                "OPENAI_API_KEY": "bench",
                "CELERY_QUEUE": run.queue,
                "WORKER_CONCURRENCY": str(concurrency),
                "DEBUG": "true" if settings.DEBUG else "false",
                "MEDIA_ROOT": str(run.media_root),
                # One bench user measures the pipeline, not the fair-share policy (its own phase does).
                "FAIR_SHARE_CALLS_PER_USER": "0",
            }
            | extra_env
        )
        env.pop("DEMO_MODE", None)
        if source_fingerprint() != self.fingerprint:
            self.notes.append(
                f"App code changed on disk during the run (before the C={concurrency} worker started): "
                "the worker runs newer code than this process loaded."
            )
            self.fingerprint = source_fingerprint()
        log_path = (
            settings.BASE_DIR
            / "var"
            / "bench"
            / f"worker-{run.suffix}-c{concurrency}-{tag}.log"  # one file per worker
        )
        worker = start_worker(
            name=name, queue=run.queue, concurrency=concurrency, env=env, log_path=log_path, loglevel=loglevel
        )
        run.workers.append(worker)
        self.out(f"worker pid {worker.pid} (C={concurrency}) log {log_path.relative_to(settings.BASE_DIR)}")
        return worker

    def stop_worker(self, run: Run, worker: Worker) -> None:
        if self.meter is not None and worker.alive():
            self.meter.add(worker.pid)
        worker.stop()
        if worker in run.workers:
            run.workers.remove(worker)

    def warm_up(self, run: Run, worker: Worker | list[Worker], jobs: int) -> float:
        """Wait for the worker to take work (first job) and let it open its threads and connections."""
        run.server.latency = 0.2
        started = time.time()
        first = job_services.job_create(
            project=run.project, author=run.user, prompt=PROMPT, params=SERVICE_PARAMS
        )
        self.wait_for_jobs([first.pk], worker, timeout=90)
        ready = time.time() - started
        self.rss_after_first_job_mb = (
            sum(
                (proc_kib(one.pid, "VmRSS") or 0)
                for one in (worker if isinstance(worker, list) else [worker])
            )
            / 1024
        )
        if isinstance(worker, list) and len(worker) > 1:
            time.sleep(3)  # the first job proves one process is up; give the others time to connect
        if jobs > 1:
            ids = [
                job_services.job_create(
                    project=run.project, author=run.user, prompt=PROMPT, params=SERVICE_PARAMS
                ).pk
                for _ in range(jobs - 1)
            ]
            self.wait_for_jobs(ids, worker, timeout=self.opts["job_timeout"])
        return ready

    def wait_for_jobs(
        self,
        ids: list[int],
        worker: Worker | list[Worker],
        *,
        timeout: float,
        interval: float = 0.005,
        on_tick: Callable[[], None] | None = None,
    ) -> dict[int, float]:
        """Poll until every job is final; returns when each was first seen final (time.time())."""
        seen: dict[int, float] = {}
        pending = set(ids)
        deadline = time.monotonic() + timeout
        while pending:
            rows = Job.objects.filter(pk__in=pending, status__in=Job.FINAL_STATUSES).values_list(
                "pk", flat=True
            )
            now = time.time()
            for pk in rows:
                seen[pk] = now
                pending.discard(pk)
            if not pending:
                break
            for one in worker if isinstance(worker, list) else [worker]:
                if not one.alive():
                    raise BenchFailure(f"a worker exited ({one.process.returncode}):\n{one.log_tail()}")
            if time.monotonic() > deadline:
                tail = (worker[0] if isinstance(worker, list) else worker).log_tail()
                raise BenchFailure(f"{len(pending)} job(s) not finished after {timeout:.0f} s:\n{tail}")
            if on_tick is not None:
                on_tick()
            time.sleep(interval)
        failed = list(
            Job.objects.filter(pk__in=ids)
            .exclude(status=Job.Status.SUCCEEDED)
            .values_list("pk", "status", "error_code", "error_message")[:5]
        )
        if failed:
            raise BenchFailure(f"job(s) did not succeed: {failed}")
        return seen

    # -- 1. orchestration overhead

    def bench_overhead(self, run: Run) -> None:
        count, latency = self.opts["jobs_overhead"], self.opts["latency_overhead"]
        concurrency = self.opts["concurrency"][0]
        self.out(
            f"\n## Overhead: {count} sequential jobs, stand-in latency {latency} s, worker C={concurrency}"
        )
        worker = self.start_worker(run, concurrency)
        client = Client(HTTP_HOST="localhost")
        run.clients.append(client)
        client.force_login(run.user)
        url = reverse("job_create", args=[run.project.pk])
        try:
            ready = self.warm_up(run, worker, 1)
            self.out(f"worker took its first job {ready:.1f} s after the warm-up submit")
            run.server.latency = latency
            run.server.latency_jitter = 0.0
            floor = self.standin_floor(run, latency)
            if self.opts["warmup"]:
                for _ in range(2):  # through the view too, so templates and the SDK client are warm
                    self.submit_and_wait(client, url, worker)
            samples = []
            for index in range(count):
                samples.append(self.submit_and_wait(client, url, worker))
                sample = samples[-1]
                self.out(
                    f"  job {index + 1:>3}: overhead {sample['overhead_ms']:6.1f} ms "
                    f"(post {sample['post_ms']:.1f}, queue {sample['queue_ms']:.1f}, "
                    f"call {sample['call_overhead_ms']:.1f}, store {sample['store_ms']:.1f}, "
                    f"polled {sample['overhead_polled_ms']:.1f})"
                )
        finally:
            run.server.latency = 0.0
            self.stop_worker(run, worker)
        overhead = [s["overhead_ms"] for s in samples]
        stats = summary(overhead)
        breakdown = {
            key: summary([s[key] for s in samples])
            for key in (
                "post_ms",
                "to_row_ms",
                "queue_ms",
                "claim_to_call_ms",
                "call_overhead_ms",
                "store_ms",
                "overhead_polled_ms",
            )
        }
        self.details["overhead"] = {
            "standin_floor_ms": floor,
            "jobs": count,
            "latency_s": latency,
            "worker_concurrency": concurrency,
            "overhead_ms": stats,
            "breakdown_ms": breakdown,
            "samples": samples,
        }
        self.metrics.append(
            Metric.at_most("Overhead per job, median", stats["median"], TARGET_OVERHEAD_MEDIAN_MS, unit="ms")
        )
        self.metrics.append(Metric("Overhead per job, p95", stats["p95"], "ms"))
        for mode, label in (("plain", "plain"), ("streamed", "streamed, 2 partial images")):
            self.metrics.append(
                Metric(
                    f"Stand-in + SDK floor per call ({label}), median",
                    floor[mode]["median"],
                    "ms",
                    note="time over the configured latency for a bare SDK call from this process; "
                    "part of every job's overhead, and CPU taken from the same cores",
                )
            )

    # -- deliveries per job at a backlog (issue 13, item 4)

    def bench_backlog(self, run: Run) -> None:
        """A backlog far longer than the lost-message window, with the sweep running every second in
        this process: every run_job the worker executes is counted (its log), plus any left queued."""
        count, latency, concurrency, window = self.opts["jobs_backlog"], 1.0, 32, 2
        self.out(
            f"\n## Deliveries per job: {count} jobs queued at once, stand-in latency {latency} s, worker "
            f"C={concurrency}, sweep every 1 s with a {window} s lost-message window"
        )
        # INFO: Celery logs every task it runs, which is what is counted.
        worker = self.start_worker(run, concurrency, loglevel="INFO", FAIR_SHARE_CALLS_PER_USER="0")
        saved_window = settings.JOB_REQUEUE_AFTER_SECONDS
        settings.JOB_REQUEUE_AFTER_SECONDS = window  # the old sweep resent every job waiting this long
        sweeps = {"woken": 0, "resent": 0, "last": 0.0}

        def sweep() -> None:
            if time.monotonic() - sweeps["last"] >= 1.0:
                sweeps["last"] = time.monotonic()
                counts = job_worker.jobs_sweep()
                sweeps["woken"] += counts.get("woken", 0)
                sweeps["resent"] += counts.get("resent", 0)

        try:
            self.warm_up(run, worker, 1)
            before = self.run_job_executions(worker)
            # Messages already in the queue are not this phase's (another bench may have left some).
            waiting_before = job_queue.messages_waiting() or 0
            run.server.latency = latency
            started = time.time()
            ids = [
                job_services.job_create(
                    project=run.project, author=run.user, prompt=PROMPT, params=SERVICE_PARAMS
                ).pk
                for _ in range(count)
            ]
            self.wait_for_jobs(ids, worker, timeout=max(self.opts["job_timeout"], count), on_tick=sweep)
            elapsed = time.time() - started
            deadline = time.monotonic() + 60
            while job_queue.messages_waiting() and time.monotonic() < deadline:
                time.sleep(0.2)  # the messages of jobs other threads ran: each finds nothing, and counts
            time.sleep(1)  # the last prefetched ones
        finally:
            run.server.latency = 0.0
            settings.JOB_REQUEUE_AFTER_SECONDS = saved_window
            self.stop_worker(run, worker)
        left = max(0, (job_queue.messages_waiting() or 0) - waiting_before)
        executions = self.run_job_executions(worker) - before + left
        per_job = executions / count
        self.out(
            f"  {count} jobs in {elapsed:.1f} s: {executions} run_job deliveries ({left} still queued), "
            f"{per_job:.3f} per job; the sweep woke {sweeps['woken']}, resent {sweeps['resent']}"
        )
        self.details["backlog"] = {
            "jobs": count,
            "latency_s": latency,
            "concurrency": concurrency,
            "lost_message_window_s": window,
            "elapsed_s": elapsed,
            "executions": executions,
            "left_queued": left,
            "sweep": sweeps,
        }
        self.metrics.append(
            Metric.at_most(
                f"Task deliveries per job, {count} queued behind {latency:g} s calls",
                per_job,
                TARGET_DELIVERIES_PER_JOB,
                unit="ratio",
                note="counted from the worker's run_job executions; the mechanism does not depend on the "
                "backlog's size or the call's latency (nothing is resent while a job runs or a message "
                "waits), so 1,000 x 1 s with a 2 s window stands for 5,000 x 30 s with 120 s",
            )
        )

    @staticmethod
    def run_job_executions(worker: Worker) -> int:
        # Celery logs each task it ran: "Task workspace.tasks.run_job[<id>] succeeded in 0.5s: 1".
        text = worker.log_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if "tasks.run_job[" in line and "succeeded in" in line)

    # -- fair share (issue 13, item 5)

    def bench_fair_share(self, run: Run) -> None:
        """One person's backlog fills every slot; how long a teammate's new job waits to start."""
        count, latency, concurrency, per_user = self.opts["jobs_fairshare"], 2.0, 8, 8
        self.out(
            f"\n## Fair-share wait: one person's {count} queued jobs, stand-in latency {latency} s, worker "
            f"C={concurrency}, FAIR_SHARE_CALLS_PER_USER={per_user}; then a teammate's job"
        )
        teammate = get_user_model().objects.create_user(
            username=f"bench-{run.suffix}-teammate",
            email=f"bench-{run.suffix}-t@example.invalid",
            password=None,
        )
        Membership.objects.create(project=run.project, user=teammate, role=Role.EDITOR)
        worker = self.start_worker(run, concurrency, FAIR_SHARE_CALLS_PER_USER=str(per_user))
        waits = []
        backlog: list[int] = []
        try:
            self.warm_up(run, worker, 1)
            run.server.latency = latency
            backlog = [
                job_services.job_create(
                    project=run.project, author=run.user, prompt=PROMPT, params=SERVICE_PARAMS
                ).pk
                for _ in range(count)
            ]
            for _ in range(3):
                # Every slot busy with the backlog, then the teammate submits.
                deadline = time.monotonic() + 60
                while Job.objects.filter(pk__in=backlog, status=Job.Status.RUNNING).count() < concurrency:
                    if time.monotonic() > deadline:
                        raise BenchFailure("the backlog never filled the worker's slots")
                    time.sleep(0.05)
                submitted = time.monotonic()
                job = job_services.job_create(
                    project=run.project, author=teammate, prompt=PROMPT, params=SERVICE_PARAMS
                )
                while Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).exists():
                    if time.monotonic() - submitted > latency * 10 + 30:
                        raise BenchFailure("the teammate's job never started")
                    time.sleep(0.01)
                waits.append(time.monotonic() - submitted)
                self.out(f"  teammate's job started {waits[-1]:.2f} s after submit")
                self.wait_for_jobs([job.pk], worker, timeout=self.opts["job_timeout"])
        finally:
            for pk in backlog:
                job_services.job_cancel(job=Job(pk=pk))
            run.server.latency = 0.0
            self.stop_worker(run, worker)
        worst = max(waits)
        self.details["fairshare"] = {"backlog": count, "latency_s": latency, "waits_s": waits}
        self.metrics.append(
            Metric.at_most(
                f"Fair-share wait: a teammate's job behind {count} of one person's ({latency:g} s calls)",
                worst,
                latency + FAIR_SHARE_SLACK_S,
                unit="s",
                note="worst of 3, from submit to running; target one call's latency + 2 s",
            )
        )

    # -- web burst and connections peak (issue 13, items 1 and 6)

    def bench_web_burst(self, run: Run) -> None:
        """Submits through gunicorn while two workers (C=64 each) and beat run; the connection peak is
        sampled from pg_stat_activity for the whole run, until the last job of the burst has finished."""
        from devtools.loadkit import Session

        count, clients, latency = self.opts["submits"], self.opts["submit_clients"], 2.0
        concurrency = WEB_BURST_CONCURRENCY
        self.out(
            f"\n## Web burst: {count} form submits by {clients} clients at once through gunicorn "
            f"({GUNICORN_WORKERS} processes x {GUNICORN_THREADS} threads), two workers at C={concurrency}, "
            f"beat, stand-in latency {latency} s; Postgres connections sampled every 0.1 s"
        )
        password = uuid.uuid4().hex
        run.user.set_password(password)
        run.user.save(update_fields=["password"])
        env = os.environ.copy() | {
            "DATABASE_URL": settings.DATABASE_URL,
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_QUEUE": run.queue,
            "MEDIA_ROOT": str(run.media_root),
            "OPENAI_BASE_URL": run.server.base_url,
            "OPENAI_API_KEY": "bench",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # Loopback HTTP: cookies without the Secure flag, as `make run` serves them.
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "FAIR_SHARE_QUEUED_PER_USER": str(10**9),  # one bench user measures the web tier, not the cap
            "LOG_LEVEL": "WARNING",
        }
        env.pop("DEMO_MODE", None)
        logs = settings.BASE_DIR / "var" / "bench"
        stamp = f"{run.suffix}-{int(time.time())}"
        workers = [self.start_worker(run, concurrency) for _ in range(2)]
        beat_log = (logs / f"beat-{stamp}.log").open("w")
        schedule = str(run.media_root / "beat-schedule")
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING", "-s", schedule],
            env=env | {"ATELIER_PROCESS_ROLE": "beat"},
            cwd=settings.BASE_DIR,
            stdout=beat_log,
            stderr=subprocess.STDOUT,
        )
        run.processes.append(beat)
        web = Gunicorn(env, logs / f"gunicorn-{stamp}.log")
        run.processes.append(web.process)
        sampler = ConnectionSampler(settings.DATABASE_URL)
        try:
            web.wait_ready()
            self.warm_up(run, workers, 1)
            session = Session(web.base_url)
            session.log_in(run.user.username, password)
            run.server.latency = latency
            first_new = Job.objects.filter(project=run.project).order_by("-id").values_list("pk", flat=True)
            after = first_new.first() or 0
            sampler.start()
            path, slots = f"/p/{run.project.pk}/jobs", GUNICORN_WORKERS * GUNICORN_THREADS
            # Not timed: one submit per web thread first, so each process has imported and compiled
            # what a submit needs (a restarted server pays that once, not on every burst).
            warm = burst(session, path, count=slots, clients=slots)
            result = burst(session, path, count=count, clients=clients)
            ids = list(Job.objects.filter(project=run.project, pk__gt=after).values_list("pk", flat=True))
            if warm["failures"] or result["failures"] or len(ids) != count + slots:
                raise BenchFailure(
                    f"{warm['failures'] + result['failures']} of {slots + count} submits failed "
                    f"({len(ids)} jobs created): {warm['failure_examples'] + result['failure_examples']}"
                )
            self.wait_for_jobs(ids, workers, timeout=self.opts["job_timeout"] + count * latency / 64)
        finally:
            sampler.stop()
            run.server.latency = 0.0
            for process in (web.process, beat):
                stop_process(process)
            web.stop()
            beat_log.close()
            for worker in workers:
                self.stop_worker(run, worker)
        roles = ", ".join(f"{role} {n}" for role, n in sorted(sampler.peak_by_role.items()))
        self.out(
            f"  submits: {result['per_second']:.1f}/s ({count} in {result['elapsed_s']:.2f} s), "
            f"p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, failures {result['failures']}"
        )
        self.out(
            f"  DB connections peak (measured): {sampler.peak} over {len(sampler.samples)} samples [{roles}]"
        )
        self.details["web_burst"] = result | {
            "latency_s": latency,
            "worker_concurrency": concurrency,
            "workers": 2,
            "gunicorn": f"{GUNICORN_WORKERS}x{GUNICORN_THREADS}",
            "db_connections_peak": sampler.peak,
            "db_connections_peak_by_role": sampler.peak_by_role,
            "db_connection_samples": len(sampler.samples),
        }
        self.metrics.append(
            Metric(
                f"Web burst: submits per second ({clients} clients, gunicorn "
                f"{GUNICORN_WORKERS}x{GUNICORN_THREADS})",
                result["per_second"],
                "/s",
                note=f"p95 {result['p95_ms']:.0f} ms per submit, through HTTP while the workers run",
            )
        )
        self.metrics.append(Metric("Web burst: submit p95", result["p95_ms"], "ms"))
        self.metrics.append(
            Metric.at_most(
                f"Postgres connections peak, 2 workers at C={concurrency} + gunicorn + beat under load",
                sampler.peak,
                TARGET_DB_CONNECTIONS,
                unit="connections",
                note="measured: the peak of count(*) from pg_stat_activity for this database, sampled "
                f"every 0.1 s through the burst until its last job finished; at the peak: {roles} "
                "(the bench's own connection and its sampler included)",
            )
        )

    def standin_floor(self, run: Run, latency: float, calls: int = 5) -> dict[str, dict[str, float]]:
        """What the harness alone adds: a bare SDK call to the stand-in, plain and streamed, over latency."""
        import openai

        client = openai.OpenAI(api_key="bench", base_url=run.server.base_url, max_retries=0, timeout=60)
        params = {key: SERVICE_PARAMS[key] for key in ("model", "size", "quality", "output_format", "n")}
        params |= {"prompt": PROMPT, "background": "auto"}
        result = {}
        try:
            for mode in ("plain", "streamed"):
                wall, cpu = [], []
                for index in range(calls + 1):
                    started, cpu_started = time.perf_counter(), time.process_time()
                    if mode == "streamed":
                        for _event in client.images.generate(**params, stream=True, partial_images=2):
                            pass
                    else:
                        client.images.generate(**params)
                    if index:  # the first call warms caches and the connection
                        wall.append((time.perf_counter() - started - latency) * 1000)
                        cpu.append((time.process_time() - cpu_started) * 1000)
                result[mode] = summary(wall) | {"process_cpu_ms_median": statistics.median(cpu)}
        finally:
            client.close()
        self.out(
            "stand-in + SDK alone, over the latency: plain "
            f"{fmt_ms(result['plain']['median'])} (CPU {fmt_ms(result['plain']['process_cpu_ms_median'])}), "
            f"streamed {fmt_ms(result['streamed']['median'])} "
            f"(CPU {fmt_ms(result['streamed']['process_cpu_ms_median'])})"
        )
        return result

    def submit_and_wait(self, client: Client, url: str, worker: Worker) -> dict[str, float]:
        latency = self.run_state.server.latency
        submit = time.time()
        response = client.post(url, data=FORM_POST, HTTP_HX_REQUEST="true")
        posted = time.time()
        if response.status_code != 200:
            raise BenchFailure(f"job_create answered {response.status_code}: {response.content[:300]!r}")
        job = Job.objects.filter(project=self.run_state.project).order_by("-id").first()
        seen = self.wait_for_jobs([job.pk], worker, timeout=self.opts["job_timeout"])[job.pk]
        job.refresh_from_db()
        if job.images.count() != job.n:
            raise BenchFailure(f"job {job.pk} succeeded with {job.images.count()} image(s), expected {job.n}")
        call = ApiCall.objects.filter(job=job, outcome=ApiCall.Outcome.OK).order_by("-id").first()
        finished = job.finished_at.timestamp()
        # The ApiCall row is built once the answer is in (workspace/worker.py _record_and_charge), so its
        # time is the call's end; the call began its latency earlier.
        call_end = call.created_at.timestamp()
        call_start = call_end - call.latency_ms / 1000
        return {
            "job_id": job.pk,
            "overhead_ms": (finished - submit - latency) * 1000,
            "overhead_polled_ms": (seen - submit - latency) * 1000,
            "post_ms": (posted - submit) * 1000,
            "to_row_ms": (job.created_at.timestamp() - submit) * 1000,
            "queue_ms": (job.started_at.timestamp() - job.created_at.timestamp()) * 1000,
            "claim_to_call_ms": (call_start - job.started_at.timestamp()) * 1000,
            "call_overhead_ms": call.latency_ms - latency * 1000,
            "store_ms": (finished - call_end) * 1000,
        }

    # -- 2. throughput

    def bench_throughput(self, run: Run, concurrency: int) -> None:
        count, latency = self.opts["jobs_throughput"], self.opts["latency_throughput"]
        ideal = math.ceil(count / concurrency) * latency
        processes = self.opts["worker_processes"]
        per_process = max(1, concurrency // processes)
        shape = "one worker" if processes == 1 else f"{processes} worker processes x {per_process} threads"
        self.out(f"\n## Throughput: {count} jobs at {latency} s through {shape}, C={concurrency}")
        workers = [self.start_worker(run, per_process) for _ in range(processes)]
        worker = workers[0]
        samples_connections: list[int] = []
        last_sample = [0.0]

        def sample_connections() -> None:
            if time.monotonic() - last_sample[0] < 0.5:
                return
            last_sample[0] = time.monotonic()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend'"
                )
                samples_connections.append(cursor.fetchone()[0])

        try:
            ready = self.warm_up(run, workers, concurrency if self.opts["warmup"] else 1)
            self.out(f"worker ready (first job after {ready:.1f} s); warm-up done")
            hwm_after_warmup = sum(proc_kib(w.pid, "VmHWM") or 0 for w in workers)
            hwm_reset = all([reset_peak_rss(w.pid) for w in workers])  # VmHWM covers the measured run only
            run.server.latency = latency
            run.server.latency_jitter = 0.0
            run.server.reset()
            profiler = self.start_profiler(run, worker)
            cpu_before = sum(process_cpu_seconds(w.pid) or 0 for w in workers)
            own_before = sum(os.times()[:2])
            standin_before = process_cpu_seconds(run.server.pid) or 0.0
            start = time.time()
            ids = [
                job_services.job_create(
                    project=run.project, author=run.user, prompt=PROMPT, params=SERVICE_PARAMS
                ).pk
                for _ in range(count)
            ]
            submitted = time.time()
            seen = self.wait_for_jobs(
                ids, workers, timeout=ideal * 4 + 60, interval=0.02, on_tick=sample_connections
            )
            cpu_after = sum(process_cpu_seconds(w.pid) or 0 for w in workers)
            own_cpu = sum(os.times()[:2]) - own_before
            standin_cpu = (process_cpu_seconds(run.server.pid) or standin_before) - standin_before
            threads = sum(int(proc_status(w.pid).get("Threads", "0").strip() or 0) for w in workers)
            hwm_kib = sum(proc_kib(w.pid, "VmHWM") or 0 for w in workers)
            rss_kib = sum(proc_kib(w.pid, "VmRSS") or 0 for w in workers)
            forked = [child for w in workers for child in children_of(w.pid)]
            children_hwm = sum(proc_kib(pid, "VmHWM") or 0 for pid in forked)
            self.stop_profiler(profiler)
        finally:
            run.server.latency = 0.0
            for one in workers:
                self.stop_worker(run, one)

        rows = list(
            Job.objects.filter(pk__in=ids).values("pk", "created_at", "started_at", "finished_at", "attempts")
        )
        calls = {
            c["job_id"]: c
            for c in ApiCall.objects.filter(job_id__in=ids, outcome=ApiCall.Outcome.OK).values(
                "job_id", "created_at", "latency_ms"
            )
        }
        last_finished = max(row["finished_at"].timestamp() for row in rows)
        actual = last_finished - start
        actual_polled = max(seen.values()) - start
        queue_ms = [(r["started_at"] - r["created_at"]).total_seconds() * 1000 for r in rows]
        call_overhead_ms = [calls[r["pk"]]["latency_ms"] - latency * 1000 for r in rows]
        store_ms = [
            (
                r["finished_at"].timestamp()
                - calls[r["pk"]]["created_at"].timestamp()
                - calls[r["pk"]]["latency_ms"] / 1000
            )
            * 1000
            for r in rows
        ]
        retried = sum(1 for r in rows if r["attempts"] > 1)
        # Per job, ms from the first submit: created, claimed, call sent, call answered, finished.
        timeline = sorted(
            [
                round((r["created_at"].timestamp() - start) * 1000, 1),
                round((r["started_at"].timestamp() - start) * 1000, 1),
                round((calls[r["pk"]]["created_at"].timestamp() - start) * 1000, 1),
                round(
                    (calls[r["pk"]]["created_at"].timestamp() - start) * 1000 + calls[r["pk"]]["latency_ms"],
                    1,
                ),
                round((r["finished_at"].timestamp() - start) * 1000, 1),
            ]
            for r in rows
        )
        waves = []
        by_start = sorted(timeline, key=lambda t: t[1])
        for first in range(0, len(by_start), concurrency):
            wave = by_start[first : first + concurrency]
            waves.append(
                {
                    "jobs": len(wave),
                    "claimed_ms": [min(t[1] for t in wave), max(t[1] for t in wave)],
                    "answered_ms": [min(t[3] for t in wave), max(t[3] for t in wave)],
                    "finished_ms": [min(t[4] for t in wave), max(t[4] for t in wave)],
                }
            )
        ratio = ideal / actual
        cpu = (cpu_after - cpu_before) if cpu_before is not None and cpu_after is not None else None
        result = {
            "jobs": count,
            "latency_s": latency,
            "concurrency": concurrency,
            "worker_processes": processes,
            "threads_per_process": per_process,
            "ideal_s": ideal,
            "actual_s": actual,
            "actual_polled_s": actual_polled,
            "submit_s": submitted - start,
            "ratio": ratio,
            "jobs_per_s": count / actual,
            "retried_jobs": retried,
            "queue_ms": summary(queue_ms),
            "call_overhead_ms": summary(call_overhead_ms),
            "store_ms": summary(store_ms),
            "worker_cpu_s": cpu,
            "worker_cpu_ms_per_job": cpu / count * 1000 if cpu is not None else None,
            "bench_process_cpu_ms_per_job": own_cpu / count * 1000,
            "standin_cpu_ms_per_job": standin_cpu / count * 1000,
            "worker_threads": threads,
            "worker_vmhwm_mb": hwm_kib / 1024 if hwm_kib else None,
            "worker_vmhwm_after_warmup_mb": hwm_after_warmup / 1024 if hwm_after_warmup else None,
            "worker_vmhwm_reset_after_warmup": hwm_reset,
            "worker_vmrss_end_mb": rss_kib / 1024 if rss_kib else None,
            "worker_vmrss_after_first_job_mb": self.rss_after_first_job_mb,
            "worker_children": forked,
            "worker_children_vmhwm_mb": children_hwm / 1024,
            "db_connections_peak": max(samples_connections) if samples_connections else None,
            "waves": waves,
            "timeline_ms": {
                "columns": ["created", "claimed", "call_sent", "call_answered", "finished"],
                "rows": timeline,
            },
        }
        self.details.setdefault("throughput", {})[str(concurrency)] = result
        self.out(
            f"  ideal {ideal:.1f} s, actual {actual:.2f} s (polled {actual_polled:.2f} s), "
            f"ratio {ratio:.3f}; "
            f"submit took {submitted - start:.2f} s; worker CPU {cpu or 0:.1f} s "
            f"({result['worker_cpu_ms_per_job'] or 0:.0f} ms/job; stand-in "
            f"{result['standin_cpu_ms_per_job']:.0f} ms/job, submitting and polling "
            f"{result['bench_process_cpu_ms_per_job']:.0f} ms/job); wait for a free slot p95 "
            f"{result['queue_ms']['p95']:.0f} ms; store p95 {result['store_ms']['p95']:.0f} ms; "
            f"call overhead p95 {result['call_overhead_ms']['p95']:.0f} ms; peak RSS "
            f"{result['worker_vmhwm_mb'] or 0:.0f} MB; DB connections peak {result['db_connections_peak']}"
        )
        target_note = "" if concurrency == 64 else "target stated for C=64"
        if self.opts["quick"]:
            target_note = "quick run: too few waves to be meaningful"
        self.metrics.append(
            Metric.at_least(
                f"Throughput C={concurrency}{'' if processes == 1 else f' ({shape})'}: ideal/actual "
                f"({count} jobs, {latency:g} s; "
                f"ideal {ideal:.0f} s, actual {actual:.1f} s)",
                ratio,
                TARGET_THROUGHPUT_RATIO,
                unit="ratio",
                note=target_note,
            )
        )
        lifetime = max(result["worker_vmhwm_after_warmup_mb"] or 0, result["worker_vmhwm_mb"] or 0)
        where = "main process (threads pool, no fork)" if not forked else f"main process; children {forked}"
        scope = (
            f"peak reset after the warm-up; lifetime peak incl. warm-up {lifetime:.0f} MB"
            if hwm_reset
            else "includes the warm-up"
        )
        self.metrics.append(
            Metric(
                f"Worker peak RSS (VmHWM), C={concurrency}{'' if processes == 1 else ', sum of processes'}",
                result["worker_vmhwm_mb"],
                "MB",
                note=f"{where}; {scope}",
            )
        )

    def start_profiler(self, run: Run, worker: Worker) -> tuple[subprocess.Popen, Path] | None:
        if not self.opts["profile_worker"]:
            return None
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            self.notes.append("--profile-worker: py-spy is not installed (pip install py-spy into the venv).")
            return None
        suffix = ".gil.speedscope.json" if self.opts["profile_gil"] else ".speedscope.json"
        output = worker.log_path.with_suffix(suffix)
        command = [py_spy, "record", "--pid", str(worker.pid), "--rate", "100", "--nonblocking"]
        command += ["--gil"] if self.opts["profile_gil"] else []
        command += ["--format", "speedscope", "-o", str(output)]
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # let it attach
        return process, output

    def stop_profiler(self, profiler: tuple[subprocess.Popen, Path] | None) -> None:
        if profiler is None:
            return
        process, output = profiler
        process.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl+C
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        self.notes.append(f"Worker profile (speedscope): {output.relative_to(settings.BASE_DIR)}")

    # -- 3. job-card poll

    def bench_polls(self, run: Run) -> None:
        polls = self.opts["polls"]
        self.out(f"\n## Job-card poll: {polls} requests per case through the test Client (in-process)")
        client = Client(HTTP_HOST="localhost")
        run.clients.append(client)
        client.force_login(run.user)
        finished = (
            Job.objects.filter(project=run.project, status=Job.Status.SUCCEEDED).order_by("-id").first()
        )
        if finished is None:  # the overhead phase was skipped: make one finished job by hand
            finished = self.fake_finished_job(run)
        now = timezone.now()
        running = self.hand_made_job(
            run,
            enqueued_at=now,
            status=Job.Status.RUNNING,
            claim_token=Job.new_claim_token(),
            lease_expires_at=now + timedelta(hours=1),  # nobody will sweep it during the bench
        )
        results = {}
        try:
            results["healthz"] = self.time_requests(client, reverse("healthz"), polls, expect=200)
            for label, job, expect in (("finished", finished, 286), ("running", running, 200)):
                url = reverse("job_card", args=[run.project.pk, job.pk])
                results[label] = self.time_requests(client, url, polls, expect=expect)
        finally:
            # Its "worker" gives up on it, through the same transition a real one would use.
            Job.objects.fail(
                running.pk, token=running.claim_token, code="bench", message="Bench poll job, ended."
            )
        self.details["poll"] = results
        for label in ("finished", "running"):
            r = results[label]
            self.out(
                f"  {label}: median {fmt_ms(r['ms']['median'])}, p95 {fmt_ms(r['ms']['p95'])} "
                f"(this thread's CPU: median {fmt_ms(r['cpu_ms']['median'])}), "
                f"{r['queries']} SQL queries, {r['bytes']} bytes"
            )
            self.metrics.append(
                Metric(
                    f"Job-card poll ({label} job), median",
                    r["ms"]["median"],
                    "ms",
                    note=f"{r['queries']} SQL queries per poll",
                )
            )
            self.metrics.append(
                Metric.at_most(
                    f"Job-card poll ({label} job), p95", r["ms"]["p95"], TARGET_POLL_P95_MS, unit="ms"
                )
            )
            self.metrics.append(Metric(f"SQL queries per poll ({label} job)", r["queries"], "queries"))
        self.out(
            "  baseline /healthz through the same client: median "
            f"{fmt_ms(results['healthz']['ms']['median'])}"
        )

    def time_requests(self, client: Client, url: str, count: int, *, expect: int) -> dict[str, Any]:
        for _ in range(20):
            client.get(url, HTTP_HX_REQUEST="true")
        timings, cpu = [], []
        for _ in range(count):
            started, cpu_started = time.perf_counter(), time.thread_time()
            response = client.get(url, HTTP_HX_REQUEST="true")
            timings.append(ms_since(started))
            cpu.append((time.thread_time() - cpu_started) * 1000)
            if response.status_code != expect:
                raise BenchFailure(f"GET {url} answered {response.status_code}, expected {expect}")
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url, HTTP_HX_REQUEST="true")
        return {
            "url": url,
            "status": response.status_code,
            "bytes": len(response.content),
            "ms": summary(timings),
            "cpu_ms": summary(cpu),
            "queries": len(captured.captured_queries),
            "sql": [q["sql"] for q in captured.captured_queries],
        }

    def hand_made_job(self, run: Run, **fields: Any) -> Job:
        """A job row written directly, not through the pipeline: started now, after one attempt."""
        return Job.objects.create(
            project=run.project,
            author=run.user,
            prompt=PROMPT,
            max_attempts=settings.JOB_MAX_ATTEMPTS,
            deadline_at=Job.new_deadline(),
            attempts=1,
            started_at=timezone.now(),
            **SERVICE_PARAMS,
            **fields,
        )

    def fake_finished_job(self, run: Run) -> Job:
        job = self.hand_made_job(run, status=Job.Status.SUCCEEDED, finished_at=timezone.now())
        Image.objects.create(
            job=job,
            project=run.project,
            index=0,
            file="bench/none.png",
            thumbnail="bench/none.thumb.webp",
            width=1024,
            height=1024,
            format="png",
            bytes=1,
            sha256="0" * 64,
        )
        return job

    # -- 4. thumbnails

    def bench_thumbnails(self) -> None:
        runs = self.opts["thumbnail_runs"]
        self.out(f"\n## Thumbnails: outputs.make_thumbnail, median of {runs} runs")
        results = {}
        for width, height in THUMBNAIL_SIZES:
            job = standin.ImageJob(
                model="gpt-image-2",
                prompt=PROMPT,
                n=1,
                width=width,
                height=height,
                quality="low",
                background="opaque",
                output_format="png",
                compression=100,
            )
            data = standin.encode_image(standin.render_image(job, 0), "png", 100)
            inspect_ms, thumb_ms, thumb_cpu_ms, sha_ms = [], [], [], []
            thumbnail = b""
            for _ in range(runs):
                started = time.perf_counter()
                image, _format = outputs.inspect(data)
                inspect_ms.append(ms_since(started))
                started, cpu_started = time.perf_counter(), time.thread_time()
                thumbnail = outputs.make_thumbnail(image)
                thumb_ms.append(ms_since(started))
                thumb_cpu_ms.append((time.thread_time() - cpu_started) * 1000)
                started = time.perf_counter()
                hashlib.sha256(data).hexdigest()
                sha_ms.append(ms_since(started))
            store_ms = self.time_store_outputs(data, runs)
            key = f"{width}x{height}"
            results[key] = {
                "png_bytes": len(data),
                "thumbnail_bytes": len(thumbnail),
                "make_thumbnail_ms": summary(thumb_ms),
                "make_thumbnail_cpu_ms": summary(thumb_cpu_ms),
                "inspect_ms": summary(inspect_ms),
                "sha256_ms": summary(sha_ms),
                "store_outputs_ms": summary(store_ms),
            }
            self.out(
                f"  {key}: make_thumbnail {fmt_ms(statistics.median(thumb_ms))} "
                f"(CPU {fmt_ms(statistics.median(thumb_cpu_ms))}); inspect (verify+decode) "
                f"{fmt_ms(statistics.median(inspect_ms))}; whole store_outputs "
                f"{fmt_ms(statistics.median(store_ms))}; PNG {len(data) // 1024} KiB"
            )
            self.metrics.append(
                Metric(
                    f"make_thumbnail {key}, median",
                    statistics.median(thumb_ms),
                    "ms",
                    note=f"thread CPU median {statistics.median(thumb_cpu_ms):.1f} ms",
                )
            )
        self.details["thumbnails"] = results

    def time_store_outputs(self, data: bytes, runs: int) -> list[float]:
        folder = Path(tempfile.mkdtemp(prefix="atelier-bench-store-"))
        timings = []
        try:
            with override_settings(MEDIA_ROOT=str(folder)):
                for attempt in range(runs):
                    started = time.perf_counter()
                    outputs.store_outputs(prefix=f"projects/0/jobs/0/a{attempt}-", images=[(0, data)])
                    timings.append(ms_since(started))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return timings

    # -- report

    def report(
        self, command: str, machine: dict[str, Any], started: float, error: BaseException | None
    ) -> None:
        table = metrics_table(self.metrics)
        lines = ["", "## Results", "", *table]
        notes = [f"- {m.name}: {m.note}" for m in self.metrics if m.note]
        notes += [f"- {note}" for note in self.notes]
        notes.append(
            "- Overhead = Job.finished_at - time just before the submit POST - stand-in latency (same "
            "clock); poll timings are in-process Django test Client time (server time plus the client's "
            "small overhead, see the /healthz baseline in the JSON). p95 is linearly interpolated."
        )
        notes.append(
            "- The stand-in runs in a process of its own (as the real API is a service of its own) and "
            "shares the machine's cores with the worker and this process; "
            f"DEBUG={'true (query logging on)' if settings.DEBUG else 'false, as in production'} "
            "in both processes."
        )
        if error is not None:
            notes.append(f"- INCOMPLETE: {error!r}")
        lines += ["", "Notes:", *notes]
        lines.append(f"\nTotal bench time {time.time() - started:.0f} s.")
        text = "\n".join(lines)
        self.out(text)
        payload = {
            "command": command,
            "label": self.opts["label"],
            "base_dir": str(settings.BASE_DIR),
            "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
            "duration_s": time.time() - started,
            "complete": error is None,
            "error": repr(error) if error is not None else None,
            "machine": machine,
            "options": {k: sorted(v) if isinstance(v, set) else v for k, v in self.opts.items()},
            "metrics": [m.__dict__ for m in self.metrics],
            "notes": notes,
            "details": self.details,
            "table_markdown": "\n".join(table),
        }
        path = write_results(self.opts["results_dir"], "bench", self.opts["label"], payload)
        self.out(f"JSON: {shown_path(path)}")
