"""Jobs through real Celery workers over the real Redis broker.

The in-thread worker proves the queue path; the subprocess tests kill a worker with SIGKILL and lose
messages in Redis, and check that beat's sweep brings the job back.
"""

import os
import signal
import threading
import time

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.urls import reverse

from config.celery import app
from tests.conftest import GENERATION_POST, job_params
from tests.helpers import purge_queue as _purge
from tests.helpers import status_of as _status
from tests.helpers import wait_for as _wait_for
from workspace import jobs
from workspace.models import Job, Membership, Project, Role
from workspace.tasks import run_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture
def team(django_user_model):
    user = django_user_model.objects.create_user("wendy", password="pass-for-tests-1")
    project = Project.objects.create(name="Worker test", created_by=user)
    Membership.objects.create(project=project, user=user, role=Role.OWNER)
    return user, project


class Runs:
    """The job ids of run_job tasks an in-thread worker has finished, in order: the positive marker that a
    message was delivered and handled, so a test can then check that handling it did nothing."""

    def __init__(self) -> None:
        self.job_ids: list[int] = []
        self._changed = threading.Condition()

    def __call__(self, sender=None, args=(), **_kwargs) -> None:
        if getattr(sender, "name", "") == "workspace.tasks.run_job":
            with self._changed:
                self.job_ids.append(args[0])
                self._changed.notify_all()

    def wait_for(self, job_id: int, *, times: int = 1, timeout: float = 20) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.job_ids.count(job_id) >= times, timeout=timeout):
                raise AssertionError(f"run_job({job_id}) ran {self.job_ids.count(job_id)} of {times} times")


@pytest.fixture
def runs():
    # The in-thread worker runs tasks in this process, so its signals reach this receiver.
    runs = Runs()
    task_postrun.connect(runs, weak=False)
    yield runs
    task_postrun.disconnect(runs)


@pytest.fixture
def thread_worker():
    _purge()
    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, loglevel="WARNING"):
        yield


def test_a_submitted_job_goes_through_redis_and_a_worker(
    client, team, standin, runs, thread_worker, seeded_prices
):
    # seeded_prices: the form refuses a model without a price, and this test's flush removed them.
    user, project = team
    client.force_login(user)
    response = client.post(
        reverse("job_create", args=[project.pk]), GENERATION_POST | {"n": "2"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    job = Job.objects.get()
    _wait_for(lambda: _status(job.pk) == "succeeded", timeout=20, what="the job to succeed")
    assert job.images.count() == 2
    assert len(_image_calls(standin)) == 1

    # Duplicate deliveries of the same message find the job done and call nothing.
    runs.wait_for(job.pk)
    run_job.delay(job.pk)
    run_job.delay(job.pk)
    runs.wait_for(job.pk, times=3)
    assert len(_image_calls(standin)) == 1
    assert job.images.count() == 2


def test_a_retry_waits_in_the_queue_and_then_succeeds(team, standin, thread_worker):
    user, project = team
    standin.inject("429:1", "500")
    job = jobs.job_create(project=project, author=user, prompt="A pear", params=job_params())
    _wait_for(lambda: _status(job.pk) == "succeeded", timeout=20, what="the job to succeed after two faults")
    job.refresh_from_db()
    assert job.attempts == 3
    assert list(job.api_calls.values_list("http_status", flat=True)) == [429, 500, 200]


def test_a_queued_job_can_be_canceled_before_a_worker_takes_it(team, standin, runs):
    user, project = team
    _purge()
    job = jobs.job_create(project=project, author=user, prompt="A plum", params=job_params())
    assert jobs.job_cancel(job=job)
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        runs.wait_for(job.pk)  # its message was delivered and handled
    assert _status(job.pk) == "canceled"
    assert standin.requests == []


def test_a_killed_workers_job_runs_again_on_another_worker(team, standin, processes):
    user, project = team
    first, second = processes.worker("first"), processes.worker("second")
    processes.beat()
    standin.inject("slow:20")  # the first call hangs, so the job is mid-flight when its worker dies
    job = jobs.job_create(project=project, author=user, prompt="A fig", params=job_params())

    _wait_for(lambda: _status(job.pk) == "running", timeout=30, what="a worker to claim the job")
    _wait_for(lambda: len(standin.requests) == 1, timeout=10, what="the call to be in flight")
    job.refresh_from_db()
    pid = int(job.worker.rsplit(":", 1)[1])
    assert pid in (first.pid, second.pid)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    _wait_for(lambda: _status(job.pk) == "succeeded", timeout=30, what="the job to run again and succeed")
    recovered_in = time.monotonic() - killed_at
    job.refresh_from_db()
    assert job.attempts == 2
    survivor = second if pid == first.pid else first
    assert job.worker.endswith(f":{survivor.pid}")
    assert job.images.count() == 1
    # Lease 3 s, sweep every 1 s: back within seconds, not after the job's 15-minute deadline.
    assert recovered_in < 60, recovered_in
    print(f"\nkilled worker's job succeeded {recovered_in:.1f} s after SIGKILL")


def test_a_job_whose_message_was_lost_is_sent_again(team, standin, processes):
    user, project = team
    job = jobs.job_create(project=project, author=user, prompt="A quince", params=job_params())
    _purge()  # as if Redis restarted without persistence between the commit and a worker's fetch
    processes.worker("only")
    processes.beat()
    _wait_for(lambda: _status(job.pk) == "succeeded", timeout=40, what="the sweep to resend the lost job")
    job.refresh_from_db()
    assert job.attempts == 1


def _image_calls(standin) -> list:
    """The image calls the stand-in received (each output's provenance check is a request too)."""
    return [record for record in standin.requests if record.path.startswith("/v1/images/")]


def test_a_worker_process_caps_its_malloc_arenas_unless_told_otherwise(monkeypatch):
    # Dozens of call threads each fragmenting an arena of their own made a worker's RSS grow with every
    # job (manage.py bench_campaign); config/celery.py caps them when the process is a worker.
    from config import celery as celery_config

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert celery_config._cap_malloc_arenas(2)  # Linux and glibc, as the image and this machine
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")  # glibc read the operator's own choice at start-up
    assert not celery_config._cap_malloc_arenas(2)
