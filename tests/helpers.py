import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction

from config.celery import app
from tests.factories import JOB_PARAMS
from workspace import worker
from workspace.models import Job


def create_job(*, project, author, prompt: str = "A lemon on a blue table", **overrides) -> Job:
    """A queued job as the web request makes it, without sending the message (tests run it directly)."""
    with transaction.atomic():
        return Job.objects.create(
            project=project,
            author=author,
            prompt=prompt,
            deadline_at=Job.new_deadline(),
            max_attempts=5,
            **(JOB_PARAMS | overrides),
        )


def run(job: Job) -> Job:
    worker.job_run(job_id=job.pk)
    job.refresh_from_db()
    return job


ROOT = Path(__file__).resolve().parent.parent

SQLITE_PREAMBLE = """
import json
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
"""


def clean_env(**overrides: str) -> dict[str, str]:
    """The machine's PATH and home only: what a fresh shell on a laptop would have, plus the overrides."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "VIRTUAL_ENV")}
    return keep | overrides


def run_on_sqlite(script: str, tmp_path: Path):
    """Run the script on the embedded defaults (a fresh, migrated SQLite file under tmp_path) in a
    process of its own, and return the JSON it prints last."""
    env = clean_env(DEBUG="true", VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run(
        [sys.executable, "-c", SQLITE_PREAMBLE + script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def ladder(*, project, author, steps: int) -> list:
    """`steps` images in rows only (no files), each an edit of the two before it: image k is reached
    from the last by paths of every length between (n-1-k)/2 and n-1-k, the worst case for lineage."""
    from django.utils import timezone

    from workspace.models import Image, JobInput

    now = timezone.now()
    made = Job.objects.bulk_create(
        [
            Job(
                project=project,
                author=author,
                prompt=f"step {step}",
                kind="edit" if step else "generate",
                deadline_at=now,
                max_attempts=1,
                status=Job.Status.SUCCEEDED,
                **JOB_PARAMS,
            )
            for step in range(steps)
        ]
    )
    images = Image.objects.bulk_create(
        [
            Image(job=job, project=project, index=0, width=1, height=1, format="png", bytes=1, sha256="0")
            for job in made
        ]
    )
    JobInput.objects.bulk_create(
        [
            JobInput(job=made[step], position=position, image=images[step - 1 - position])
            for step in range(1, steps)
            for position in range(min(2, step))
        ]
    )
    return images


# --- Real Celery processes (worker and beat subprocesses) --------------------------------------------


def purge_queue() -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(settings.CELERY_TASK_DEFAULT_QUEUE)
        conn.default_channel.queue_purge(settings.CELERY_CHECKS_QUEUE)


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def status_of(job_id: int) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job_id)


class Processes:
    """Worker and beat subprocesses sharing the test database, the broker and the stand-in."""

    def __init__(self, tmp_path: Path, standin) -> None:
        db = connection.settings_dict
        self.env = os.environ | {
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "OPENAI_BASE_URL": standin.base_url,
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "VAR_DIR": str(tmp_path / "var"),
            "JOB_LEASE_SECONDS": "3",
            "JOB_LEASE_RENEW_SECONDS": "1",
            "JOB_SWEEP_SECONDS": "1",
            "JOB_REQUEUE_AFTER_SECONDS": "3",
            "JOB_RETRY_BASE_SECONDS": "0.1",
            "CONN_MAX_AGE": "0",
        }
        self.tmp_path = tmp_path
        self.running: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"{args[0]}-{uuid.uuid4().hex[:6]}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=log,
        )
        self.running.append(process)
        return process

    def worker(self, name: str) -> subprocess.Popen:
        return self.start(
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "4",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        )

    def beat(self) -> subprocess.Popen:
        return self.start("beat", "--schedule", str(self.tmp_path / "beat-schedule"), "--loglevel", "INFO")

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
        for process in self.running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def last_image_call(standin):
    """The stand-in's last Images API request: each stored output is followed by its credential check."""
    return [record for record in standin.requests if record.path.startswith("/v1/images/")][-1]
