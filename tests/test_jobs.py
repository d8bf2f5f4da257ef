"""The job pipeline against the stand-in over real HTTP: outcomes for success and every fault."""

import hashlib
import io
import time
from datetime import timedelta

import httpx2
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image as PILImage

from standin import resolve_job, usage_for
from tests.helpers import create_job, run
from workspace import jobs, queue, worker
from workspace.imageapi import REASONS
from workspace.models import ApiCall, Job, LedgerEntry

pytestmark = pytest.mark.django_db


def test_it_stores_every_image_with_its_facts_and_a_thumbnail(project, cast, standin):
    job = run(create_job(project=project, author=cast.bob, n=2, size="1536x864", size_preset=""))

    assert job.status == Job.Status.SUCCEEDED
    assert job.attempts == 1
    images = list(job.images.order_by("index"))
    assert [image.index for image in images] == [0, 1]
    for image in images:
        data = default_storage.open(image.file.name).read()
        assert image.sha256 == hashlib.sha256(data).hexdigest()
        assert image.bytes == len(data)
        with PILImage.open(io.BytesIO(data)) as original:
            assert original.size == (1536, 864) == (image.width, image.height)
            assert original.format == "PNG"
        with PILImage.open(default_storage.open(image.thumbnail.name)) as thumb:
            assert thumb.format == "WEBP"
            assert max(thumb.size) == 512
        assert image.file.name.startswith(f"projects/{project.pk}/jobs/{job.pk}/")
        assert image.project_id == project.pk


@pytest.fixture
def wire(monkeypatch):
    """The responses' headers as they came over HTTP, below the SDK and imageapi."""
    seen: list[httpx2.Headers] = []
    handle = httpx2.HTTPTransport.handle_request

    def recording(self, request):
        response = handle(self, request)
        seen.append(response.headers)
        return response

    monkeypatch.setattr(httpx2.HTTPTransport, "handle_request", recording)
    return seen


@pytest.mark.parametrize("n", [1, 2], ids=["streamed", "whole"])
def test_it_records_and_charges_the_call_with_what_the_stand_in_sent(project, cast, standin, wire, n):
    standin.latency = 0.3
    started = time.monotonic()
    job = run(create_job(project=project, author=cast.bob, quality="auto", background="auto", n=n))
    elapsed_ms = (time.monotonic() - started) * 1000

    # What the stand-in answered to the request it recorded, computed by the stand-in itself.
    (sent,) = standin.requests
    resolved = resolve_job("generations", sent.fields, sent.files)
    usage = usage_for(resolved)
    if n == 1:
        del usage["output_tokens_details"]  # streamed completions report usage without it
    (headers,) = wire

    call = ApiCall.objects.get(job=job)
    assert (call.outcome, call.http_status, call.attempt) == (ApiCall.Outcome.OK, 200, 1)
    assert call.endpoint == "images.generate"
    assert call.request_id == headers["x-request-id"]
    assert call.usage == usage
    assert call.input_text_tokens == usage["input_tokens_details"]["text_tokens"]
    assert call.input_image_tokens == 0
    assert call.output_image_tokens == usage["output_tokens"]
    assert call.total_tokens == usage["total_tokens"]
    # "auto" as the service resolved it, not as asked.
    assert (
        (call.response_size, call.response_quality)
        == (resolved.size, resolved.quality)
        == ("1024x1024", "medium")
    )
    assert (call.response_background, call.response_format) == (resolved.background, resolved.output_format)
    assert resolved.background != "auto"
    # The stand-in waited 0.3 s before its last byte; the call cannot have taken longer than the job.
    assert 300 <= call.latency_ms <= elapsed_ms
    assert (call.error_type, call.error_code, call.error_detail) == ("", "", "")

    entry = LedgerEntry.objects.get(job=job)
    assert entry.api_call_id == call.pk
    assert entry.request_id == headers["x-request-id"]
    assert entry.image_count == n
    assert entry.text_input_tokens == usage["input_tokens_details"]["text_tokens"]
    assert entry.image_output_tokens == usage["output_tokens"]
    assert entry.cost > 0


def test_it_records_a_refused_call_with_the_apis_facts_and_charges_nothing(project, cast, standin, wire):
    standin.inject("429:30")
    job = run(create_job(project=project, author=cast.bob))

    call = ApiCall.objects.get(job=job)
    assert (call.outcome, call.http_status, call.error_code) == ("transient", 429, "rate_limited")
    assert call.request_id == wire[0]["x-request-id"]
    assert call.error_type == "RateLimitError"
    assert call.error_detail.startswith("Error code: 429")
    assert call.usage is None
    assert not LedgerEntry.objects.filter(job=job).exists()


def test_it_sends_only_what_the_model_accepts(project, cast, standin):
    run(
        create_job(
            project=project, author=cast.bob, output_format="jpeg", output_compression=70, complexity="high"
        )
    )
    sent = standin.requests[-1].fields
    assert sent["model"] == "gpt-image-2"
    assert sent["output_compression"] == 70
    assert sent["complexity"] == "high"
    assert "input_fidelity" not in sent

    run(
        create_job(
            project=project,
            author=cast.bob,
            model="gpt-image-1.5",
            output_format="png",
            output_compression=80,
        )
    )
    sent = standin.requests[-1].fields
    assert sent["model"] == "gpt-image-1.5"
    assert "output_compression" not in sent  # png takes no compression
    assert "complexity" not in sent


def test_it_retries_a_rate_limit_honouring_retry_after(project, cast, standin):
    standin.inject("429:30")
    job = run(create_job(project=project, author=cast.bob))

    assert job.status == Job.Status.RETRYING
    assert job.retry_reason == REASONS["rate_limited"]
    assert job.next_attempt_at - timezone.now() > timedelta(seconds=28)
    first = ApiCall.objects.get(job=job)
    assert (first.outcome, first.http_status, first.error_code) == ("transient", 429, "rate_limited")
    assert first.request_id.startswith("req_")
    assert first.total_tokens is None  # a refused call costs nothing

    # Too early: a duplicate message must not start the next attempt before its time.
    assert run(job).status == Job.Status.RETRYING
    Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED
    assert job.attempts == 2
    assert list(job.api_calls.values_list("outcome", flat=True)) == ["transient", "ok"]


@pytest.mark.parametrize(
    ("fault", "reason", "code"),
    [
        ("500", REASONS["server_error"], "http_500"),
        ("503", REASONS["server_error"], "http_503"),
        ("drop", REASONS["connection"], "connection"),
        ("garbage", REASONS["unreadable"], "unreadable"),
    ],
)
def test_it_retries_transient_faults_then_succeeds(project, cast, standin, fault, reason, code):
    standin.inject(fault)
    job = run(create_job(project=project, author=cast.bob))
    assert job.status == Job.Status.RETRYING
    assert job.retry_reason == reason
    assert job.error_code == code

    Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED
    assert job.images.count() == 1


def test_it_times_out_a_slow_call_and_retries(project, cast, standin, settings):
    settings.OPENAI_CALL_TIMEOUT = 1.0
    standin.inject("slow:5")
    job = run(create_job(project=project, author=cast.bob))
    assert job.status == Job.Status.RETRYING
    assert job.retry_reason == REASONS["timeout"]
    call = job.api_calls.get()
    assert call.error_type == "APITimeoutError"
    assert 900 <= call.latency_ms < 4000


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("moderation", "OpenAI's safety system declined this prompt. Try describing it differently."),
        ("quota", REASONS["insufficient_quota"]),
        ("401", "The workspace's OpenAI key was refused; ask an admin."),
        ("403", REASONS["forbidden"]),
    ],
)
def test_it_fails_permanent_errors_at_once_in_plain_words(project, cast, standin, fault, reason):
    standin.inject(fault)
    job = run(create_job(project=project, author=cast.bob))
    assert job.status == Job.Status.FAILED
    assert job.error_message == reason
    assert job.attempts == 1
    assert job.finished_at is not None
    assert job.images.count() == 0
    assert len(standin.requests) == 1


def test_it_fails_with_the_apis_reason_when_a_request_is_refused(project, cast, standin):
    # A size the app never sends, to prove a 400 is shown, not retried.
    job = run(create_job(project=project, author=cast.bob, size="512x512"))
    assert job.status == Job.Status.FAILED
    assert job.error_message.startswith("OpenAI could not accept this request:")
    assert "size" in job.error_message.lower()


def test_it_gives_up_after_the_attempt_limit(project, cast, standin):
    standin.inject(*["500"] * 5)
    job = create_job(project=project, author=cast.bob)
    for _ in range(5):
        Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
        job = run(job)
    assert job.status == Job.Status.FAILED
    assert job.error_message.startswith("Gave up after 5 attempts.")
    assert job.api_calls.count() == 5
    assert job.images.count() == 0


def test_a_duplicate_delivery_calls_nothing(project, cast, standin):
    job = run(create_job(project=project, author=cast.bob))
    assert job.status == Job.Status.SUCCEEDED
    calls = len(standin.requests)
    worker.job_run(job_id=job.pk)
    worker.job_run(job_id=job.pk)
    assert len(standin.requests) == calls
    assert job.images.count() == 1


def test_a_running_job_is_not_claimed_twice(project, cast, standin):
    job = create_job(project=project, author=cast.bob)
    assert Job.objects.claim(job.pk, worker="one") is not None
    assert Job.objects.claim(job.pk, worker="two") is None


def test_a_canceled_job_never_calls_the_api(project, cast, standin):
    job = create_job(project=project, author=cast.bob)
    assert jobs.job_cancel(job=job)
    job = run(job)
    assert job.status == Job.Status.CANCELED
    assert standin.requests == []


def test_a_running_job_cannot_be_canceled(project, cast):
    job = create_job(project=project, author=cast.bob)
    Job.objects.claim(job.pk, worker="test")
    assert not jobs.job_cancel(job=job)


def test_a_failed_job_can_be_retried(project, cast, standin, django_capture_on_commit_callbacks):
    standin.inject("moderation")
    job = run(create_job(project=project, author=cast.bob))
    assert job.status == Job.Status.FAILED
    with django_capture_on_commit_callbacks() as callbacks:
        assert jobs.job_retry(job=job, actor=cast.bob)
    assert len(callbacks) == 1  # the message is sent only once the retry is committed
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED
    assert job.attempts == 1


def test_the_sweep_requeues_a_job_whose_worker_died(
    project, cast, standin, media_root, django_capture_on_commit_callbacks
):
    job = create_job(project=project, author=cast.bob)
    claimed = Job.objects.claim(job.pk, worker="test")
    # The dead attempt wrote a file before it was killed.
    leftover = f"projects/{project.pk}/jobs/{job.pk}/a{claimed.attempts}-0.png"
    default_storage.save(leftover, io.BytesIO(b"half"))
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    with django_capture_on_commit_callbacks() as callbacks:
        counts = worker.jobs_sweep()
    assert counts["requeued"] == 1
    assert len(callbacks) == 1
    assert not default_storage.exists(leftover)
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert "stopped before it finished" in job.retry_reason

    job = run(job)
    assert job.status == Job.Status.SUCCEEDED
    assert job.attempts == 2


def test_the_sweep_fails_a_job_interrupted_too_often(project, cast):
    job = create_job(project=project, author=cast.bob)
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.RUNNING, attempts=5, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert worker.jobs_sweep()["failed"] == 1
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "tried 5 times" in job.error_message


def test_the_sweep_sends_a_job_whose_message_the_broker_refused(
    project, cast, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(queue, "send_job", lambda job_id, countdown=None: sent.append(job_id) or True)
    job = create_job(project=project, author=cast.bob)
    Job.objects.unsent(job.pk)
    with django_capture_on_commit_callbacks(execute=True):  # the sweep sends once its stamp commits
        assert worker.jobs_sweep()["resent"] == 1
    assert sent == [job.pk]
    # Stamped, so the next sweep does not send it again.
    assert worker.jobs_sweep()["resent"] == 0


def test_a_late_attempt_that_lost_its_lease_leaves_only_the_answer_it_paid_for(
    project, cast, standin, media_root, monkeypatch
):
    job = create_job(project=project, author=cast.bob)
    original_store = worker.outputs.store_outputs

    def store_then_lose_the_lease(**kwargs):
        stored = original_store(**kwargs)
        Job.objects.filter(pk=job.pk).update(claim_token=None, status=Job.Status.QUEUED)
        return stored

    monkeypatch.setattr(worker.outputs, "store_outputs", store_then_lose_the_lease)
    job = run(job)
    assert job.status == Job.Status.QUEUED
    assert job.images.count() == 0
    folder = media_root / f"projects/{project.pk}/jobs/{job.pk}"
    # No stored image of its own; the answer's bytes stay, named on its call, for the attempt that took over.
    assert sorted(path.name for path in folder.iterdir()) == ["received-a1-0.png"]
    assert ApiCall.objects.get(job=job).received == [f"projects/{project.pk}/jobs/{job.pk}/received-a1-0.png"]


def test_backoff_grows_and_honours_retry_after(settings):
    settings.JOB_RETRY_BASE_SECONDS = 2
    settings.JOB_RETRY_MAX_SECONDS = 60
    first = [worker.backoff_seconds(attempt=1, retry_after=None) for _ in range(50)]
    fourth = [worker.backoff_seconds(attempt=4, retry_after=None) for _ in range(50)]
    assert all(1 <= d <= 2 for d in first)
    assert all(8 <= d <= 16 for d in fourth)
    assert len(set(first)) > 1  # jittered
    assert worker.backoff_seconds(attempt=1, retry_after=25) >= 25
