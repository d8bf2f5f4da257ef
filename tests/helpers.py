import json
import os
import subprocess
import sys
from pathlib import Path

from django.db import transaction

from tests.conftest import job_params
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
            **job_params(**overrides),
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
                **job_params(),
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
