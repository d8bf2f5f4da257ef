from django.db import transaction

from tests.conftest import job_params
from workspace import jobs
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
    jobs.job_run(job_id=job.pk)
    job.refresh_from_db()
    return job
