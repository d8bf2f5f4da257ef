"""An answer that arrived is paid for once: a worker killed between the charge and the store leaves the
answered bytes where the next attempt finds them, and that attempt stores them instead of calling again."""

import hashlib
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from tests.helpers import create_job, run
from workspace import worker
from workspace.models import ApiCall, Job, LedgerEntry

pytestmark = [pytest.mark.django_db(transaction=True)]


def _crash_after_the_charge(job: Job, **meanwhile) -> list[bytes]:
    """Claim, call, record and charge, then die: no finisher, the lease runs out and the sweep requeues.
    `meanwhile`: job fields that change while the worker is dead. Returns the bytes the API sent."""
    claimed = Job.objects.claim(job.pk, worker="doomed:1")
    answer = worker._call(claimed)
    worker._record_and_charge(claimed, answer)
    sent = [image.data for image in answer.result.images]
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1), **meanwhile)
    assert worker.jobs_sweep()["requeued"] == 1
    return sent


@pytest.mark.parametrize("n", [1, 2])  # one image is streamed (with previews), two are not
def test_a_job_killed_between_charge_and_store_finishes_from_the_answer_it_paid_for(
    cast, project, standin, seeded_prices, n
):
    job = create_job(project=project, author=cast.bob, prompt=f"A lemon, {n}", n=n)
    sent = _crash_after_the_charge(job)
    received = ApiCall.objects.get(job=job).received
    assert len(received) == n and all(default_storage.exists(name) for name in received)

    job = run(job)

    assert job.status == Job.Status.SUCCEEDED, job.error_message
    assert job.attempts == 2
    assert len(standin.requests) == 1
    assert LedgerEntry.objects.filter(job=job).count() == 1
    assert ApiCall.objects.filter(job=job).count() == 1
    stored = list(job.images.order_by("index"))
    assert [image.sha256 for image in stored] == [hashlib.sha256(data).hexdigest() for data in sent]
    assert [image.sha256 for image in stored] == standin.requests[0].sent_sha256
    for image in stored:
        with default_storage.open(image.file.name, "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == image.sha256
    # The stored images replace the raw copy: nothing is kept twice, and nothing is left to reuse.
    assert ApiCall.objects.get(job=job).received == []
    assert not any(default_storage.exists(name) for name in received)


def test_an_answer_whose_files_are_gone_is_called_for_again(cast, project, standin, seeded_prices):
    job = create_job(project=project, author=cast.bob, prompt="A lime")
    _crash_after_the_charge(job)
    first = ApiCall.objects.get(job=job)
    default_storage.delete(first.received[0])

    job = run(job)

    assert job.status == Job.Status.SUCCEEDED
    assert len(standin.requests) == 2  # nothing to store from: the only way to the images is a new call
    assert LedgerEntry.objects.filter(job=job).count() == 2
    first.refresh_from_db()
    assert first.received == []


def test_an_unreadable_received_answer_is_not_reused(cast, project, standin, seeded_prices):
    job = create_job(project=project, author=cast.bob, prompt="A kiwi")
    _crash_after_the_charge(job)
    first = ApiCall.objects.get(job=job)
    with default_storage.open(first.received[0], "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\nbroken")

    job = run(job)  # stores nothing: the kept bytes are not an image, so it retries with a new call
    assert job.status == Job.Status.RETRYING
    assert len(standin.requests) == 1
    first.refresh_from_db()
    assert first.received == []

    Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED
    assert len(standin.requests) == 2
    assert job.images.get().sha256 == standin.requests[1].sent_sha256[0]


def test_a_normal_run_keeps_no_raw_copy(cast, project, standin, seeded_prices):
    job = run(create_job(project=project, author=cast.bob, prompt="A pear"))
    assert job.status == Job.Status.SUCCEEDED
    assert ApiCall.objects.get(job=job).received == []
    _, files = default_storage.listdir(job.folder)
    assert not [name for name in files if name.startswith("received-")]
    assert job.images.get().sha256 == standin.requests[0].sent_sha256[0]


def test_a_database_restart_while_recording_an_answered_call_does_not_lose_it(
    cast, project, standin, seeded_prices, monkeypatch
):
    from django.db import OperationalError

    from workspace import spend

    real_charge, broken = spend.charge, []

    def charge_once_broken(**kwargs):
        if not broken:
            broken.append(True)
            raise OperationalError("terminating connection due to administrator command")
        return real_charge(**kwargs)

    monkeypatch.setattr(spend, "charge", charge_once_broken)
    job = run(create_job(project=project, author=cast.bob, prompt="A plum"))

    assert broken == [True]
    assert job.status == Job.Status.SUCCEEDED
    assert len(standin.requests) == 1
    assert ApiCall.objects.filter(job=job).count() == 1
    assert LedgerEntry.objects.filter(job=job).count() == 1


def test_a_database_away_while_a_preview_streams_in_loses_neither_the_answer_nor_the_charge(
    cast, project, standin, seeded_prices, monkeypatch
):
    from django.db import OperationalError

    from workspace.models import JobQuerySet

    def database_away(*_args, **_kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(JobQuerySet, "show_preview", database_away)
    job = run(create_job(project=project, author=cast.bob, n=1))  # one image: streamed with a preview

    assert job.status == Job.Status.SUCCEEDED
    assert len(standin.requests) == 1  # answered once, recorded and charged once: no second call
    call = ApiCall.objects.get(job=job)
    assert call.outcome == ApiCall.Outcome.OK and call.request_id
    assert LedgerEntry.objects.filter(job=job).count() == 1
    assert job.preview == ""


@pytest.mark.parametrize("out_of", ["attempts", "time"])
def test_a_last_attempt_killed_after_its_charge_is_stored_not_failed(
    cast, project, standin, seeded_prices, out_of
):
    """The sweep used to fail a job whose last attempt died, although its paid answer was kept."""
    job = create_job(project=project, author=cast.bob, prompt=f"A quince, out of {out_of}")
    meanwhile = {}
    if out_of == "attempts":
        Job.objects.filter(pk=job.pk).update(max_attempts=1)
    else:  # the deadline passes while the worker is dead
        meanwhile["deadline_at"] = timezone.now() - timedelta(seconds=1)
    sent = _crash_after_the_charge(job, **meanwhile)  # asserts the sweep requeued it, not failed it

    job = run(job)

    assert job.status == Job.Status.SUCCEEDED, job.error_message
    assert job.attempts == 2
    assert len(standin.requests) == 1  # the extra attempt stored the answer; it called nothing
    assert LedgerEntry.objects.filter(job=job).count() == 1
    assert [image.sha256 for image in job.images.all()] == [hashlib.sha256(data).hexdigest() for data in sent]
    assert ApiCall.objects.get(job=job).received == []


def _kill_running(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def test_a_kept_answer_gets_one_extra_attempt_only_and_its_files_go_when_the_job_fails(
    cast, project, standin, seeded_prices
):
    job = create_job(project=project, author=cast.bob, prompt="A medlar")
    Job.objects.filter(pk=job.pk).update(max_attempts=1)
    _crash_after_the_charge(job)
    received = ApiCall.objects.get(job=job).received
    assert received and all(default_storage.exists(name) for name in received)

    # The extra attempt is claimed and dies too, before it stores anything: no third chance.
    assert Job.objects.claim(job.pk, worker="doomed:2") is not None
    _kill_running(job)
    counts = worker.jobs_sweep()

    assert counts["failed"] == 1 and counts["requeued"] == 0
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.error_code == "interrupted"
    assert ApiCall.objects.get(job=job).received == []
    assert not any(default_storage.exists(name) for name in received)  # no orphan raw files
    assert LedgerEntry.objects.filter(job=job).count() == 1  # still paid once


def test_canceling_a_requeued_job_removes_its_kept_answer(cast, project, standin, seeded_prices):
    from workspace import jobs

    job = create_job(project=project, author=cast.bob, prompt="A sloe")
    _crash_after_the_charge(job)
    received = ApiCall.objects.get(job=job).received
    assert received and all(default_storage.exists(name) for name in received)

    assert jobs.job_cancel(job=job)

    job.refresh_from_db()
    assert job.status == Job.Status.CANCELED
    assert ApiCall.objects.get(job=job).received == []
    assert not any(default_storage.exists(name) for name in received)
    _, files = default_storage.listdir(job.folder)
    assert not [name for name in files if name.startswith("received-")]


def test_a_requeued_job_that_fails_for_good_removes_its_kept_answer(cast, project, standin, seeded_prices):
    """Any way a job with a kept answer fails (here: a permanent failure recorded by a later attempt's
    worker) leaves no raw files behind."""
    job = create_job(project=project, author=cast.bob, prompt="A rowan berry")
    _crash_after_the_charge(job)
    received = ApiCall.objects.get(job=job).received
    claimed = Job.objects.claim(job.pk, worker="w:1")

    worker._record_failure(
        claimed, worker.imageapi.CallFailure("The request was refused.", transient=False, code="refused")
    )

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert ApiCall.objects.get(job=job).received == []
    assert not any(default_storage.exists(name) for name in received)
