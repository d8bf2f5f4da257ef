"""Prompt history: every prompt submitted, identical ones grouped, newest use first."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, QuerySet

from workspace.models import Image, Job

GROUPS_SHOWN = 60


@dataclass
class PromptGroup:
    prompt: str
    runs: int
    last_used: datetime
    latest: Job
    thumbnails: list[Image]


def prompt_groups(*, jobs: QuerySet, query: str = "") -> list[PromptGroup]:
    """Three queries: the groups, their latest jobs, and those jobs' first images."""
    if query:
        for word in query.split():
            jobs = jobs.filter(prompt__icontains=word)
    rows = list(
        jobs.values("prompt")
        .annotate(runs=Count("id"), last_used=Max("created_at"), latest_id=Max("id"))
        .order_by("-last_used")[:GROUPS_SHOWN]
    )
    latest = Job.objects.select_related("project").in_bulk([row["latest_id"] for row in rows])
    thumbnails: dict[int, list[Image]] = {}
    for image in Image.objects.visible().filter(job_id__in=latest).order_by("job_id", "index"):
        thumbnails.setdefault(image.job_id, []).append(image)
    return [
        PromptGroup(
            prompt=row["prompt"],
            runs=row["runs"],
            last_used=row["last_used"],
            latest=latest[row["latest_id"]],
            thumbnails=thumbnails.get(row["latest_id"], [])[:4],
        )
        for row in rows
    ]
