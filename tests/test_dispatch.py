"""Dispatch: the job rows are the queue, a message only wakes a worker, and people take turns.

Issue 13, items 4 and 5: a backlog is delivered once per job (no resends while it waits), a lost message
is made up for only when nothing runs, and one person's thousand jobs do not hold up a teammate's one.
"""

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from tests.conftest import job_params
from tests.helpers import create_job, run_on_sqlite, status_of, wait_for
from workspace import jobs, queue, worker
from workspace.models import Job, Membership, Project, Role

S = Job.Status


def claim() -> Job | None:
    return Job.objects.claim_next(worker="host:1", calls_per_user=8)


def waiting_since(job: Job, seconds: float) -> Job:
    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now() - timedelta(seconds=seconds))
    return job


# --- Taking turns (claim_next) -------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_takes_turns_between_people_oldest_first(project, cast):
    alice = [waiting_since(create_job(project=project, author=cast.alice), 60 - i) for i in range(3)]
    bob = waiting_since(create_job(project=project, author=cast.bob), 10)

    # Nobody runs anything: the oldest job goes first. Then bob, with none running, before alice's next.
    assert [claim().pk for _ in range(4)] == [alice[0].pk, bob.pk, alice[1].pk, alice[2].pk]
    assert claim() is None


@pytest.mark.django_db
def test_it_takes_the_studios_jobs_before_bulk_work(project, cast):
    bulk = waiting_since(create_job(project=project, author=cast.alice, lane=Job.Lane.BULK), 600)
    studio = waiting_since(create_job(project=project, author=cast.alice), 1)

    assert [claim().pk, claim().pk] == [studio.pk, bulk.pk]


@pytest.mark.django_db
def test_it_keeps_a_person_within_their_calls_in_flight(project, cast):
    alice = [waiting_since(create_job(project=project, author=cast.alice), 60 - i) for i in range(3)]
    bob = waiting_since(create_job(project=project, author=cast.bob), 1)
    take = lambda: Job.objects.claim_next(worker="host:1", calls_per_user=2)  # noqa: E731

    assert [take().pk, take().pk, take().pk] == [alice[0].pk, bob.pk, alice[1].pk]
    assert take() is None  # alice has two running, bob has nothing left: alice's third waits
    assert status_of(alice[2].pk) == S.QUEUED
    # 0 is no limit.
    assert Job.objects.claim_next(worker="host:1", calls_per_user=0).pk == alice[2].pk


@pytest.mark.django_db
def test_it_takes_a_retry_only_when_it_is_due(project, cast):
    retry = create_job(project=project, author=cast.alice)
    later = timezone.now() + timedelta(minutes=5)
    Job.objects.filter(pk=retry.pk).update(
        status=S.RETRYING, next_attempt_at=later, enqueued_at=timezone.now()
    )
    assert claim() is None
    Job.objects.filter(pk=retry.pk).update(next_attempt_at=timezone.now())
    assert claim().pk == retry.pk


@pytest.mark.django_db
def test_a_message_runs_jobs_until_none_is_due(project, cast, standin):
    made = [create_job(project=project, author=cast.alice) for _ in range(3)]
    assert worker.jobs_run_next() == 3
    assert {status_of(job.pk) for job in made} == {S.SUCCEEDED}
    assert worker.jobs_run_next() == 0  # a message for a job someone else ran finds nothing


SQLITE_TURNS = """
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from tests.helpers import create_job
from workspace.models import Job, Project
User = get_user_model()
alice, bob = User.objects.create(username="alice"), User.objects.create(username="bob")
project = Project.objects.create(name="Laptop", created_by=alice)
made = {}
waiting = [("a1", alice, 60, 0), ("a2", alice, 50, 0), ("b1", bob, 10, 0), ("bulk", bob, 99, 1)]
for name, author, age, lane in waiting:
    job = create_job(project=project, author=author, lane=lane)
    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now() - timedelta(seconds=age))
    made[job.pk] = name
order = []
while (job := Job.objects.claim_next(worker="laptop:1", calls_per_user=8)) is not None:
    order.append(made[job.pk])
print(json.dumps(order))
"""


def test_it_takes_turns_on_sqlite_too(tmp_path):
    # `make run` keeps jobs in SQLite: the same order, from the query written for it.
    assert run_on_sqlite(SQLITE_TURNS, tmp_path) == ["a1", "b1", "a2", "bulk"]


# --- The sweep: lost messages, never a backlog ------------------------------------------------------------


@pytest.fixture
def broker(monkeypatch):
    """What the sweep sends, and how many messages it finds waiting in the broker."""

    class Broker:
        waiting = 0
        sent: list[int] = []

    monkeypatch.setattr(queue, "messages_waiting", lambda: Broker.waiting)
    monkeypatch.setattr(queue, "send_job", lambda job_id, countdown=None: Broker.sent.append(job_id) or True)
    Broker.sent = []
    return Broker


@pytest.mark.django_db
def test_the_sweep_sends_nothing_for_a_backlog_however_long_it_waits(project, cast, settings, broker):
    long_ago = settings.JOB_REQUEUE_AFTER_SECONDS * 10
    for _ in range(20):
        waiting_since(create_job(project=project, author=cast.alice), long_ago)
    Job.objects.claim_next(worker="host:1", calls_per_user=8)  # a thread runs: it comes back for the rest

    assert worker.jobs_sweep()["woken"] == 0
    # Nothing running, but messages still in the broker: they are on their way.
    Job.objects.filter(status=S.RUNNING).update(status=S.QUEUED, claim_token=None, lease_expires_at=None)
    broker.waiting = 5
    assert worker.jobs_sweep()["woken"] == 0
    assert broker.sent == []


@pytest.mark.django_db
def test_the_sweep_wakes_workers_when_messages_were_lost(
    project, cast, settings, broker, django_capture_on_commit_callbacks
):
    fresh = waiting_since(create_job(project=project, author=cast.alice), 0)
    assert worker.jobs_sweep()["woken"] == 0  # due only just now: its message may be on its way
    old = waiting_since(create_job(project=project, author=cast.bob), settings.JOB_REQUEUE_AFTER_SECONDS + 1)

    # Nothing runs and the broker is empty: one message per due job, each of which drains the rest.
    with django_capture_on_commit_callbacks(execute=True):
        assert worker.jobs_sweep()["woken"] == 2
    assert sorted(broker.sent) == sorted([fresh.pk, old.pk])


@pytest.mark.django_db(transaction=True)
def test_the_sweep_sends_an_unsent_job_only_once_its_stamp_is_committed(project, cast, monkeypatch):
    # Sent inside the sweep's transaction, the message woke a worker whose claim skipped the row the
    # sweep still held locked: it found nothing, and the job waited for the two-minute lost-message check.
    job = create_job(project=project, author=cast.alice)
    Job.objects.unsent(job.pk)
    sent = []

    def send_job(job_id, countdown=None):
        sent.append((job_id, connection.in_atomic_block))
        claimed = Job.objects.claim_next(worker="host:1", calls_per_user=8)
        sent.append(claimed.pk if claimed else None)
        return True

    monkeypatch.setattr(queue, "send_job", send_job)
    assert worker.jobs_sweep()["resent"] == 1
    assert sent == [(job.pk, False), job.pk]


# --- Fair share at submit and on the card -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_person_with_too_many_jobs_waiting_is_told_at_submit(
    client, cast, project, settings, generation_post
):
    settings.FAIR_SHARE_QUEUED_PER_USER = 2
    for _ in range(2):
        create_job(project=project, author=cast.bob)
    create_job(project=project, author=cast.alice)  # someone else's queue is not bob's
    client.force_login(cast.bob)

    response = client.post(reverse("job_create", args=[project.pk]), generation_post, HTTP_HX_REQUEST="true")

    assert response.status_code == 429
    assert "You have 2 jobs waiting; wait for some to finish." in response.content.decode()
    assert Job.objects.filter(author=cast.bob).count() == 2
    with pytest.raises(jobs.TooManyWaiting):
        jobs.job_create(project=project, author=cast.bob, prompt="A pear", params=job_params())


@pytest.mark.django_db
def test_the_card_says_how_many_of_your_jobs_go_first(client, cast, project, django_assert_num_queries):
    ahead = [waiting_since(create_job(project=project, author=cast.bob), 60 - i) for i in range(3)]
    create_job(project=project, author=cast.alice)  # not bob's: not counted
    mine = waiting_since(create_job(project=project, author=cast.bob), 0)
    client.force_login(cast.bob)

    url = reverse("job_card", args=[project.pk, mine.pk])
    client.get(url, HTTP_HX_REQUEST="true")  # the session is cached from here on
    with django_assert_num_queries(2):  # still the user and the card's one query: the count rides along
        card = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "Waiting behind 3 of your jobs" in card
    first = client.get(reverse("job_card", args=[project.pk, ahead[0].pk])).content.decode()
    assert "Waiting for a worker" in first


# --- Through real worker and beat processes -----------------------------------------------------------


@pytest.fixture
def people(django_user_model):
    project_owner = django_user_model.objects.create_user("pat", password="pass-for-tests-1")
    teammate = django_user_model.objects.create_user("tess", password="pass-for-tests-1")
    project = Project.objects.create(name="Dispatch test", created_by=project_owner)
    Membership.objects.create(project=project, user=project_owner, role=Role.OWNER)
    Membership.objects.create(project=project, user=teammate, role=Role.EDITOR)
    return project_owner, teammate, project


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_backlog_is_delivered_once_per_job(people, standin, processes, tmp_path):
    owner, _teammate, project = people
    # A resend window far shorter than the backlog's wait: the old sweep sent every job again each second.
    processes.env |= {"JOB_REQUEUE_AFTER_SECONDS": "1", "JOB_SWEEP_SECONDS": "1"}
    standin.latency = 0.2
    made = [
        jobs.job_create(project=project, author=owner, prompt=f"A pear {i}", params=job_params()).pk
        for i in range(100)
    ]
    processes.worker("only")  # 4 calls at a time: 25 rounds, the last job waits several seconds
    processes.beat()

    wait_for(
        lambda: Job.objects.filter(pk__in=made, status=S.SUCCEEDED).count() == len(made),
        timeout=90,
        what="the backlog to finish",
    )
    executions = wait_for(lambda: _executions(tmp_path), timeout=10, what="the worker's log")
    print(f"\n{len(made)} jobs, {executions} run_job executions")
    assert executions <= len(made) * 1.02


def _executions(tmp_path) -> int:
    # Celery logs each task it ran: "Task workspace.tasks.run_job[<id>] succeeded in 0.5s: 1".
    lines = "".join(log.read_text(errors="replace") for log in tmp_path.glob("worker-*.log")).splitlines()
    return sum(1 for line in lines if "Task workspace.tasks.run_job[" in line and "succeeded in" in line)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_teammates_job_starts_within_a_call_of_a_long_backlog(people, standin, processes):
    owner, teammate, project = people
    latency = 1.0
    standin.latency = latency
    processes.worker("only")  # 4 threads, all of them the owner's while the backlog lasts
    backlog = [
        jobs.job_create(project=project, author=owner, prompt=f"A fig {i}", params=job_params()).pk
        for i in range(100)
    ]
    wait_for(
        lambda: Job.objects.filter(pk__in=backlog, status=S.SUCCEEDED).count() >= 4,
        timeout=60,
        what="the worker to be busy with the backlog",
    )

    submitted = time.monotonic()
    job = jobs.job_create(project=project, author=teammate, prompt="A plum", params=job_params())
    wait_for(
        lambda: status_of(job.pk) != S.QUEUED, timeout=30, interval=0.02, what="the teammate's job to start"
    )
    waited = time.monotonic() - submitted

    print(f"\nteammate's job started {waited:.2f} s after submit, behind {len(backlog)} queued jobs")
    assert waited < latency + 2
    assert Job.objects.filter(pk__in=backlog, status=S.QUEUED).count() > 50  # it did not wait its turn
