"""Infrastructure that is busy, away or crowded: pooled connections stay bounded, nothing is lost, the
sweep runs on time, and a person sees "busy" rather than a 500."""

import threading
import time

import pytest
from django.conf import settings
from django.db import OperationalError, connection
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from config.celery import app
from tests.conftest import GENERATION_POST, job_params
from tests.factories import JobFactory
from tests.helpers import Processes
from tests.helpers import status_of as _status
from tests.helpers import wait_for as _wait_for
from workspace import jobs, queue, worker
from workspace.middleware import BUSY_JOB
from workspace.models import Job
from workspace.tasks import run_job

pytestmark = [pytest.mark.django_db(transaction=True)]

WORKER_POOL_MAX = settings.DB_POOL_DEFAULTS["worker"][0]


def _start_worker(processes: Processes, *, concurrency: int):
    return processes.start(
        "worker",
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
        "-n",
        f"infra{concurrency}@%h",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    )


def _connections(application_name: str | None = None) -> int:
    """Connections to the test database but this one (optionally only those of one kind of process)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    params = []
    if application_name is not None:
        sql += " AND application_name = %s"
        params.append(application_name)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


# --- 1. Connections pooled and bounded ----------------------------------------------------------------------


@pytest.mark.worker
def test_it_keeps_a_worker_at_its_pool_size_with_32_calls_in_flight(cast, project, standin, processes):
    standin.latency = 1.5
    processes.env["FAIR_SHARE_CALLS_PER_USER"] = "0"  # one person's 64 jobs: all of them in flight
    ids = [
        jobs.job_create(project=project, author=cast.bob, prompt=f"Pear {n}", params=job_params()).pk
        for n in range(64)
    ]
    _start_worker(processes, concurrency=32)

    peak_worker = peak_all = peak_in_flight = 0

    def sample():
        nonlocal peak_worker, peak_all, peak_in_flight
        peak_worker = max(peak_worker, _connections("atelier worker"))
        peak_all = max(peak_all, _connections())
        done = Job.objects.filter(pk__in=ids, status=Job.Status.SUCCEEDED).count()
        peak_in_flight = max(peak_in_flight, len(standin.requests) - done)
        return done == len(ids)

    _wait_for(sample, timeout=90, interval=0.05, what="all 64 jobs to succeed")
    print(
        f"\nworker at concurrency 32: {peak_in_flight} calls in flight, its DB connections peak {peak_worker}"
        f" (all but this test's own: {peak_all})"
    )
    assert peak_in_flight >= 24  # the calls really were in flight together while we counted
    # "atelier worker" names the worker's pool by its role (none at all would mean the role was missed).
    assert 1 <= peak_worker <= WORKER_POOL_MAX


# --- 2. Transient infrastructure errors lose nothing and show no 500 ---------------------------------------


@pytest.mark.worker
def test_a_job_the_broker_refused_is_sent_by_the_next_sweep(cast, project, standin, processes, monkeypatch):
    real_send = app.send_task
    refused = []

    def send_task(name, *args, **kwargs):
        if not refused:
            refused.append(name)
            raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return real_send(name, *args, **kwargs)

    monkeypatch.setattr(app, "send_task", send_task)
    job = jobs.job_create(project=project, author=cast.bob, prompt="A medlar", params=job_params())
    assert refused == [queue.RUN_JOB]
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED  # the row is the truth: the job stands
    assert job.enqueued_at is None  # and is marked unsent

    # Lost messages wait two minutes; an unsent one goes at the next tick (beat sweeps every second).
    processes.env["JOB_REQUEUE_AFTER_SECONDS"] = "120"
    _start_worker(processes, concurrency=2)
    processes.beat()
    started = time.monotonic()
    try:
        # Generous: under the whole suite a worker and beat take several seconds to start on 2 cores.
        _wait_for(lambda: _status(job.pk) == "succeeded", timeout=60, what="the sweep to send the job")
    except AssertionError:
        for log in sorted(processes.tmp_path.glob("*.log")):  # say why, for whoever reads the failure
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        raise
    print(f"\nunsent job succeeded {time.monotonic() - started:.1f} s after beat started")
    job.refresh_from_db()
    assert job.attempts == 1


def test_a_database_error_in_the_task_retries_it(monkeypatch):
    calls = []

    def jobs_run_next(*, finisher, sent_for):
        calls.append(finisher)
        if len(calls) == 1:
            raise OperationalError("couldn't get a connection after 30.00 sec")

    monkeypatch.setattr(worker, "jobs_run_next", jobs_run_next)
    result = run_job.apply(args=(7,))  # eager: a retry runs again at once, in this thread
    assert len(calls) == 2
    assert result.state == "SUCCESS"  # on the retry; the error was not the end of it


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "page"])
def test_a_submit_while_the_database_is_away_is_a_503_and_creates_nothing(
    client, cast, project, monkeypatch, htmx
):
    def pool_timeout(**_kwargs):
        raise OperationalError("couldn't get a connection after 5.00 sec")

    monkeypatch.setattr(jobs, "_reserve_and_create", pool_timeout)
    client.force_login(cast.bob)
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = client.post(reverse("job_create", args=[project.pk]), GENERATION_POST, **headers)
    assert response.status_code == 503
    assert BUSY_JOB in response.content.decode()
    assert not Job.objects.exists()
    if htmx:
        assert response["HX-Reswap"] == "afterbegin"  # above the form, which keeps what was typed


def test_a_poll_while_the_database_is_away_keeps_the_card(client, cast, project, monkeypatch):
    job = JobFactory(project=project, author=cast.bob)
    client.force_login(cast.bob)
    from workspace.views import studio

    def away(*_args, **_kwargs):
        raise OperationalError("the database system is starting up")

    monkeypatch.setattr(studio, "job_card_access", away)
    response = client.get(reverse("job_card", args=[project.pk, job.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 503
    assert response["HX-Reswap"] == "none"


# --- 3. Recovery on time; 8. one sweep at a time ------------------------------------------------------------


@pytest.mark.worker
def test_the_sweep_runs_on_time_behind_a_backlog(cast, project, standin, processes, settings):
    settings.FAIR_SHARE_QUEUED_PER_USER = 1000
    standin.latency = 3.0  # each of the worker's two threads is busy for seconds per job
    for n in range(200):
        jobs.job_create(project=project, author=cast.bob, prompt=f"Fig {n}", params=job_params())
    dead = jobs.job_create(
        project=project, author=cast.bob, prompt="A dead worker's job", params=job_params()
    )
    Job.objects.claim(dead.pk, worker="gone:1")
    _start_worker(processes, concurrency=2)
    processes.beat()
    _wait_for(lambda: len(standin.requests) >= 2, timeout=30, what="the worker to be busy")

    Job.objects.filter(pk=dead.pk).update(lease_expires_at=timezone.now())  # its worker died just now
    expired = time.monotonic()
    _wait_for(lambda: _status(dead.pk) == "queued", timeout=30, what="the sweep to requeue the dead job")
    waited = time.monotonic() - expired
    print(f"\nbehind a backlog of 200 at concurrency 2: swept {waited:.1f} s after the lease expired")
    # Beat sweeps every second; queued behind the backlog the sweep would wait minutes.
    assert waited < 5, waited
    assert Job.objects.filter(status=Job.Status.QUEUED).count() > 150  # the backlog was still there


def test_two_sweeps_at_once_requeue_and_send_an_expired_job_once(cast, project, monkeypatch):
    job = JobFactory(project=project, author=cast.bob)
    claimed = Job.objects.claim(job.pk, worker="gone:1")
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now())
    sent = []
    monkeypatch.setattr(queue, "send_job", lambda job_id, countdown=None: sent.append(job_id) or True)
    # The sweep that wins the requeue holds on until the other has returned: they overlap for sure.
    one_returned = threading.Event()
    monkeypatch.setattr(worker.outputs, "delete_prefixed", lambda prefix: one_returned.wait(10))

    start = threading.Barrier(2)
    results = []

    def sweep():
        try:
            start.wait(5)
            results.append(worker.jobs_sweep())
        finally:
            one_returned.set()
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(results, key=len) == [{"skipped": 1}, {"requeued": 1, "failed": 0, "resent": 0, "woken": 0}]
    assert sent == [job.pk]
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert job.attempts == claimed.attempts
