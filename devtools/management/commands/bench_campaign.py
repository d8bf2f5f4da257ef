"""``manage.py bench_campaign``: the figures issue 14 asks for about catalog batches.

1. validate + queue: a 2,000-row CSV checked (batches.batch_draft: parse, every row's prompt,
   references, duplicates, estimates) and queued (batches.batch_confirm: one reservation, bulk_create),
   timed end to end in this process, median of ``--runs`` runs (each run's campaign is deleted after);
2. the campaign page (``GET /p/<id>/campaigns/<id>/``, through Django's test Client signed in as the
   owner: middleware, session, view, SQL, template) for a 2,000-job batch at 0 %, 50 % and 100 %
   progress (jobs moved to succeeded with an image row each), median and p95 of ``--page-runs``;
3. the worker's memory while it runs a ``--rows`` campaign: a real Celery worker (threads pool, the
   production concurrency unless ``--concurrency``) on a queue of its own, calling the stand-in (a
   process of its own, ``--latency`` s a call) over HTTP and storing every image in a temporary folder.
   Its RSS (VmRSS from /proc, its children's added if it has any) is sampled every 0.5 s with the number
   of jobs ended: start (after a warm-up campaign of 2 x concurrency rows), peak, end, and the growth
   per 1,000 jobs (the least-squares slope of RSS over jobs ended, from 10 % of the campaign on).

No worker runs during 1 and 2: nothing claims those jobs. Targets: 5 s, 50 ms, and
``TARGET_GROWTH_MB`` MB per 1,000 jobs. Prints one line per figure and writes them all to
``bench/results/campaign-<stamp>.json``. ``--quick`` is a smoke run (200 rows, fewer repeats).
"""

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.test import Client
from django.utils import timezone

from devtools.benchkit import (
    BenchFailure,
    CpuMeter,
    StandinProcess,
    Worker,
    add_run_arguments,
    command_line,
    growth_per,
    machine_facts,
    ms_since,
    remove_queue,
    route_tasks_to,
    rss_kib_tree,
    shown_path,
    start_worker,
    summary,
    worker_env,
    write_results,
)
from workspace import batches, kits
from workspace.campaign_models import Campaign
from workspace.models import ApiCall, Image, Job, LedgerEntry, Membership, Project, Role

ROWS = 2_000
TARGET_QUEUE_MS = 5_000.0
TARGET_PAGE_MS = 50.0
# "Worker memory stays flat" (issue 14): what a worker may keep per 1,000 jobs it has run.
TARGET_GROWTH_MB = 5.0
SAMPLE_SECONDS = 0.5


def _csv(rows: int) -> bytes:
    lines = ["sku,product,season", *(f"SKU-{i:05d},product number {i},winter" for i in range(rows))]
    return ("\n".join(lines) + "\n").encode("utf-8")


class Command(BaseCommand):
    help = (
        "Time a 2,000-row catalog batch (validate + queue) and its campaign page at 0/50/100 %, then run "
        "one through a real worker, sampling its memory."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=None, help="validate+queue runs (median; 5)")
        parser.add_argument(
            "--page-runs", type=int, default=None, help="page renders per progress point (30)"
        )
        parser.add_argument("--rows", type=int, default=None, help=f"rows of each campaign ({ROWS})")
        parser.add_argument("--quick", action="store_true", help="smoke run: 200 rows, 2 runs, 10 renders")
        parser.add_argument(
            "--concurrency", type=int, default=None, help="the memory run's worker (WORKER_CONCURRENCY's)"
        )
        parser.add_argument("--latency", type=float, default=0.2, help="stand-in seconds a call (0.2)")
        parser.add_argument("--skip-worker", action="store_true", help="no memory run (no worker)")
        parser.add_argument("--job-timeout", type=float, default=600.0, help="seconds for the memory run")
        add_run_arguments(parser)

    def handle(self, *args, **options) -> None:
        quick = options["quick"]
        rows = options["rows"] or (200 if quick else ROWS)
        runs = options["runs"] or (2 if quick else 5)
        page_runs = options["page_runs"] or (10 if quick else 30)
        started_at = time.time()
        self.results: dict[str, Any] = {
            "command": command_line(),
            "machine": machine_facts(),
            "options": {"rows": rows, "runs": runs, "page_runs": page_runs, "quick": quick},
        }
        self._measure(options, rows=rows, runs=runs, page_runs=page_runs)
        self.results["elapsed_s"] = time.time() - started_at
        self.results["machine"]["load_average_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        path = write_results(options["results_dir"], "campaign", options["label"], self.results)
        self.stdout.write(f"results: {shown_path(path)}")

    def _measure(self, options: dict[str, Any], *, rows: int, runs: int, page_runs: int) -> None:
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
        self.results["validate_queue_ms"] = queued | {"target": TARGET_QUEUE_MS}
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
            self.results.setdefault("page_ms", {})[f"{percent}%"] = page | {"target": TARGET_PAGE_MS}
        self._drop(campaign)
        # Each queued batch woke workers (queue.WAKE_MESSAGES messages); no worker ran those jobs, so the
        # messages would wait in the broker and be counted by the next bench's delivery phase.
        current_app.control.purge()
        if not options["skip_worker"]:
            self._memory(
                project=project,
                owner=owner,
                version=version,
                rows=rows,
                concurrency=options["concurrency"] or settings.CELERY_WORKER_CONCURRENCY,
                latency=options["latency"],
                timeout=options["job_timeout"],
            )

    # -- 3. the worker's memory through a campaign

    def _memory(
        self, *, project, owner, version, rows: int, concurrency: int, latency: float, timeout: float
    ):
        foreign = Job.objects.filter(status__in=Job.ACTIVE_STATUSES).exclude(project=project).count()
        if foreign:
            raise BenchFailure(
                f"{foreign} unfinished job(s) of other projects: the bench worker's start-up sweep would "
                "run them. Finish them first, or pass --skip-worker."
            )
        queue = f"bench-campaign-{uuid.uuid4().hex[:8]}"
        media_root = Path(tempfile.mkdtemp(prefix="atelier-bench-campaign-media-"))
        server: StandinProcess | None = None
        worker: Worker | None = None
        try:
            server = StandinProcess()
            server.latency = latency
            route_tasks_to(queue)
            log_path = settings.BASE_DIR / "var" / "bench" / f"campaign-worker-{queue}.log"
            worker = start_worker(
                name=f"{queue}@%h",
                queue=queue,
                concurrency=concurrency,
                env=worker_env(
                    base_url=server.base_url, queue=queue, concurrency=concurrency, media_root=media_root
                ),
                log_path=log_path,
            )
            self.stdout.write(
                f"memory run: worker pid {worker.pid} (C={concurrency}), stand-in latency {latency} s, "
                f"log {shown_path(log_path)}"
            )
            started = time.monotonic()
            warm = self._campaign(project=project, owner=owner, version=version, rows=2 * concurrency)
            self._run_until_done(warm, worker, timeout=timeout)
            self.stdout.write(f"warm-up: {2 * concurrency} rows in {time.monotonic() - started:.1f} s")
            time.sleep(1)  # its last images' provenance checks
            start_kib = rss_kib_tree(worker.pid) or 0
            # The machine may be shared: how much of it other processes used meanwhile goes in the JSON.
            meter = CpuMeter(follow=(server.pid, worker.pid))
            campaign = self._campaign(project=project, owner=owner, version=version, rows=rows)
            began = time.monotonic()
            samples = self._run_until_done(campaign, worker, timeout=timeout)
            took = time.monotonic() - began
            self.results["worker_memory_cpu"] = meter.result()
            for _ in range(4):  # the last provenance checks, and what the worker frees once idle
                time.sleep(SAMPLE_SECONDS)
                samples.append((time.monotonic() - began, rows, rss_kib_tree(worker.pid) or 0))
            self._memory_report(samples, start_kib=start_kib, rows=rows, took=took, concurrency=concurrency)
            load = self.results["worker_memory_cpu"]
            self.stdout.write(
                f"meanwhile: worker + stand-in {load['bench_cores']:.2f} cores, Postgres + Redis "
                f"{load['services_cores']:.2f}, other processes {load['other_processes_cores']:.2f}"
            )
        finally:
            if worker is not None:
                worker.stop()
            if server is not None:
                server.stop()
            for campaign in Campaign.objects.filter(project=project):
                self._drop(campaign)
            shutil.rmtree(media_root, ignore_errors=True)
            try:
                remove_queue(queue)
            except Exception as exc:  # the figures stand; say what was left behind
                self.stderr.write(f"clean-up of Redis queue {queue} failed: {exc!r}")

    def _campaign(self, *, project, owner, version, rows: int) -> Campaign:
        campaign, _ = batches.batch_draft(
            project=project,
            author=owner,
            name=f"Memory {rows}",
            source_name="bench.csv",
            template_version=version,
            brand_kit_version=None,
            data=_csv(rows),
            base={"quality": "low"},
            key_column="sku",
        )
        batches.batch_confirm(campaign=campaign, author=owner)
        return campaign

    def _run_until_done(self, campaign: Campaign, worker: Worker, *, timeout: float):
        """Samples (seconds, jobs ended, RSS KiB) every SAMPLE_SECONDS until every job has ended."""
        ids = Job.objects.filter(campaign=campaign)
        total = ids.count()
        began = time.monotonic()
        samples: list[tuple[float, int, int]] = []
        while True:
            ended = ids.filter(status__in=Job.FINAL_STATUSES).count()
            rss = rss_kib_tree(worker.pid)
            if rss is None or not worker.alive():
                raise BenchFailure(f"the worker exited:\n{worker.log_tail()}")
            samples.append((time.monotonic() - began, ended, rss))
            if ended >= total:
                break
            if time.monotonic() - began > timeout:
                raise BenchFailure(
                    f"{total - ended} job(s) not ended after {timeout:.0f} s:\n{worker.log_tail()}"
                )
            time.sleep(SAMPLE_SECONDS)
        failed = ids.exclude(status=Job.Status.SUCCEEDED).count()
        if failed:
            problems = list(
                ids.exclude(status=Job.Status.SUCCEEDED).values_list("error_message", flat=True)[:3]
            )
            raise BenchFailure(f"{failed} job(s) did not succeed: {problems}")
        return samples

    def _memory_report(self, samples, *, start_kib: int, rows: int, took: float, concurrency: int) -> None:
        mb = 1 / 1024
        peak_kib = max(rss for _, _, rss in samples)
        end_kib = samples[-1][2]
        steady = [(ended, rss * mb) for _, ended, rss in samples if ended >= rows // 10]
        growth = growth_per(steady, 1000)
        verdict = "n/a" if growth is None else ("ok" if growth <= TARGET_GROWTH_MB else "OVER TARGET")
        shown = "n/a" if growth is None else f"{growth:+.1f} MB"
        self.stdout.write(
            f"worker RSS over {rows} jobs (C={concurrency}, {rows / took:.1f} jobs/s): start "
            f"{start_kib * mb:.0f} MB, peak {peak_kib * mb:.0f} MB, end {end_kib * mb:.0f} MB "
            f"(end - start {(end_kib - start_kib) * mb:+.1f} MB); growth per 1,000 jobs {shown} "
            f"(target ≤ {TARGET_GROWTH_MB:g} MB: {verdict})"
        )
        self.results["worker_memory"] = {
            "rows": rows,
            "concurrency": concurrency,
            "seconds": took,
            "jobs_per_s": rows / took,
            "rss_start_mb": start_kib * mb,
            "rss_peak_mb": peak_kib * mb,
            "rss_end_mb": end_kib * mb,
            "rss_end_minus_start_mb": (end_kib - start_kib) * mb,
            "growth_mb_per_1000_jobs": growth,
            "target_growth_mb_per_1000_jobs": TARGET_GROWTH_MB,
            "samples": [
                {"s": round(at, 2), "jobs_ended": ended, "rss_mb": round(rss * mb, 1)}
                for at, ended, rss in samples
            ],
        }

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
            # The memory run's jobs were charged: their ledger rows protect them.
            LedgerEntry.objects.filter(job__campaign=campaign).delete()
            ApiCall.objects.filter(job__campaign=campaign).delete()
            Image.objects.filter(job__campaign=campaign).delete()
            Job.objects.filter(campaign=campaign).delete()
            campaign.delete()
