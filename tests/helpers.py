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
