"""`make chaos`'s machinery: jobs submitted over HTTP to gunicorn while workers, beat, Redis and Postgres
are killed and restarted; then the proof that nothing was lost, wrong, charged twice or left reserved.

Used by `manage.py chaos` (a private Redis and a private Postgres cluster, hundreds of jobs) and by
tests/test_chaos.py (the test database, a private Redis, a few dozen jobs). The stand-in runs in this
process, so its record of every request (what it sent, whether the answer was written whole) is at hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.cookiejar
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.db import InterfaceError, OperationalError, connection

from standin import StandinServer

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "chaos-pass-for-a-throwaway-run"  # noqa: S105 - a throwaway user in a throwaway database
TRANSIENT_FAULTS = ("500", "503", "429:0.5", "drop")
KILL_KINDS = ("sigkill", "sigterm", "beat", "redis", "postgres")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_port(port: int, *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def on_db(work: Callable[[], object], *, timeout: float = 90) -> object:
    """Run a query, riding out a database restart (this process's connection breaks with it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return work()
        except (OperationalError, InterfaceError):
            if time.monotonic() > deadline:
                raise
            connection.close()
            time.sleep(0.5)


# --- Private services ----------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of our own on a free port, without persistence: a restart loses the queue."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(command, stdout=log, stderr=log)
        wait_port(self.port)

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class PrivatePostgres:
    """A throwaway cluster (initdb, pg_ctl) in a temporary folder on a free port: ours to restart, unlike
    the machine's shared server."""

    def __init__(self, folder: Path) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            raise RuntimeError("no initdb under /usr/lib/postgresql/*/bin")
        self.bin = found[-1].parent
        self.port = free_port()
        self.folder = folder
        self.data = folder / "pgdata"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run(prefix + list(command), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stderr or done.stdout}")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/chaos"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # initdb refuses root: the cluster is postgres's, in a folder it can reach
            self.folder.parent.chmod(0o755)
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"
        )
        self._ctl("start")
        self._run(
            str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "chaos"
        )

    def _ctl(self, action: str) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c max_connections=200"
        options += " -c fsync=off"  # a throwaway cluster: a crash of the machine may lose it
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "postgres.log"),
            "-o",
            options,
            "-w",
            "-m",
            "fast",
            action,
        )

    def restart(self) -> None:
        self._ctl("restart")

    def stop(self) -> None:
        if self.data.exists():
            with contextlib.suppress(RuntimeError):
                self._ctl("stop")


class _Browser:
    """A signed-in person's cookies and CSRF token, over urllib."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(
        self, path: str, fields: dict[str, str] | None = None, *, htmx: bool = False
    ) -> tuple[int, str]:
        data = None
        if fields is not None:
            token = next((cookie.value for cookie in self.jar if cookie.name == "csrftoken"), "")
            data = urllib.parse.urlencode(fields | {"csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(self.base + path, data=data)
        if htmx:
            request.add_header("HX-Request", "true")
        try:
            with self.opener.open(request, timeout=30) as response:
                response.read()
                return response.status, response.url
        except urllib.error.HTTPError as error:
            error.read()
            return error.code, path


# --- The run -------------------------------------------------------------------------------------------


@dataclass
class Kill:
    kind: str
    at: float  # time.time()
    pid: int | None = None
    note: str = ""


@dataclass
class Report:
    jobs: int = 0
    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    active: int = 0
    standin_calls: int = 0
    standin_billed: int = 0
    api_calls: int = 0
    ledger_entries: int = 0
    duplicates: int = 0
    unrecorded_killed: int = 0
    crashes: list[str] = field(default_factory=list)
    faults: int = 0
    kills: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [
            ("jobs (submitted / in the database)", f"{self.submitted} / {self.jobs}"),
            ("succeeded", self.succeeded),
            ("failed (with a reason)", self.failed),
            ("still active", self.active),
            ("stand-in calls (answered whole with images)", f"{self.standin_calls} ({self.standin_billed})"),
            ("ApiCall rows", self.api_calls),
            ("ledger entries", self.ledger_entries),
            ("duplicates (a job paid for two answers)", self.duplicates),
            ("billed calls cut off by a SIGKILL", self.unrecorded_killed),
            ("transient faults injected", self.faults),
            ("processes that died by themselves (restarted)", "; ".join(self.crashes) or "none"),
            ("kills", ", ".join(f"{kind} {count}" for kind, count in sorted(self.kills.items())) or "none"),
            ("duration", f"{self.seconds:.0f} s"),
            ("violations", len(self.violations)),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


class Chaos:
    """Start gunicorn, workers, beat and the stand-in; submit jobs over HTTP while killing things; check."""

    def __init__(
        self,
        *,
        folder: Path,
        database_url: str,
        redis: PrivateRedis,
        postgres: PrivatePostgres | None,
        project_id: int,
        username: str,
        jobs: int,
        kills: list[str],
        workers: int = 2,
        concurrency: int = 8,
        latency: float = 1.25,
        jitter: float = 0.75,
        fault_every: float = 3.0,
        timeout: float = 900,
        log: Callable[[str], None] = print,
    ) -> None:
        self.folder, self.database_url, self.redis, self.postgres = folder, database_url, redis, postgres
        self.project_id, self.username = project_id, username
        self.job_count, self.kill_plan = jobs, kills
        self.worker_count, self.concurrency = workers, concurrency
        self.fault_every, self.timeout, self.log = fault_every, timeout, log
        self.standin = StandinServer(latency=latency, latency_jitter=jitter)
        self.media = folder / "media"
        self.web_port = free_port()
        self.workers: list[subprocess.Popen | None] = [None] * workers
        self.started_at: list[float] = [0.0] * workers
        self.beat: subprocess.Popen | None = None
        self.gunicorn: subprocess.Popen | None = None
        self.spawned: list[subprocess.Popen] = []
        self.kills: list[Kill] = []
        self.sigterm_exits: list[tuple[int, int | None, float]] = []  # pid, exit code, seconds to exit
        self.prompts: list[str] = []
        self.submit_errors: Counter = Counter()
        self.faults = 0
        self.crashes: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- processes

    @staticmethod
    def migrate_env(*, database_url: str) -> dict[str, str]:
        return os.environ | {
            "DATABASE_URL": database_url,
            "DEBUG": "false",
            "OPENAI_API_KEY": "sk-chaos",
            "SECRET_KEY": "chaos-only-secret-key-that-is-long-enough-for-django-checks",
        }

    def env(self, role: str) -> dict[str, str]:
        return os.environ | {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url,
            "OPENAI_BASE_URL": self.standin.base_url,
            "OPENAI_API_KEY": "sk-chaos-not-a-real-key",
            "DEMO_MODE": "false",
            "DEBUG": "false",
            "SECRET_KEY": "chaos-only-secret-key-that-is-long-enough-for-django-checks",
            "SECURE_SSL_REDIRECT": "false",
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "STATIC_MANIFEST": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "MEDIA_ROOT": str(self.media),
            "VAR_DIR": str(self.folder / f"var-{role}"),
            "CONN_MAX_AGE": "0",
            # Killed workers' jobs come back within seconds; a lease outlives a Postgres restart.
            "JOB_LEASE_SECONDS": "8",
            "JOB_LEASE_RENEW_SECONDS": "1",
            "JOB_SWEEP_SECONDS": "1",
            "JOB_REQUEUE_AFTER_SECONDS": "4",
            "JOB_RETRY_BASE_SECONDS": "0.2",
            "JOB_RETRY_MAX_SECONDS": "2",
            "OPENAI_CALL_TIMEOUT": "30",
        }

    def _spawn(self, name: str, command: list[str], role: str) -> subprocess.Popen:
        (self.folder / f"var-{role}").mkdir(exist_ok=True)
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(command, cwd=ROOT, env=self.env(role), stdout=log, stderr=log)
        self.spawned.append(process)
        return process

    def start_worker(self, slot: int) -> None:
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "threads"]
        command += ["--concurrency", str(self.concurrency), "-n", f"chaos{slot}-{time.monotonic_ns()}@%h"]
        command += ["--without-gossip", "--without-mingle", "--loglevel", "INFO"]
        log = self.folder / f"worker{slot}.log"
        if log.exists():  # a fresh log: "ready." in it is this process's (the old one is kept aside)
            log.rename(self.folder / f"worker{slot}-{time.monotonic_ns()}.log")
        self.workers[slot] = self._spawn(f"worker{slot}", command, "worker")
        self.started_at[slot] = time.monotonic()

    def start_beat(self) -> None:
        command = [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO"]
        self.beat = self._spawn("beat", [*command, "--schedule", str(self.folder / "beat-schedule")], "beat")

    def start_web(self) -> None:
        command = [sys.executable, "-m", "gunicorn", "config.wsgi", "--config", "config/gunicorn.conf.py"]
        command += ["-b", f"127.0.0.1:{self.web_port}"]
        command += ["-w", "2", "--threads", "4", "--timeout", "60"]
        self.gunicorn = self._spawn("gunicorn", command, "web")
        wait_port(self.web_port, timeout=60)

    def stop_all(self) -> None:
        self._stop.set()
        for process in self.spawned:
            if process.poll() is None:
                process.terminate()
        for process in self.spawned:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.standin.stop()

    # -- chaos

    def _supervise(self) -> None:
        """Restart a worker or beat that died by itself, as compose's `restart: unless-stopped` would,
        and count it: a finding, though not a broken promise about jobs."""
        while not self._stop.wait(0.5):
            with self._lock:
                for slot, process in enumerate(self.workers):
                    if process is not None and process.poll() is not None:
                        self.crashes.append(f"worker {process.pid} exited with {process.returncode}")
                        self.log(
                            f"  {time.time() - self.started:5.1f} s  worker {process.pid} died by itself"
                        )
                        self.start_worker(slot)
                if self.beat is not None and self.beat.poll() is not None:
                    self.crashes.append(f"beat {self.beat.pid} exited with {self.beat.returncode}")
                    self.start_beat()

    def _ready_worker(self) -> int:
        """A live worker that has finished starting (a SIGTERM before Celery's handlers are installed
        kills it outright), waiting for one if need be."""
        deadline = time.monotonic() + 60
        while True:
            ready = [
                slot
                for slot, process in enumerate(self.workers)
                if process.poll() is None
                and "ready." in (self.folder / f"worker{slot}.log").read_text(errors="replace")
                and time.monotonic() - self.started_at[slot] > 3
            ]
            if ready or time.monotonic() > deadline:
                return random.choice(ready or [0])
            time.sleep(0.2)

    def _kill(self, kind: str) -> None:
        with self._lock:
            self._kill_locked(kind)

    def _kill_locked(self, kind: str) -> None:
        now = time.time()
        if kind in ("sigkill", "sigterm"):
            slot = self._ready_worker()
            process = self.workers[slot]
            now = time.time()
            if kind == "sigkill":
                process.kill()
                process.wait()
                # Timed when the worker is gone, not before choosing it: waiting for a ready worker can
                # take seconds on a loaded machine, and an answer written until it died is the kill's doing.
                self.kills.append(Kill(kind, time.time(), process.pid))
                self.start_worker(slot)
            else:
                process.terminate()
                self.kills.append(Kill(kind, now, process.pid))
                try:
                    code = process.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    code = None
                self.sigterm_exits.append((process.pid, code, time.time() - now))
                self.start_worker(slot)
        elif kind == "beat":
            self.beat.kill()
            self.beat.wait()
            self.kills.append(Kill(kind, now, self.beat.pid))
            time.sleep(1)
            self.start_beat()
        elif kind == "redis":
            self.redis.restart()
            self.kills.append(Kill(kind, now))
        elif kind == "postgres":
            if self.postgres is None:
                raise RuntimeError("a Postgres restart needs the private cluster")
            self.postgres.restart()
            self.kills.append(Kill(kind, now))
        self.log(f"  {time.time() - self.started:5.1f} s  {kind}")

    def _chaos(self) -> None:
        try:
            self._kill_on_schedule()
        finally:
            connection.close()

    def _kill_on_schedule(self) -> None:
        """Each planned kill when its share of the jobs has finished (so all happen while jobs run)."""
        from workspace.models import Job

        for number, kind in enumerate(self.kill_plan, start=1):
            target = self.job_count * number // (len(self.kill_plan) + 1)
            while not self._stop.is_set():
                finished = on_db(
                    lambda: (
                        Job.objects.filter(project_id=self.project_id)
                        .exclude(status__in=Job.ACTIVE_STATUSES)
                        .count()
                    )
                )
                if finished >= target:
                    break
                time.sleep(0.3)
            if self._stop.is_set():
                return
            self._kill(kind)

    def _faults(self) -> None:
        while not self._stop.wait(self.fault_every):
            self.standin.inject(random.choice(TRANSIENT_FAULTS))
            self.faults += 1

    # -- submitting over HTTP (the standard library's client: one cookie jar per submitter)

    def _session(self) -> _Browser:
        browser = _Browser(f"http://127.0.0.1:{self.web_port}")
        while not self._stop.is_set():
            try:
                browser.request("/accounts/login/")
                fields = {"username": self.username, "password": PASSWORD}
                status, final_url = browser.request("/accounts/login/", fields)
                if status == 200 and "/accounts/login/" not in final_url:
                    return browser
            except OSError:
                pass
            time.sleep(0.5)
        return browser

    def _submit(self, browser: _Browser, prompt: str) -> None:
        from workspace.models import Job

        form = {
            "prompt": prompt,
            "model": "gpt-image-2",
            "size": "square",
            "quality": "low",
            "output_format": "png",
            "output_compression": "100",
            "background": "auto",
            "moderation": "auto",
            "complexity": "",
            "n": "2" if int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 4 == 0 else "1",
        }
        while not self._stop.is_set():
            try:
                status, _ = browser.request(f"/p/{self.project_id}/jobs", form, htmx=True)
            except OSError as error:  # urllib's HTTPError is answered below; this is a broken connection
                self.submit_errors[type(error).__name__] += 1
                # Did it land before the connection broke? The prompt is unique: ask the database.
                if on_db(lambda: Job.objects.filter(project_id=self.project_id, prompt=prompt).exists()):
                    return
            else:
                if status == 200:
                    return
                self.submit_errors[str(status)] += 1  # 503 "busy": the job was not created
            time.sleep(0.5)

    def _submitter(self, prompts: list[str], pace: float) -> None:
        try:
            browser = self._session()
            for prompt in prompts:
                self._submit(browser, prompt)
                time.sleep(pace)
        finally:
            connection.close()  # this thread's own connection, so the database can be dropped after

    # -- the run

    def run(self) -> Report:
        self.started = time.time()
        self.media.mkdir(parents=True, exist_ok=True)
        self.standin.start()
        self.start_web()
        for slot in range(self.worker_count):
            self.start_worker(slot)
        self.start_beat()
        tag = f"{int(self.started)}"
        self.prompts = [
            f"Chaos {tag} job {number}: a lemon, a pear and a fig" for number in range(self.job_count)
        ]
        threads = [
            threading.Thread(target=self._supervise, daemon=True),
            threading.Thread(target=self._chaos, daemon=True),
            threading.Thread(target=self._faults, daemon=True),
        ]
        submitters = 4
        pace = 0.02 if self.job_count < 100 else 0.1
        threads += [
            threading.Thread(target=self._submitter, args=(self.prompts[n::submitters], pace), daemon=True)
            for n in range(submitters)
        ]
        for thread in threads:
            thread.start()
        try:
            self._wait()
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=150)
            self.seconds = time.time() - self.started
            report = self.check()
            self.stop_all()
        return report

    def _wait(self) -> None:
        from workspace.models import Job

        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            counts = on_db(
                lambda: dict(
                    Job.objects.filter(project_id=self.project_id)
                    .values_list("status")
                    .annotate(n=__import__("django.db.models", fromlist=["Count"]).Count("id"))
                )
            )
            active = sum(counts.get(status, 0) for status in Job.ACTIVE_STATUSES)
            done = sum(counts.values()) - active
            chaos_done = len(self.kills) >= len(self.kill_plan)
            if done >= self.job_count and chaos_done:
                return
            time.sleep(1)
        self.log(f"timed out after {self.timeout} s")

    # -- the proof

    def check(self) -> Report:
        from workspace.models import ApiCall, Image, Job, LedgerEntry

        report = Report(submitted=len(self.prompts), faults=self.faults, seconds=self.seconds)
        report.crashes = list(self.crashes)
        report.kills = Counter(kill.kind for kill in self.kills)
        bad = report.violations.append
        jobs = {
            job.prompt: job for job in on_db(lambda: list(Job.objects.filter(project_id=self.project_id)))
        }
        report.jobs = len(jobs)
        missing = [prompt for prompt in self.prompts if prompt not in jobs]
        if missing:
            bad(f"lost: {len(missing)} submitted jobs are not in the database")
        if len(jobs) != len(set(jobs)) or len(jobs) > len(self.prompts):
            bad("a submission made two jobs")
        requests = list(self.standin.requests)
        report.standin_calls = len(requests)
        by_prompt: dict[str, list] = defaultdict(list)
        for request in requests:
            by_prompt[request.fields.get("prompt", "")].append(request)
        calls = on_db(lambda: list(ApiCall.objects.filter(job__project_id=self.project_id)))
        report.api_calls = len(calls)
        entries = on_db(lambda: list(LedgerEntry.objects.filter(project_id=self.project_id)))
        report.ledger_entries = len(entries)
        images = defaultdict(list)
        for image in on_db(
            lambda: list(Image.objects.filter(project_id=self.project_id).order_by("job_id", "index"))
        ):
            images[image.job_id].append(image)
        calls_by_job = defaultdict(list)
        for call in calls:
            calls_by_job[call.job_id].append(call)
        entries_by_job = Counter(entry.job_id for entry in entries)

        for job in jobs.values():
            if job.status in Job.ACTIVE_STATUSES:
                report.active += 1
                bad(f"job {job.pk} is still {job.status}")
                continue
            if job.reserved_cost != 0:
                bad(f"job {job.pk} ({job.status}) still holds {job.reserved_cost} reserved")
            ok_calls = [call for call in calls_by_job[job.pk] if call.outcome == ApiCall.Outcome.OK]
            if len(ok_calls) > 1:
                report.duplicates += 1
                attempts = [call.attempt for call in ok_calls]
                bad(f"job {job.pk} paid for {len(ok_calls)} answers (attempts {attempts})")
            charged = sum(1 for call in calls_by_job[job.pk] if call.usage)
            if entries_by_job[job.pk] != charged:
                bad(f"job {job.pk}: {entries_by_job[job.pk]} ledger entries for {charged} calls with usage")
            if job.status == Job.Status.SUCCEEDED:
                report.succeeded += 1
                stored = [image.sha256 for image in images[job.pk]]
                sent = [request.sent_sha256 for request in by_prompt[job.prompt] if request.completed]
                if len(stored) != job.n or stored not in sent:
                    bad(f"job {job.pk} succeeded with images the stand-in did not send it")
                for image in images[job.pk]:
                    path = self.media / image.file.name
                    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != image.sha256:
                        bad(f"job {job.pk}: stored file {image.file.name} does not match its row")
            elif job.status == Job.Status.FAILED:
                report.failed += 1
                if not job.error_message:
                    bad(f"job {job.pk} failed without a reason")
            else:
                bad(f"job {job.pk} ended {job.status}; nobody canceled anything")

        if len({entry.api_call_id for entry in entries}) != len(entries):
            bad("a call has two ledger entries")
        billed = [r for r in requests if r.completed and r.status == 200 and r.fields.get("prompt") in jobs]
        report.standin_billed = len(billed)
        recorded = {call.request_id for call in calls}
        sent_ids = {request.request_id for request in requests}
        for call in calls:
            if call.request_id and call.http_status == 200 and call.request_id not in sent_ids:
                bad(f"ApiCall {call.pk} names a request the stand-in never answered")
        sigkills = [kill.at for kill in self.kills if kill.kind == "sigkill"]
        for request in billed:
            if request.request_id in recorded:
                continue
            # An answer written just before a SIGKILL dies with the worker, unread or unrecorded. One
            # being written as it died still "completes" a moment later: loopback takes the last bytes
            # into the closed socket's buffer before answering with a reset.
            if any(-1 < at - request.completed_at < 10 for at in sigkills):
                report.unrecorded_killed += 1
            else:
                bad(f"billed call {request.request_id} ({request.fields.get('prompt')!r}) is not recorded")
        for pid, code, seconds in self.sigterm_exits:
            if code != 0:
                bad(f"the SIGTERMed worker {pid} exited with {code} after {seconds:.0f} s")
        if len(self.kills) < len(self.kill_plan):
            bad(f"only {len(self.kills)} of {len(self.kill_plan)} planned kills happened")
        return report


def ensure_user_and_project(*, username: str) -> int:
    """The run's author and project (an owner), fresh for each run."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    from workspace.models import Membership, Project, Role

    user, _ = get_user_model().objects.get_or_create(username=username)
    # A hasher every process knows, whatever this one's settings (the tests' allow only a fast MD5).
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt())
    user.save()
    project = Project.objects.create(name=f"Chaos {time.strftime('%H:%M:%S')}", created_by=user)
    Membership.objects.create(project=project, user=user, role=Role.OWNER)
    return project.pk


def parse_kills(text: str) -> list[str]:
    kinds = [kind for kind in re.split(r"[,\s]+", text.strip()) if kind]
    unknown = sorted(set(kinds) - set(KILL_KINDS))
    if unknown:
        raise ValueError(f"unknown kill kinds {unknown}; choose from {', '.join(KILL_KINDS)}")
    return kinds
