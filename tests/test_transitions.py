"""Every arrow of the job's state machine (the `Job` docstring), one transition method each.

Each test sets a job up in the source state with every field dirty, takes the arrow, and checks the
exact fields left behind; then tries the arrow again from a wrong state or with a wrong token and checks
it loses and changes nothing.
"""

import ast
import io
import re
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.forms.models import model_to_dict
from django.urls import reverse
from django.utils import timezone
from PIL import Image as PILImage

from tests.helpers import ROOT, create_job, run
from workspace import queue, worker
from workspace.models import Job

pytestmark = pytest.mark.django_db

S = Job.Status
RESERVED = Decimal("1.250000")
FIELDS = (
    "status",
    "preview",
    "preview_count",
    "claim_token",
    "lease_expires_at",
    "reserved_cost",
    "next_attempt_at",
    "retry_reason",
    "error_code",
    "error_message",
    "finished_at",
    "attempts",
    "enqueued_at",
    "started_at",
    "worker",
    "deadline_at",
)


@pytest.fixture
def dirty(project, cast):
    """A job in `status` with every field set to something a transition must keep or clear."""

    def make(status: str, **overrides) -> Job:
        job = create_job(project=project, author=cast.bob)
        now = timezone.now()
        fields = {
            "status": status,
            "preview": f"{job.attempt_prefix(2)}preview-0.png",
            "preview_count": 1,
            "claim_token": uuid.uuid4(),
            "lease_expires_at": now + timedelta(seconds=30),
            "reserved_cost": RESERVED,
            "next_attempt_at": now - timedelta(seconds=5),  # due, for a retrying job
            "retry_reason": "OpenAI is busy right now (rate limit reached).",
            "error_code": "rate_limited",
            "error_message": "An old failure.",
            "finished_at": now - timedelta(minutes=1),
            "attempts": 2,
            "enqueued_at": now - timedelta(minutes=5),
            "started_at": now - timedelta(minutes=2),
            "worker": "old-host:1",
        } | overrides
        Job.objects.filter(pk=job.pk).update(**fields)
        return Job.objects.get(pk=job.pk)

    return make


def fields_of(job: Job) -> dict:
    return Job.objects.filter(pk=job.pk).values(*FIELDS).get()


def row(job: Job) -> dict:
    """Every column, to prove a losing transition changed nothing."""
    return model_to_dict(Job.objects.get(pk=job.pk), fields=[f.name for f in Job._meta.concrete_fields])


def just_now(moment, *, within: float = 5) -> bool:
    return moment is not None and abs((timezone.now() - moment).total_seconds()) < within


def assert_loses(job: Job, take) -> None:
    before = row(job)
    assert not take()
    assert row(job) == before


# --- claim ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [S.QUEUED, S.RETRYING])
def test_claim_takes_a_queued_or_due_job_with_a_fresh_claim(dirty, settings, source):
    job = dirty(source, claim_token=None, lease_expires_at=None, finished_at=None, error_message="")
    before = fields_of(job)

    claimed = Job.objects.claim(job.pk, worker="host:42")

    assert claimed is not None and claimed.pk == job.pk
    after = fields_of(job)
    assert claimed.claim_token == after["claim_token"] is not None
    assert after["claim_token"] != before["claim_token"]
    lease = (after["lease_expires_at"] - timezone.now()).total_seconds()
    assert settings.JOB_LEASE_SECONDS - 5 < lease <= settings.JOB_LEASE_SECONDS
    assert just_now(after["started_at"])
    # Why this is a later attempt (retry_reason, error_code) stays until the job ends, as does what it
    # holds back; the preview and retry time of an attempt that is over do not.
    assert after == before | {
        "status": S.RUNNING,
        "attempts": 3,
        "worker": "host:42",
        "next_attempt_at": None,
        "preview": "",
        "preview_count": 0,
        "claim_token": after["claim_token"],
        "lease_expires_at": after["lease_expires_at"],
        "started_at": after["started_at"],
    }

    assert Job.objects.claim(job.pk, worker="host:43") is None  # running now: a duplicate delivery
    assert fields_of(job) == after


def in_five_minutes():
    """Taken when the test runs, not when it is collected: a slow full suite passes five minutes."""
    return timezone.now() + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("status", "overrides"),
    [
        (S.RUNNING, {}),
        (S.RETRYING, {"next_attempt_at": in_five_minutes}),  # not due yet
        (S.QUEUED, {"attempts": 5}),  # out of attempts
        (S.SUCCEEDED, {}),
        (S.FAILED, {}),
        (S.CANCELED, {}),
    ],
    ids=["running", "retrying-not-due", "queued-out-of-attempts", "succeeded", "failed", "canceled"],
)
def test_claim_takes_nothing_else(dirty, status, overrides):
    job = dirty(status, **{k: v() if callable(v) else v for k, v in overrides.items()})
    before = row(job)
    assert Job.objects.claim(job.pk, worker="host:42") is None
    assert row(job) == before


@pytest.mark.parametrize("source", [S.QUEUED, S.RETRYING])
def test_claim_next_takes_the_job_in_turn_with_a_fresh_claim(dirty, source):
    job = dirty(source, claim_token=None, lease_expires_at=None, finished_at=None, error_message="")
    before = fields_of(job)

    claimed = Job.objects.claim_next(worker="host:42", calls_per_user=8)

    assert claimed is not None and claimed.pk == job.pk
    after = fields_of(job)
    assert after["claim_token"] not in (None, before["claim_token"])
    assert after == before | {
        "status": S.RUNNING,
        "attempts": 3,
        "worker": "host:42",
        "next_attempt_at": None,
        "preview": "",
        "preview_count": 0,
        "claim_token": after["claim_token"],
        "lease_expires_at": after["lease_expires_at"],
        "started_at": after["started_at"],
    }
    assert Job.objects.claim_next(worker="host:43", calls_per_user=8) is None  # nothing else waits
    assert fields_of(job) == after


@pytest.mark.parametrize(
    ("status", "overrides"),
    [
        (S.RUNNING, {}),
        (S.RETRYING, {"next_attempt_at": in_five_minutes}),
        (S.QUEUED, {"attempts": 5}),
        (S.SUCCEEDED, {}),
        (S.FAILED, {}),
        (S.CANCELED, {}),
    ],
    ids=["running", "retrying-not-due", "queued-out-of-attempts", "succeeded", "failed", "canceled"],
)
def test_claim_next_takes_nothing_else(dirty, status, overrides):
    job = dirty(status, **{k: v() if callable(v) else v for k, v in overrides.items()})
    before = row(job)
    assert Job.objects.claim_next(worker="host:42", calls_per_user=0) is None
    assert row(job) == before


# --- renew and show_preview (running → running) ----------------------------------------------------


def test_renew_extends_only_running_leases_of_the_tokens_given(dirty, settings):
    mine = dirty(S.RUNNING, lease_expires_at=timezone.now() + timedelta(seconds=1))
    other = dirty(S.RUNNING)
    before = fields_of(mine)

    assert Job.objects.renew([str(mine.claim_token)]) == 1

    after = fields_of(mine)
    lease = (after["lease_expires_at"] - timezone.now()).total_seconds()
    assert settings.JOB_LEASE_SECONDS - 5 < lease <= settings.JOB_LEASE_SECONDS
    assert after == before | {"lease_expires_at": after["lease_expires_at"]}
    # Another worker's job, and a job that is no longer running with this token, are left alone.
    unrenewed = row(other)
    assert Job.objects.renew([str(uuid.uuid4())]) == 0
    assert row(other) == unrenewed
    gone = dirty(S.QUEUED)
    assert_loses(gone, lambda: Job.objects.renew([str(gone.claim_token)]))
    assert Job.objects.renew([]) == 0


def test_show_preview_writes_only_for_its_own_claim(dirty):
    job = dirty(S.RUNNING)
    before = fields_of(job)
    assert Job.objects.show_preview(job.pk, token=job.claim_token, name="p/new.png", count=2)
    assert fields_of(job) == before | {"preview": "p/new.png", "preview_count": 2}

    assert_loses(job, lambda: Job.objects.show_preview(job.pk, token=uuid.uuid4(), name="x.png", count=9))
    late = dirty(S.QUEUED)
    assert_loses(late, lambda: Job.objects.show_preview(late.pk, token=late.claim_token, name="x", count=9))


# --- a worker's own arrows out of running ----------------------------------------------------------


def test_finish_ends_the_claim_and_releases_the_reservation(dirty):
    job = dirty(S.RUNNING, finished_at=None)
    before = fields_of(job)
    now = timezone.now()

    assert Job.objects.finish(job.pk, token=job.claim_token, now=now)

    assert fields_of(job) == before | {
        "status": S.SUCCEEDED,
        "finished_at": now,
        "reserved_cost": 0,
        "preview": "",
        "preview_count": 1,  # how many partial images the winning attempt streamed
        "claim_token": None,
        "lease_expires_at": None,
        "next_attempt_at": None,
        "retry_reason": "",
        "error_code": "",
        "error_message": "",
    }
    assert_loses(job, lambda: Job.objects.finish(job.pk, token=before["claim_token"], now=now))
    stolen = dirty(S.RUNNING)
    assert_loses(stolen, lambda: Job.objects.finish(stolen.pk, token=uuid.uuid4(), now=now))


def test_fail_by_the_worker_records_why_and_holds_nothing(dirty):
    job = dirty(S.RUNNING, finished_at=None)
    before = fields_of(job)

    assert Job.objects.fail(job.pk, token=job.claim_token, code="moderation_blocked", message="Declined.")

    after = fields_of(job)
    assert just_now(after["finished_at"])
    assert after == before | {
        "status": S.FAILED,
        "finished_at": after["finished_at"],
        "reserved_cost": 0,
        "error_code": "moderation_blocked",
        "error_message": "Declined.",
        "retry_reason": "",
        "next_attempt_at": None,
        "preview": "",
        "preview_count": 0,
        "claim_token": None,
        "lease_expires_at": None,
    }
    assert_loses(job, lambda: Job.objects.fail(job.pk, token=before["claim_token"], code="x", message="x"))
    stolen = dirty(S.RUNNING)
    assert_loses(stolen, lambda: Job.objects.fail(stolen.pk, token=uuid.uuid4(), code="x", message="x"))


def test_schedule_retry_keeps_the_reservation_and_drops_the_claim_and_preview(dirty):
    job = dirty(S.RUNNING, finished_at=None, error_message="", next_attempt_at=None)
    before = fields_of(job)
    at = timezone.now() + timedelta(seconds=30)

    assert Job.objects.schedule_retry(job.pk, token=job.claim_token, code="http_500", reason="Hiccup.", at=at)

    assert fields_of(job) == before | {
        "status": S.RETRYING,
        "next_attempt_at": at,
        "retry_reason": "Hiccup.",
        "error_code": "http_500",
        "preview": "",
        "preview_count": 0,
        "claim_token": None,
        "lease_expires_at": None,
    }
    assert fields_of(job)["reserved_cost"] == RESERVED
    again = dict(token=before["claim_token"], code="x", reason="x", at=at)
    assert_loses(job, lambda: Job.objects.schedule_retry(job.pk, **again))
    stolen = dirty(S.RUNNING)
    wrong = dict(token=uuid.uuid4(), code="x", reason="x", at=at)
    assert_loses(stolen, lambda: Job.objects.schedule_retry(stolen.pk, **wrong))


# --- the sweep's arrows ------------------------------------------------------------------------------


def test_requeue_takes_back_an_expired_claim_without_its_preview(dirty):
    now = timezone.now()
    job = dirty(S.RUNNING, lease_expires_at=now - timedelta(seconds=1), finished_at=None, error_message="")
    before = fields_of(job)

    assert Job.objects.requeue(job.pk, token=job.claim_token, reason="Worker died.", lease_expired_by=now)

    assert fields_of(job) == before | {
        "status": S.QUEUED,
        "enqueued_at": now,
        "retry_reason": "Worker died.",
        "error_code": "interrupted",
        "next_attempt_at": None,
        "preview": "",
        "preview_count": 0,
        "claim_token": None,
        "lease_expires_at": None,
    }
    assert fields_of(job)["reserved_cost"] == RESERVED
    token = before["claim_token"]
    assert_loses(job, lambda: Job.objects.requeue(job.pk, token=token, reason="x", lease_expired_by=now))
    # A lease renewed in the meantime, or a claim another worker holds now, keeps the job.
    alive = dirty(S.RUNNING, lease_expires_at=now + timedelta(seconds=10))
    assert_loses(
        alive,
        lambda: Job.objects.requeue(alive.pk, token=alive.claim_token, reason="x", lease_expired_by=now),
    )
    other = dirty(S.RUNNING, lease_expires_at=now - timedelta(seconds=1))
    assert_loses(
        other, lambda: Job.objects.requeue(other.pk, token=uuid.uuid4(), reason="x", lease_expired_by=now)
    )


def test_fail_by_the_sweep_needs_the_lease_still_expired(dirty):
    now = timezone.now()
    alive = dirty(S.RUNNING, lease_expires_at=now + timedelta(seconds=10))
    assert_loses(
        alive,
        lambda: Job.objects.fail(
            alive.pk, token=alive.claim_token, code="interrupted", message="x", lease_expired_by=now
        ),
    )
    dead = dirty(S.RUNNING, lease_expires_at=now - timedelta(seconds=1))
    assert Job.objects.fail(
        dead.pk, token=dead.claim_token, code="interrupted", message="Stopped.", lease_expired_by=now
    )
    after = fields_of(dead)
    assert (after["status"], after["reserved_cost"], after["preview"], after["claim_token"]) == (
        S.FAILED,
        0,
        "",
        None,
    )


@pytest.mark.parametrize("status", [S.QUEUED, S.RETRYING], ids=str)
def test_resend_stamps_a_job_whose_message_the_broker_refused(dirty, status):
    now = timezone.now()
    due = now + timedelta(seconds=30)
    extra = {"claim_token": None, "lease_expires_at": None, "preview": "", "preview_count": 0}
    job = dirty(status, enqueued_at=None, next_attempt_at=due if status == S.RETRYING else None, **extra)
    before = fields_of(job)

    assert Job.objects.resend(job.pk, now=now)

    # Stamped (a retry keeps its due time, so its backoff holds): a second sweep does not send it again.
    assert fields_of(job) == before | {"enqueued_at": now}
    assert_loses(job, lambda: Job.objects.resend(job.pk, now=now))


@pytest.mark.parametrize("status", [S.RUNNING, S.SUCCEEDED, S.FAILED, S.CANCELED])
def test_resend_leaves_jobs_that_are_not_waiting(dirty, status):
    job = dirty(status, enqueued_at=None)
    assert_loses(job, lambda: Job.objects.resend(job.pk, now=timezone.now()))


def test_resend_leaves_a_job_whose_message_was_sent(dirty):
    """However long ago: a backlog's message is on its way, and resending it is what amplified."""
    job = dirty(S.QUEUED, enqueued_at=timezone.now() - timedelta(hours=1), claim_token=None)
    assert_loses(job, lambda: Job.objects.resend(job.pk, now=timezone.now()))


# --- a person's arrows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [S.QUEUED, S.RETRYING])
def test_cancel_ends_a_waiting_job_and_releases_its_reservation(dirty, source):
    job = dirty(source, finished_at=None)
    before = fields_of(job)

    assert Job.objects.cancel(job.pk)

    after = fields_of(job)
    assert just_now(after["finished_at"])
    assert after == before | {
        "status": S.CANCELED,
        "finished_at": after["finished_at"],
        "reserved_cost": 0,
        "next_attempt_at": None,
        "retry_reason": "",
        "error_code": "",
        "error_message": "",
        "preview": "",
        "preview_count": 0,
        "claim_token": None,
        "lease_expires_at": None,
    }
    assert_loses(job, lambda: Job.objects.cancel(job.pk))


@pytest.mark.parametrize("status", [S.RUNNING, S.SUCCEEDED, S.FAILED])
def test_cancel_is_too_late_for_a_running_or_ended_job(dirty, status):
    job = dirty(status)
    assert_loses(job, lambda: Job.objects.cancel(job.pk))


@pytest.mark.parametrize("source", [S.FAILED, S.CANCELED])
def test_retry_by_hand_starts_over_with_a_new_reservation_and_deadline(dirty, source):
    job = dirty(source, deadline_at=timezone.now() - timedelta(minutes=1))
    before = fields_of(job)

    assert Job.objects.retry(job.pk, reserve=Decimal("0.5"), author_id=job.author_id)

    after = fields_of(job)
    assert just_now(after["enqueued_at"])
    assert after["deadline_at"] > timezone.now()
    assert after == before | {
        "status": S.QUEUED,
        "reserved_cost": Decimal("0.5"),
        "attempts": 0,
        "deadline_at": after["deadline_at"],
        "enqueued_at": after["enqueued_at"],
        "finished_at": None,
        "next_attempt_at": None,
        "retry_reason": "",
        "error_code": "",
        "error_message": "",
        "preview": "",
        "preview_count": 0,
        "claim_token": None,
        "lease_expires_at": None,
    }
    assert_loses(job, lambda: Job.objects.retry(job.pk, reserve=Decimal(9), author_id=job.author_id))


@pytest.mark.parametrize("status", [S.QUEUED, S.RUNNING, S.RETRYING, S.SUCCEEDED])
def test_retry_by_hand_is_only_for_ended_jobs_that_did_not_succeed(dirty, status):
    job = dirty(status)
    assert_loses(job, lambda: Job.objects.retry(job.pk, reserve=Decimal(9), author_id=job.author_id))


# --- end to end ----------------------------------------------------------------------------------------


def png() -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (8, 8), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def test_a_requeued_card_shows_no_preview_of_the_dead_attempt(
    client, project, cast, standin, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(queue, "send_job", lambda job_id, countdown=None: None)
    job = create_job(project=project, author=cast.bob)
    claimed = Job.objects.claim(job.pk, worker="doomed:1")
    worker.PreviewSaver(claimed)(0, png())  # the attempt streamed a partial image, then its worker died
    claimed.refresh_from_db()
    assert claimed.preview and default_storage.exists(claimed.preview.name)
    preview_url = reverse("job_preview", args=[project.pk, job.pk])
    card_url = reverse("job_card", args=[project.pk, job.pk])
    client.force_login(cast.bob)
    assert preview_url in client.get(card_url).content.decode()
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    with django_capture_on_commit_callbacks(execute=True):
        assert worker.jobs_sweep()["requeued"] == 1

    job.refresh_from_db()
    assert (job.status, job.preview, job.preview_count) == (S.QUEUED, "", 0)
    assert not default_storage.exists(claimed.preview.name)
    card = client.get(card_url)
    assert card.status_code == 200
    assert preview_url not in card.content.decode()
    assert client.get(preview_url).status_code == 404

    job = run(job)  # and the next attempt streams its own
    assert (job.status, job.attempts, job.preview_count) == (S.SUCCEEDED, 2, 1)


def test_no_code_but_the_transitions_writes_a_jobs_status():
    """Every `.update(status=...)` in the app is in models.py: the one place the arrows are written
    (webhook_models.py is that place for a webhook delivery's own state machine, campaign_models.py
    for a campaign's)."""
    offenders = []
    arrows = {
        Path("workspace/models.py"),
        Path("workspace/webhook_models.py"),
        Path("workspace/campaign_models.py"),
    }
    for path in sorted((ROOT / "workspace").rglob("*.py")):
        relative = path.relative_to(ROOT)
        # Migrations rewrite history; management commands build benchmark and demo fixtures.
        if relative.parts[1] in ("migrations", "management") or relative in arrows:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("update", "raw", "execute")
                and (
                    any(keyword.arg == "status" for keyword in node.keywords)
                    # The word, not a column like an idempotency record's `status_code`.
                    or any(re.search(r"\bstatus\b", ast.unparse(arg)) for arg in node.args)
                )
            ):
                offenders.append(f"{relative}:{node.lineno}")
    assert offenders == []
