"""``manage.py bench_campaign``: the figures issue 14 asks for about catalog batches.

1. validate + queue: a 2,000-row CSV checked (batches.batch_draft: parse, every row's prompt,
   references, duplicates, estimates) and queued (batches.batch_confirm: one reservation, bulk_create),
   timed end to end in this process, median of ``--runs`` runs (each run's campaign is deleted after);
2. the campaign page (``GET /p/<id>/campaigns/<id>/``, through Django's test Client signed in as the
   owner: middleware, session, view, SQL, template) for a 2,000-job batch at 0 %, 50 % and 100 %
   progress (jobs moved to succeeded with an image row each), median and p95 of ``--page-runs``.

No worker runs: nothing claims the jobs. Targets: 5 s and 50 ms. Prints one line per figure.
"""

import time
import uuid

from celery import current_app
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.test import Client
from django.utils import timezone

from devtools.benchkit import ms_since, summary
from workspace import batches, kits
from workspace.campaign_models import Campaign
from workspace.models import Image, Job, Membership, Project, Role

ROWS = 2_000
TARGET_QUEUE_MS = 5_000.0
TARGET_PAGE_MS = 50.0


def _csv(rows: int) -> bytes:
    lines = ["sku,product,season", *(f"SKU-{i:05d},product number {i},winter" for i in range(rows))]
    return ("\n".join(lines) + "\n").encode("utf-8")


class Command(BaseCommand):
    help = "Time a 2,000-row catalog batch (validate + queue) and its campaign page at 0/50/100 %."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=5, help="validate+queue runs (median)")
        parser.add_argument("--page-runs", type=int, default=30, help="page renders per progress point")
        parser.add_argument("--rows", type=int, default=ROWS)

    def handle(self, *args, runs: int, page_runs: int, rows: int, **options) -> None:
        owner, project, version = self._setup()
        data = _csv(rows)
        timings = []
        campaign = None
        for run in range(runs):
            started = time.perf_counter()
            campaign, _ = batches.batch_draft(
                project=project,
                author=owner,
                name=f"Bench {run}",
                source_name="bench.csv",
                template_version=version,
                brand_kit_version=None,
                data=data,
                base={"quality": "low"},
                key_column="sku",
            )
            batches.batch_confirm(campaign=campaign, author=owner)
            timings.append(ms_since(started))
            if run < runs - 1:
                self._drop(campaign)
        queued = summary(timings)
        verdict = "ok" if queued["median"] <= TARGET_QUEUE_MS else "OVER TARGET"
        self.stdout.write(
            f"campaign validate+queue {rows} rows: median {queued['median']:.0f} ms, "
            f"min {queued['min']:.0f} ms over {runs} runs (target {TARGET_QUEUE_MS:.0f} ms: {verdict})"
        )
        client = Client()
        client.force_login(owner)
        url = campaign.get_absolute_url()
        jobs = list(
            Job.objects.filter(campaign=campaign).order_by("campaign_row").values_list("pk", flat=True)
        )
        done = 0
        for percent in (0, 50, 100):
            target = len(jobs) * percent // 100
            self._succeed(jobs[done:target], project=project, owner=owner)
            done = target
            for _ in range(3):  # warm-up
                client.get(url)
            renders = []
            for _ in range(page_runs):
                started = time.perf_counter()
                response = client.get(url)
                renders.append(ms_since(started))
                assert response.status_code == 200, response.status_code
            page = summary(renders)
            verdict = "ok" if page["median"] <= TARGET_PAGE_MS else "OVER TARGET"
            self.stdout.write(
                f"campaign page at {percent:3d}% of {len(jobs)} jobs: median {page['median']:.1f} ms, "
                f"p95 {page['p95']:.1f} ms over {page_runs} renders "
                f"(target {TARGET_PAGE_MS:.0f} ms: {verdict})"
            )
        self._drop(campaign)
        # Each queued batch woke workers (queue.WAKE_MESSAGES messages); no worker runs during this bench,
        # so those messages would wait in the broker and be counted by the next bench's delivery phase.
        current_app.control.purge()

    def _setup(self):
        user_model = get_user_model()
        owner, _ = user_model.objects.get_or_create(username="campaign-bench")
        project, made = Project.objects.get_or_create(name="Campaign bench", created_by=owner)
        if made:
            Membership.objects.create(project=project, user=owner, role=Role.OWNER)
        for old in Campaign.objects.filter(project=project):
            self._drop(old)
        version = kits.template_save(
            project=project,
            author=owner,
            template=None,
            name=f"Bench {uuid.uuid4().hex[:6]}",
            text="{sku}: a {product} on a white background, {season} light",
        )
        return owner, project, version

    def _succeed(self, job_ids: list[int], *, project, owner) -> None:
        """Move jobs to succeeded with one image row each (file names only: the page never reads them)."""
        if not job_ids:
            return
        now = timezone.now()
        with transaction.atomic():
            # A bench shortcut around the worker's transitions: no worker runs, the rows are throwaway.
            Job.objects.filter(pk__in=job_ids).update(
                status=Job.Status.SUCCEEDED, reserved_cost=0, finished_at=now
            )
            Image.objects.bulk_create(
                [
                    Image(
                        job_id=pk,
                        project=project,
                        index=0,
                        file=f"bench/{pk}.png",
                        thumbnail=f"bench/{pk}.webp",
                        width=1024,
                        height=1024,
                        format="png",
                        bytes=1,
                        sha256="0" * 64,
                        created_at=now,
                        author=owner,
                        model="gpt-image-2",
                        kind=Job.Kind.GENERATE,
                    )
                    for pk in job_ids
                ]
            )

    def _drop(self, campaign: Campaign) -> None:
        with transaction.atomic():
            Image.objects.filter(job__campaign=campaign).delete()
            Job.objects.filter(campaign=campaign).delete()
            campaign.delete()
