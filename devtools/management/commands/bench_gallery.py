"""``manage.py bench_gallery``: the gallery figures issue #4 asks for, on a 100,000-image project.

Seeds the project with ``seed_demo`` (or reuses it with ``--reuse``), then, in this process, through
Django's test ``Client`` logged in as a member (the project owner):

1. server time of a gallery page of 48 thumbnails, median and p95 over ``--runs`` requests after a warm-up,
   for the full page (``GET /p/<id>/gallery``, what a browser navigation gets), the results fragment (the
   same URL with ``HX-Request``, what a filter change gets), the next-page fragment (``?after=<cursor>``
   with ``HX-Request``, what infinite scroll gets) and page 2,001 (``?after=`` the cursor of the 96,000th
   image), as a fragment and as a full page. The requests are interleaved so drift hits all alike. "Server
   time" is the whole in-process request: middleware, session (Redis), view, SQL, template; not the network
   or a WSGI server. DEBUG is off while timing, as in production (``--debug`` keeps it on);
2. SQL queries per page (``CaptureQueriesContext``) with no filters and with each filter and combinations;
3. the deep page's cost against the first pages';
4. ``EXPLAIN (ANALYZE, BUFFERS)`` of the page query the view actually ran (captured, then explained) for
   page 1, the deep page, an author filter, searches and more; and of the deep page WITHOUT the redundant
   ``created_at <= x`` bound (``gallery.older_than`` swapped for one without it while the view runs), to
   show what the bound is worth.

``--try-fix`` re-measures with proposed fixes applied by monkeypatching inside this process only; the
source files are not touched. It prints a Markdown table and writes JSON to bench/results/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.models import Count, Q
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse
from django.utils import timezone

from devtools.benchkit import (
    CpuMeter,
    Metric,
    SqlTimer,
    add_run_arguments,
    command_line,
    machine_facts,
    metrics_table,
    ms_since,
    shown_path,
    summary,
    wait_for_quiet,
    write_results,
)
from devtools.management.commands import seed_demo
from workspace import gallery
from workspace.models import Image, Membership, Project

DEFAULT_PROJECT = "Gallery bench"
TARGET_MEDIAN_MS = 10.0
TARGET_P95_MS = 25.0
TARGET_QUERIES = 4
TARGET_DEEP_RATIO = 1.3
DEEP_INDEX = 96_000  # the 96,000th image: its cursor opens page 2,001
TILE = re.compile(r'id="select-(\d+)"')
NEXT = re.compile(r'hx-get="[^"]*after=([A-Za-z0-9_-]+)"')
PAGE_QUERY = re.compile(r'FROM "workspace_image".*LIMIT \d+\s*$', re.S)


# --------------------------------------------------------------------------------------------------
# Fixes to try, applied in this process only (the lead applies the real ones)


FIXES: dict[str, str] = {
    "planner-costs": "SET random_page_cost = 1.1 (SSD or fully cached data) on this connection",
    "no-parallel": "SET max_parallel_workers_per_gather = 0 on this connection (a 48-row page never "
    "gains from parallel workers on 2 cores; their start-up costs milliseconds)",
}


CSRF = re.compile(r'(name="csrfmiddlewaretoken" value=|"X-CSRFToken": )"[^"]*"')


def normalised(html: str) -> str:
    """Whitespace between tags and the per-request CSRF mask aside, the HTML a person gets."""
    html = CSRF.sub(r'\1"…"', html)
    return re.sub(r">\s+<", "><", re.sub(r"\s+", " ", html)).strip()


# --------------------------------------------------------------------------------------------------


class Command(BaseCommand):
    help = (
        "Measure the gallery on a 100,000-image project: server time (median, p95), SQL queries per page "
        "for every filter, the deep-page cost, and EXPLAIN ANALYZE of the page queries."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--images", type=int, default=100_000, help="images in the project (100000)")
        parser.add_argument("--runs", type=int, default=200, help="timed requests per case (200)")
        parser.add_argument("--warmup", type=int, default=30, help="untimed requests per case first (30)")
        parser.add_argument("--filter-runs", type=int, default=40, help="timed requests per filter (40)")
        parser.add_argument("--explain-runs", type=int, default=5, help="EXPLAIN ANALYZE repeats (5)")
        parser.add_argument("--project", default=DEFAULT_PROJECT, help=f'project name ("{DEFAULT_PROJECT}")')
        parser.add_argument("--seed", type=int, default=1, help="seed_demo's random seed (1)")
        parser.add_argument(
            "--neighbour-images",
            type=int,
            default=20_000,
            help="also seed a second project with the same members (stars reversed), as people belong to "
            "several projects: the planner then cannot know a person's stars in this one (20000; 0: none)",
        )
        parser.add_argument(
            "--reuse", action="store_true", help="reuse the project of that name if it exists (no seeding)"
        )
        parser.add_argument("--debug", action="store_true", help="keep DEBUG on while timing")
        parser.add_argument(
            "--try-fix",
            default="",
            help="comma-separated fixes to apply in this process before measuring ('all', 'list' to list)",
        )
        add_run_arguments(parser)

    # -- entry point

    def handle(self, *args: Any, **options: Any) -> None:
        if options["try_fix"] == "list":
            for name, description in FIXES.items():
                self.stdout.write(f"{name}: {description}")
            return
        fixes = self.chosen_fixes(options["try_fix"])
        if connection.vendor != "postgresql":
            raise CommandError("bench_gallery measures the Postgres plans; point DATABASE_URL at Postgres.")
        self.opts = options
        started = time.monotonic()
        command = command_line()
        self.out(f"# Gallery bench  {datetime.now(UTC).isoformat(timespec='seconds')}")
        self.out(f"command: {command}")
        machine = machine_facts(
            postgres_settings=("server_version", "shared_buffers", "work_mem", "effective_cache_size", "jit")
        )
        for key, value in machine.items():
            self.out(f"  {key}: {value}")
        self.results: dict[str, Any] = {
            "command": command,
            "label": options["label"],
            "started_at": timezone.now().isoformat(),
            "machine": machine,
            "options": {k: v for k, v in options.items() if k not in ("stdout", "stderr", "skip_checks")},
            "fixes": {name: FIXES[name] for name in fixes},
        }
        project, owner = self.project(options)
        self.project_obj, self.member = project, owner
        self.results["project"] = {
            "id": project.pk,
            "name": project.name,
            "images": Image.objects.filter(project=project).count(),
            "visible_images": Image.objects.visible().filter(project=project).count(),
            "member": owner.username,
        }
        self.out(f"project: {json.dumps(self.results['project'])}")

        overrides = {"ALLOWED_HOSTS": [*settings.ALLOWED_HOSTS, "testserver"]}
        if not options["debug"]:
            overrides["DEBUG"] = False
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.backend_pid = cursor.fetchone()[0]
        with override_settings(**overrides), contextlib.ExitStack() as stack:
            self.results["debug_while_timing"] = settings.DEBUG
            self.client = Client()
            self.client.force_login(owner)
            light = (
                Membership.objects.filter(project=project)
                .annotate(stars=Count("user__favourites", filter=Q(user__favourites__image__project=project)))
                .select_related("user")
                .order_by("stars", "user__username")
                .first()
            )
            self.light_name, self.light_stars = light.user.username, light.stars
            self.results["project"]["light_starrer"] = {"member": self.light_name, "stars": self.light_stars}
            self.light_client = Client()
            self.light_client.force_login(light.user)
            self.metrics: list[Metric] = []
            before = self.fix_reference_pages() if fixes else {}
            for name in fixes:
                self.out(f"applying fix in this process: {name}: {FIXES[name]}")
                stack.enter_context(getattr(self, f"fix_{name.replace('-', '_')}")())
            if before:
                self.check_same_pages(before)
            self.prepare_urls()
            self.results["other_load_before_timing_cores"] = wait_for_quiet(
                self.opts["wait_idle"], meter=self.meter, out=self.out
            )
            self.measure_times()
            self.measure_queries()
            self.measure_filter_times()
            self.explain_plans()
            self.client.logout()
            self.light_client.logout()
        self.results["elapsed_s"] = time.monotonic() - started
        self.report()

    def out(self, text: str = "") -> None:
        self.stdout.write(text)

    def chosen_fixes(self, value: str) -> list[str]:
        names = [n.strip() for n in value.split(",") if n.strip()]
        if names == ["all"]:
            return list(FIXES)
        unknown = [n for n in names if n not in FIXES]
        if unknown:
            raise CommandError(f"Unknown fix {', '.join(unknown)}; known: {', '.join(FIXES) or 'none'}.")
        return names

    def meter(self) -> CpuMeter:
        """This process and the machine; Postgres (its backend here, all of it) is the service."""
        return CpuMeter(services=("postgres",), service_pids=(self.backend_pid,))

    # -- fixes to try (this process only)

    @contextlib.contextmanager
    def fix_planner_costs(self) -> Iterator[None]:
        with self.setting("random_page_cost", "1.1"):
            yield

    @contextlib.contextmanager
    def fix_no_parallel(self) -> Iterator[None]:
        with self.setting("max_parallel_workers_per_gather", "0"):
            yield

    @contextlib.contextmanager
    def setting(self, name: str, value: str) -> Iterator[None]:
        with connection.cursor() as cursor:
            cursor.execute(f"SET {name} = {value}")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"RESET {name}")

    def fix_reference_pages(self) -> dict[str, str]:
        """Pages rendered before any fix, to check that the fixes change nothing a person sees."""
        self.url = reverse("gallery", args=[self.project_obj.pk])
        return {
            name: self.reference_page(query, htmx) for name, (query, htmx) in self.reference_cases().items()
        }

    def reference_page(self, query: dict, htmx: bool) -> str:
        return normalised(self.get(self.url, query, htmx=htmx).content.decode())

    def reference_cases(self) -> dict[str, tuple[dict, bool]]:
        cases = {}
        for name, query in self.reference_queries().items():
            cases[f"{name}, fragment"] = (query, True)
            cases[f"{name}, full page"] = (query, False)
        return cases

    def reference_queries(self) -> dict[str, dict]:
        return {
            "page 1": {},
            "approved (review badges)": {"review": "approved"},
            "favourites (stars)": {"favourites": "on"},
            "favourites of the light starrer": {"favourites": "on", "_as": "light"},
            "search with filters in the links": {"q": "lemonade", "aspect": "portrait"},
            "nothing found": {"q": "xyzzyplugh"},
            "invalid dates": {"since": "2026-11-10", "until": "2026-11-01"},
            "unknown author": {"author": "999999", "kind": "edit"},
        }

    def check_same_pages(self, before: dict[str, str]) -> None:
        same = {}
        for _ in range(2):  # the second time from the filter bar's cache
            for name, (query, htmx) in self.reference_cases().items():
                after = self.reference_page(query, htmx)
                same[name] = same.get(name, True) and after == before[name]
                if after != before[name]:
                    at = next(
                        (i for i, (a, b) in enumerate(zip(after, before[name], strict=False)) if a != b), 0
                    )
                    self.out(f"fixed page differs for {name}: ...{before[name][at - 80 : at + 80]!r}")
                    self.out(f"                               ...{after[at - 80 : at + 80]!r}")
        self.results["fixed_pages_identical"] = same
        self.out(
            f"{sum(same.values())} of {len(same)} reference pages identical with the fixes "
            "(whitespace and CSRF masks aside)"
        )
        if not all(same.values()):
            raise CommandError("A fix changed what the gallery shows; not measuring it.")

    # -- the project

    def project(self, options) -> tuple[Project, Any]:
        name = options["project"]
        existing = Project.objects.filter(name=name).order_by("-pk").first()
        if options["reuse"] and existing is not None:
            count = Image.objects.filter(project=existing).count()
            if count != options["images"]:
                self.out(f"note: reusing {name!r} with {count:,} images (asked for {options['images']:,})")
            self.results["seed"] = {"reused": True}
            owner = Membership.objects.get(project=existing, role="owner").user
            return existing, owner
        neighbour = f"{name} (neighbour)"
        if options["neighbour_images"]:
            self.out(f"seeding {options['neighbour_images']:,} images into {neighbour!r} ...")
            seed_demo.seed(
                name=neighbour,
                images=options["neighbour_images"],
                seed_value=options["seed"] + 1,
                replace=Project.objects.filter(name=neighbour).exists(),
                reverse_stars=True,
            )
        else:
            for other in Project.objects.filter(name=neighbour):
                seed_demo.delete_project(other)
        self.out(f"seeding {options['images']:,} images into {name!r} ...")
        result = seed_demo.seed(
            name=name, images=options["images"], seed_value=options["seed"], replace=existing is not None
        )
        self.out(f"seeded in {result.seconds:.1f} s: {json.dumps(result.counts)}")
        self.results["seed"] = {"reused": False, "seconds": result.seconds, "counts": result.counts}
        return result.project, result.owner

    # -- URLs and cursors

    def prepare_urls(self) -> None:
        project = self.project_obj
        self.url = reverse("gallery", args=[project.pk])
        ordered = Image.objects.visible().filter(project=project).order_by("-created_at", "-id")
        visible = ordered.count()
        if visible < 200:
            raise CommandError("The project needs at least 200 visible images.")
        self.deep_index = min(DEEP_INDEX, visible - gallery.PAGE_SIZE - 1)
        deep_image = ordered.only("id", "created_at")[self.deep_index - 1]
        self.deep_cursor = gallery.encode_cursor(deep_image)
        first = self.get(self.url)
        self.page2_cursor = self.next_cursor(first)
        for label, response in (
            ("page 1", first),
            ("page 2", self.get(self.url, {"after": self.page2_cursor}, htmx=True)),
            ("deep page", self.get(self.url, {"after": self.deep_cursor}, htmx=True)),
        ):
            tiles = TILE.findall(response.content.decode())
            if response.status_code != 200 or len(tiles) != gallery.PAGE_SIZE:
                raise CommandError(
                    f"{label}: status {response.status_code}, {len(tiles)} tiles (expected 48)"
                )
        deep_ids = [
            int(pk) for pk in TILE.findall(self.get(self.url, {"after": self.deep_cursor}).content.decode())
        ]
        expected = list(
            ordered.values_list("pk", flat=True)[self.deep_index : self.deep_index + gallery.PAGE_SIZE]
        )
        if deep_ids != expected:
            raise CommandError("The deep page does not show images 96,001-96,048 in order.")
        page_number = self.deep_index // gallery.PAGE_SIZE + 1
        self.results["deep_page"] = {"image_index": self.deep_index, "page_number": page_number}
        self.cases: dict[str, tuple[dict, bool]] = {
            "full page 1": ({}, False),
            "results fragment (HX, page 1)": ({}, True),
            "next-page fragment (HX, page 2)": ({"after": self.page2_cursor}, True),
            f"deep fragment (HX, page {page_number:,})": ({"after": self.deep_cursor}, True),
            f"deep full page (page {page_number:,})": ({"after": self.deep_cursor}, False),
        }

    def get(self, url: str, query: dict | None = None, *, htmx: bool = False):
        """GET as the owner, or as the member who stars least when the query says {"_as": "light"}."""
        query = dict(query or {})
        client = self.light_client if query.pop("_as", "") == "light" else self.client
        extra = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        return client.get(url, query, **extra)

    def timed_get(self, query: dict, *, htmx: bool) -> tuple[Any, float, float]:
        """One GET of the gallery, with its total and its database milliseconds."""
        timer = SqlTimer()
        with connection.execute_wrapper(timer):
            started = time.perf_counter()
            response = self.get(self.url, query, htmx=htmx)
            total_ms = ms_since(started)
        return response, total_ms, timer.seconds * 1000

    @staticmethod
    def next_cursor(response) -> str:
        match = NEXT.search(response.content.decode())
        return match.group(1) if match else ""

    # -- 1 and 3: server time

    def measure_times(self) -> None:
        runs, warmup = self.opts["runs"], self.opts["warmup"]
        self.out(
            f"\ntiming {len(self.cases)} cases, {warmup} warm-up + {runs} timed requests each, interleaved"
        )
        for _ in range(warmup):
            for query, htmx in self.cases.values():
                self.get(self.url, query, htmx=htmx)
        totals: dict[str, list[float]] = {name: [] for name in self.cases}
        sql: dict[str, list[float]] = {name: [] for name in self.cases}
        meter = self.meter()
        for _ in range(runs):
            for name, (query, htmx) in self.cases.items():
                response, total_ms, sql_ms = self.timed_get(query, htmx=htmx)
                if response.status_code != 200:
                    raise CommandError(f"{name}: status {response.status_code}")
                totals[name].append(total_ms)
                sql[name].append(sql_ms)
        self.results["times_ms"] = {
            name: {"total": summary(totals[name]), "sql": summary(sql[name])} for name in self.cases
        }
        load = self.results["cpu_during_timing"] = meter.result()
        self.out(
            f"CPU while timing: this process {load['bench_cores']:.2f} cores, its Postgres backend "
            f"{load['own_service_processes_cores']:.2f} (all Postgres {load['services_cores']:.2f}), "
            f"other processes {load['other_processes_cores']:.2f} (of {os.cpu_count()})"
        )
        self.out("| case | median | p95 | max | SQL median |")
        self.out("|---|---|---|---|---|")
        for name in self.cases:
            t, s = summary(totals[name]), summary(sql[name])
            self.out(f"| {name} | {t['median']:.2f} | {t['p95']:.2f} | {t['max']:.2f} | {s['median']:.2f} |")
        names = list(self.cases)
        full, fragment_1, fragment_2, deep_fragment, deep_full = names
        for name in (full, fragment_1, fragment_2):
            t = summary(totals[name])
            self.metrics.append(Metric.at_most(f"{name}: median ms", t["median"], TARGET_MEDIAN_MS))
            self.metrics.append(Metric.at_most(f"{name}: p95 ms", t["p95"], TARGET_P95_MS))
        for name in (deep_fragment, deep_full):
            t = summary(totals[name])
            self.metrics.append(Metric(f"{name}: median ms", t["median"], target="-"))
        ratio_fragment = statistics.median(totals[deep_fragment]) / statistics.median(totals[fragment_2])
        ratio_full = statistics.median(totals[deep_full]) / statistics.median(totals[full])
        self.results["deep_ratio"] = {"fragment": ratio_fragment, "full_page": ratio_full}
        self.metrics.append(
            Metric.at_most("deep ÷ page-2 fragment (median)", ratio_fragment, TARGET_DEEP_RATIO)
        )
        self.metrics.append(Metric.at_most("deep ÷ page-1 full page (median)", ratio_full, TARGET_DEEP_RATIO))

    # -- 2: queries per page

    def filter_sets(self) -> dict[str, dict[str, str]]:
        project = self.project_obj
        editor = Membership.objects.filter(project=project, role="editor").order_by("user__username").first()
        author = str((editor or Membership.objects.get(project=project, role="owner")).user_id)
        newest = Image.objects.visible().filter(project=project).order_by("-created_at").first().created_at
        until = timezone.localdate(newest - timedelta(days=30))
        since = until - timedelta(days=13)
        return {
            "none": {},
            "author (an editor)": {"author": author},
            "model gpt-image-1-mini": {"model": "gpt-image-1-mini"},
            "review approved": {"review": "approved"},
            "my favourites": {"favourites": "on"},
            f"my favourites, as {self.light_name} ({self.light_stars} stars)": {
                "favourites": "on",
                "_as": "light",
            },
            "kind edit": {"kind": "edit"},
            "aspect portrait": {"aspect": "portrait"},
            "date range (14 days)": {"since": since.isoformat(), "until": until.isoformat()},
            "search common (q=lemonade)": {"q": "lemonade"},
            "search rare (q=axolotl)": {"q": "axolotl"},
            "combination (q, author, model, aspect, since)": {
                "q": "coffee",
                "author": author,
                "model": "gpt-image-2",
                "aspect": "landscape",
                "since": (until - timedelta(days=45)).isoformat(),
            },
            "combination (favourites, approved, portrait)": {
                "favourites": "on",
                "review": "approved",
                "aspect": "portrait",
            },
        }

    def measure_queries(self) -> None:
        self.filters = self.filter_sets()
        rows = {}
        self.out("\n| filters | tiles | queries: full page | results fragment | next-page fragment |")
        self.out("|---|---|---|---|---|")
        for name, query in self.filters.items():
            self.get(self.url, query)  # caches warm, as for any person's second page view
            counts = []
            with CaptureQueriesContext(connection) as captured:
                first = self.get(self.url, query)
            counts.append(len(captured))
            with CaptureQueriesContext(connection) as captured:
                self.get(self.url, query, htmx=True)
            counts.append(len(captured))
            tiles = len(TILE.findall(first.content.decode()))
            cursor = self.next_cursor(first)
            if cursor:
                with CaptureQueriesContext(connection) as captured:
                    self.get(self.url, {**query, "after": cursor}, htmx=True)
                counts.append(len(captured))
            else:
                counts.append(None)
            if first.status_code != 200:
                raise CommandError(f"filters {name}: status {first.status_code}")
            rows[name] = {"query": query, "tiles": tiles, "queries": counts, "next_cursor": bool(cursor)}
            shown = " | ".join("-" if c is None else str(c) for c in counts)
            self.out(f"| {name} | {tiles} | {shown} |")
        self.results["queries"] = rows
        worst = max(c for row in rows.values() for c in row["queries"] if c is not None)
        self.metrics.append(
            Metric.at_most(
                "SQL queries per page, worst over all filters and page kinds", worst, TARGET_QUERIES
            )
        )
        with CaptureQueriesContext(connection) as captured:
            self.get(self.url)
        self.results["queries_sql_page1"] = [q["sql"][:400] for q in captured.captured_queries]

    def measure_filter_times(self) -> None:
        runs = self.opts["filter_runs"]
        if runs <= 0:
            return
        self.out(f"\nfilter change (results fragment, HX): {runs} timed requests each after 5 warm-ups")
        self.out("| filters | median ms | p95 ms | SQL median ms |")
        self.out("|---|---|---|---|")
        rows = {}
        meter = self.meter()
        for name, query in self.filters.items():
            for _ in range(5):
                self.get(self.url, query, htmx=True)
            totals, sql = [], []
            for _ in range(runs):
                _response, total_ms, sql_ms = self.timed_get(query, htmx=True)
                totals.append(total_ms)
                sql.append(sql_ms)
            rows[name] = {"total": summary(totals), "sql": summary(sql)}
            t, s = rows[name]["total"], rows[name]["sql"]
            self.out(f"| {name} | {t['median']:.2f} | {t['p95']:.2f} | {s['median']:.2f} |")
        self.results["filter_times_ms"] = rows
        load = self.results["cpu_during_filter_timing"] = meter.result()
        self.out(
            f"CPU while timing filters: all Postgres {load['services_cores']:.2f} cores, "
            f"other processes {load['other_processes_cores']:.2f}"
        )
        worst_name = max(rows, key=lambda n: rows[n]["total"]["median"])
        worst = rows[worst_name]["total"]
        self.metrics.append(
            Metric.at_most(f"worst filter median ms ({worst_name})", worst["median"], TARGET_MEDIAN_MS)
        )
        worst_p95_name = max(rows, key=lambda n: rows[n]["total"]["p95"])
        worst_p95 = rows[worst_p95_name]["total"]["p95"]
        self.metrics.append(
            Metric.at_most(f"worst filter p95 ms ({worst_p95_name})", worst_p95, TARGET_P95_MS)
        )

    # -- 4: plans

    def page_sql(self, query: dict, *, htmx: bool = True) -> str:
        with CaptureQueriesContext(connection) as captured:
            response = self.get(self.url, query, htmx=htmx)
        if response.status_code != 200:
            raise CommandError(f"status {response.status_code} while capturing the page query")
        found = [q["sql"] for q in captured.captured_queries if PAGE_QUERY.search(q["sql"])]
        if len(found) != 1:
            raise CommandError(f"expected one page query, found {len(found)}")
        return found[0]

    def explain(self, sql: str) -> dict[str, Any]:
        times, plan_json = [], None
        with connection.cursor() as cursor:
            for _ in range(max(1, self.opts["explain_runs"])):
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
                raw = cursor.fetchone()[0]
                plan_json = (json.loads(raw) if isinstance(raw, str) else raw)[0]
                times.append(plan_json["Execution Time"])
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            text = [row[0] for row in cursor.fetchall()]
        scans = list(_scans(plan_json["Plan"]))
        return {
            "execution_ms_median": statistics.median(times),
            "execution_ms_all": times,
            "planning_ms": plan_json.get("Planning Time"),
            "scans": scans,
            "plan": text,
        }

    def explain_plans(self) -> None:
        f = self.filters
        cases = {
            "page 1": {},
            "deep page": {"after": self.deep_cursor},
            "author filter": f["author (an editor)"],
            "author filter, deep": {**f["author (an editor)"], "after": self.deep_cursor},
            "search common": f["search common (q=lemonade)"],
            "search rare": f["search rare (q=axolotl)"],
            "favourites": f["my favourites"],
            "favourites, light starrer": {"favourites": "on", "_as": "light"},
            "combination (q, author, model, aspect, since)": f[
                "combination (q, author, model, aspect, since)"
            ],
            "model gpt-image-1-mini": f["model gpt-image-1-mini"],
            "combination (favourites, approved, portrait)": f["combination (favourites, approved, portrait)"],
        }
        plans = {name: self.explain(self.page_sql(query)) for name, query in cases.items()}

        def no_bound(images, moment, pk):
            return images.filter(Q(sort_at__lt=moment) | Q(sort_at=moment, sort_id__lt=pk))

        with mock.patch.object(gallery, "older_than", no_bound):
            plans["deep page WITHOUT the created_at <= x bound"] = self.explain(
                self.page_sql({"after": self.deep_cursor})
            )
        self.results["plans"] = plans
        self.out("\n## Plans (EXPLAIN ANALYZE, BUFFERS) of the page query, key lines")
        for name, plan in plans.items():
            self.out(
                f"\n### {name}: execution {plan['execution_ms_median']:.3f} ms "
                f"(median of {len(plan['execution_ms_all'])})"
            )
            for line in key_lines(plan["plan"]):
                self.out(f"    {line}")

        deep, unbounded = plans["deep page"], plans["deep page WITHOUT the created_at <= x bound"]
        recent = [s for s in deep["scans"] if s.get("index") == "image_project_recent"]
        uses_bound = bool(recent) and "created_at <=" in (recent[0].get("index_cond") or "")
        self.metrics.append(
            Metric(
                "deep-page plan: Index Scan on image_project_recent, Index Cond on created_at",
                "yes" if uses_bound else "no",
                target="yes",
                passed=uses_bound,
            )
        )
        rows_with = sum(s["rows_scanned"] for s in deep["scans"] if s.get("relation") == "workspace_image")
        rows_without = sum(
            s["rows_scanned"] for s in unbounded["scans"] if s.get("relation") == "workspace_image"
        )
        self.metrics += [
            Metric(
                "deep page: image index rows read, with bound / without", f"{rows_with:,} / {rows_without:,}"
            ),
            Metric(
                "deep page: SQL execution ms, with bound / without",
                f"{deep['execution_ms_median']:.3f} / {unbounded['execution_ms_median']:.3f}",
            ),
            Metric("page 1: SQL execution ms", f"{plans['page 1']['execution_ms_median']:.3f}"),
        ]

    # -- output

    def report(self) -> None:
        for key, phase in (("cpu_during_timing", "page"), ("cpu_during_filter_timing", "filter")):
            load = self.results.get(key)
            if load:
                other = load["other_processes_cores"]
                self.metrics.append(
                    Metric.at_most(
                        f"other processes' CPU during the {phase} timings (cores; more = contended)",
                        other,
                        0.25,
                    )
                )
        self.out("\n## Results\n")
        for line in metrics_table(self.metrics):
            self.out(line)
        self.results["metrics"] = [metric.__dict__ for metric in self.metrics]
        path = write_results(self.opts["results_dir"], "gallery", self.opts["label"], self.results)
        self.out(f"\nwrote {shown_path(path)} (run took {self.results['elapsed_s']:.0f} s)")


# --------------------------------------------------------------------------------------------------
# Plan helpers


def _scans(node: dict[str, Any], loops: int = 1) -> Iterator[dict[str, Any]]:
    """Every scan node with what it read: rows returned plus rows its filter threw away, times loops."""
    node_loops = node.get("Actual Loops", 1)
    if "Scan" in node.get("Node Type", ""):
        returned = node.get("Actual Rows", 0) * node_loops
        removed = node.get("Rows Removed by Filter", 0) * node_loops
        removed += node.get("Rows Removed by Index Recheck", 0) * node_loops
        yield {
            "node": node.get("Node Type"),
            "relation": node.get("Relation Name"),
            "index": node.get("Index Name"),
            "index_cond": node.get("Index Cond"),
            "filter": node.get("Filter"),
            "loops": node_loops,
            "rows_returned": returned,
            "rows_removed": removed,
            "rows_scanned": returned + removed,
            "shared_hit": node.get("Shared Hit Blocks"),
            "shared_read": node.get("Shared Read Blocks"),
        }
    for child in node.get("Plans", []):
        yield from _scans(child, loops)


KEY = re.compile(
    r"(Scan|Index Cond|Recheck Cond|Filter|Rows Removed|Execution Time|Planning Time|Limit|Join|Sort|"
    r"SubPlan|Hash|Loop|Buffers)"
)


def key_lines(plan: list[str]) -> list[str]:
    """The plan's lines that say what was scanned, how, and what it cost; long conditions shortened."""
    lines = []
    for line in plan:
        if KEY.search(line):
            lines.append(line if len(line) <= 230 else line[:227] + "...")
    return lines
