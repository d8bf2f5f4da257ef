"""The overnight lane: jobs through OpenAI's Batch API at half price, against the stand-in over HTTP.

The stand-in's Files and Batch APIs through the real SDK first; then the services (dispatch, poll,
cancel) on the real database with the SDK over HTTP to the stand-in; last, beat and a worker as real
processes carrying a job from submit to stored images.
"""

import json
from decimal import Decimal

import openai
import pytest
from django.urls import reverse

from tests.conftest import job_params
from tests.factories import ImageFactory, ProjectFactory, ReferenceFactory, mask_png, picture
from tests.helpers import create_job, wait_for
from workspace import imageapi, jobs, overnight, spend, worker
from workspace.models import ApiCall, Image, Job, LedgerEntry, OvernightBatch, Price, Role

pytestmark = pytest.mark.django_db


def sdk() -> openai.OpenAI:
    return imageapi.get_client()


def jsonl(*lines: dict) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def generation_line(custom_id: str, **body) -> dict:
    body = {"model": "gpt-image-2", "prompt": "A lemon", "size": "1024x1024", "quality": "low"} | body
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/images/generations", "body": body}


def lines_of(file_id: str) -> list[dict]:
    return [json.loads(line) for line in sdk().files.content(file_id).content.splitlines()]


# --- The stand-in's Files and Batch APIs, through the SDK ---------------------------------------------------


def test_it_stores_an_uploaded_file_and_gives_its_content_back():
    uploaded = sdk().files.create(file=("in.jsonl", b'{"a": 1}\n'), purpose="batch")
    assert uploaded.id.startswith("file-") and uploaded.purpose == "batch" and uploaded.bytes == 9
    assert sdk().files.content(uploaded.id).content == b'{"a": 1}\n'
    assert sdk().files.retrieve(uploaded.id).filename == "in.jsonl"


def test_it_deletes_a_file_as_openai_does_and_its_content_is_gone(standin):
    uploaded = sdk().files.create(file=("in.png", picture()), purpose="vision")
    deleted = sdk().files.delete(uploaded.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (uploaded.id, "file", True)
    assert standin.batches.file_bytes(uploaded.id) is None
    with pytest.raises(openai.NotFoundError):
        sdk().files.content(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        sdk().files.delete(uploaded.id)


def test_a_delete_fault_answers_500_then_deletes_again(standin):
    import urllib.request

    uploaded = sdk().files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
    request = urllib.request.Request(
        standin.base_url.removesuffix("/v1") + "/_standin/batches",
        data=json.dumps({"delete_failures": 1}).encode(),
        method="POST",
    )
    assert urllib.request.urlopen(request, timeout=5).status == 200
    with pytest.raises(openai.InternalServerError):
        sdk().files.delete(uploaded.id)
    assert sdk().files.retrieve(uploaded.id).id == uploaded.id  # still there
    assert sdk().files.delete(uploaded.id).deleted


def test_it_refuses_an_unknown_purpose_and_a_missing_file():
    with pytest.raises(openai.BadRequestError, match="'homework'") as refused:
        sdk().files.create(file=("in.jsonl", b"{}"), purpose="homework")
    assert refused.value.param == "purpose"
    with pytest.raises(openai.NotFoundError):
        sdk().files.content("file-nope")


def test_it_runs_a_batch_with_an_output_line_per_request_and_errors_apart(standin):
    data = jsonl(
        generation_line("one"),
        generation_line("bad-size", size="3000x100"),  # refused by the synchronous endpoint too
        generation_line("blocked", prompt="A lemon [standin:moderation]"),
    )
    input_file = sdk().files.create(file=("in.jsonl", data), purpose="batch")
    batch = sdk().batches.create(
        input_file_id=input_file.id, endpoint="/v1/images/generations", completion_window="24h"
    )
    assert batch.status == "in_progress" and batch.request_counts.total == 3

    done = sdk().batches.retrieve(batch.id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 2)
    [output] = lines_of(done.output_file_id)
    assert output["custom_id"] == "one" and output["error"] is None
    assert output["id"].startswith("batch_req_")
    response = output["response"]
    assert response["status_code"] == 200 and response["request_id"].startswith("req_")
    body = response["body"]
    assert body["usage"]["output_tokens"] > 0 and body["data"][0]["b64_json"]
    errors = {line["custom_id"]: line for line in lines_of(done.error_file_id)}
    assert errors["bad-size"]["response"]["status_code"] == 400
    assert errors["bad-size"]["response"]["body"]["error"]["param"] == "size"
    assert errors["blocked"]["response"]["body"]["error"]["code"] == "moderation_blocked"


def test_it_fails_a_batch_whose_file_is_not_a_batch_file():
    data = jsonl(
        generation_line("a"), generation_line("a"), {**generation_line("b"), "url": "/v1/images/edits"}
    )
    input_file = sdk().files.create(file=("in.jsonl", data), purpose="batch")
    batch = sdk().batches.create(
        input_file_id=input_file.id, endpoint="/v1/images/generations", completion_window="24h"
    )
    assert batch.status == "failed"
    assert [error.code for error in batch.errors.data] == ["duplicate_custom_id", "mismatched_endpoint"]
    assert [error.line for error in batch.errors.data] == [2, 3]


def test_it_refuses_a_batch_of_a_file_not_uploaded_for_batches():
    input_file = sdk().files.create(file=("in.jsonl", jsonl(generation_line("a"))), purpose="vision")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        sdk().batches.create(
            input_file_id=input_file.id, endpoint="/v1/images/edits", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError):
        sdk().batches.retrieve("batch_nope")


def test_it_waits_the_configured_time_then_cancels_and_expires(standin):
    standin.batches.batch_seconds = 3600
    input_file = sdk().files.create(file=("in.jsonl", jsonl(generation_line("a"))), purpose="batch")
    batch = sdk().batches.create(
        input_file_id=input_file.id, endpoint="/v1/images/generations", completion_window="24h"
    )
    assert sdk().batches.retrieve(batch.id).status == "in_progress"
    assert sdk().batches.cancel(batch.id).status == "cancelling"
    cancelled = sdk().batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.output_file_id is None
    with pytest.raises(openai.ConflictError):
        sdk().batches.cancel(batch.id)

    standin.batches.batch_seconds, standin.batches.batch_expire_after = 0, 1
    data = jsonl(generation_line("a"), generation_line("b"))
    input_file = sdk().files.create(file=("in.jsonl", data), purpose="batch")
    batch = sdk().batches.create(
        input_file_id=input_file.id, endpoint="/v1/images/generations", completion_window="24h"
    )
    expired = sdk().batches.retrieve(batch.id)
    assert expired.status == "expired"
    assert [line["custom_id"] for line in lines_of(expired.output_file_id)] == ["a"]
    [late] = lines_of(expired.error_file_id)
    assert late["custom_id"] == "b" and late["error"]["code"] == "batch_expired"


def test_the_knobs_can_be_turned_over_http(standin):
    import urllib.request

    request = urllib.request.Request(
        standin.base_url.removesuffix("/v1") + "/_standin/batches",
        data=json.dumps({"seconds": 7, "expire_after": 2}).encode(),
        method="POST",
    )
    assert urllib.request.urlopen(request, timeout=5).status == 200
    assert (standin.batches.batch_seconds, standin.batches.batch_expire_after) == (7.0, 2)


def test_json_edits_take_uploaded_file_ids(standin):
    image = sdk().files.create(file=("in.png", picture()), purpose="vision")
    answer = sdk().post(
        "/images/edits",
        body={"model": "gpt-image-2", "prompt": "Bluer", "images": [{"file_id": image.id}]},
        cast_to=openai.types.ImagesResponse,
    )
    assert answer.data[0].b64_json and answer.usage.input_tokens_details.image_tokens > 0
    with pytest.raises(openai.NotFoundError):
        sdk().post(
            "/images/edits",
            body={"model": "gpt-image-2", "prompt": "Bluer", "images": [{"file_id": "file-nope"}]},
            cast_to=openai.types.ImagesResponse,
        )


# --- Money --------------------------------------------------------------------------------------------------


def test_every_priced_model_has_the_batch_api_at_half_price():
    assert Price.objects.exists()
    assert set(Price.objects.values_list("batch_factor", flat=True)) == {Decimal("0.500")}


def test_a_batch_estimate_and_charge_are_exactly_the_batch_share_of_the_price():
    price = spend.price_for("gpt-image-2")
    tokens = spend.Tokens(text_input=13, image_output=1757, cached_text_input=3)
    exact = sum(Decimal(getattr(tokens, kind)) * getattr(price, kind) for kind in Price.RATE_FIELDS)
    assert spend.cost(tokens, price, batch=True) == spend.money(exact * Decimal("0.5") / spend.MILLION)
    assert spend.cost(tokens, price, batch=True) < spend.cost(tokens, price)
    args = {"model": "gpt-image-2", "quality": "high", "size": "1024x1024", "n": 2, "prompt": "x" * 40}
    full, half = spend.estimate(**args), spend.estimate(**args, batch=True)
    assert half.cost * 2 == full.cost  # 0.42149 exactly halves: no rounding in between
    assert half.cost == Decimal("0.210745")


# --- Workers never take them --------------------------------------------------------------------------------


def test_workers_never_claim_an_overnight_job(cast, project):
    job = jobs.job_create(
        project=project, author=cast.alice, prompt="A pear", params=job_params(), lane=Job.Lane.OVERNIGHT
    )
    assert Job.objects.claim_next(worker="w", calls_per_user=0) is None
    assert Job.objects.claim(job.pk, worker="w") is None
    worker.job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and job.attempts == 0


def test_the_sweep_never_wakes_workers_for_overnight_jobs(
    cast, project, monkeypatch, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from workspace import queue

    sent = []
    monkeypatch.setattr(queue, "messages_waiting", lambda: 0)
    monkeypatch.setattr(queue, "send_job", lambda job_id, countdown=None: sent.append(job_id) or True)
    settings.JOB_REQUEUE_AFTER_SECONDS = 1
    night = overnight_job(project, cast.alice)
    studio = create_job(project=project, author=cast.alice)
    long_ago = timezone.now() - timedelta(minutes=5)
    Job.objects.filter(pk__in=[night.pk, studio.pk]).update(enqueued_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):  # the sweep sends once it commits
        assert worker.jobs_sweep()["woken"] == 1
    assert sent == [studio.pk]
    Job.objects.filter(pk__in=[night.pk, studio.pk]).update(enqueued_at=None)  # as if unsent
    with django_capture_on_commit_callbacks(execute=True):
        assert worker.jobs_sweep()["resent"] == 1
    assert sent[1:] == [studio.pk]


def test_overnight_jobs_are_reserved_at_the_batch_rate_and_not_sent_to_workers(cast, project, monkeypatch):
    sent = []
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id, **_: sent.append(job_id))
    params = job_params(quality="high")
    job = jobs.job_create(
        project=project, author=cast.alice, prompt="A pear", params=params, lane=Job.Lane.OVERNIGHT
    )
    studio = jobs.job_estimate(prompt="A pear", params=params)
    assert job.reserved_cost * 2 == studio.cost
    assert (
        job.reserved_cost
        == spend.estimate(
            model="gpt-image-2", quality="high", size=params["size"], n=1, prompt="A pear", batch=True
        ).cost
    )


# --- Dispatch, poll, collect --------------------------------------------------------------------------------


def overnight_job(project, author, prompt="A pear on slate", **overrides) -> Job:
    return jobs.job_create(
        project=project,
        author=author,
        prompt=prompt,
        params=job_params(**overrides),
        lane=Job.Lane.OVERNIGHT,
    )


def sent_input(standin) -> list[dict]:
    [batch] = standin.batches.batches.values()
    return [json.loads(line) for line in standin.batches.files[batch.input_file_id].data.splitlines()]


def test_it_sends_collects_and_charges_each_line_at_half_price(cast, project, standin):
    good = [overnight_job(project, cast.alice, prompt=f"A pear, take {n}") for n in range(2)]
    blocked = overnight_job(project, cast.bob, prompt="A pear [standin:moderation]")
    refused = create_job(project=project, author=cast.alice, lane=Job.Lane.OVERNIGHT, size="3000x100")
    standin.batches.batch_seconds = 3600  # still working when first asked

    assert overnight.overnight_dispatch() == 4
    batch = OvernightBatch.objects.get()
    assert batch.openai_batch_id.startswith("batch_") and batch.line_count == 4
    assert batch.endpoint == "/v1/images/generations" and batch.input_file_id
    lines = {line["custom_id"]: line for line in sent_input(standin)}
    for job in [*good, blocked, refused]:
        job.refresh_from_db()
        assert job.overnight_batch == batch and job.status == Job.Status.QUEUED
        assert lines[f"job-{job.pk}"] == {
            "custom_id": f"job-{job.pk}",
            "method": "POST",
            "url": "/v1/images/generations",
            "body": job.api_params(),
        }
    assert overnight.overnight_dispatch() == 0  # nothing waits now

    assert overnight.overnight_poll() == 0
    assert OvernightBatch.objects.get().status == "in_progress"
    [remote] = standin.batches.batches.values()
    remote.ready_at = 0  # its time has come
    assert overnight.overnight_poll() == 1

    batch.refresh_from_db()
    assert batch.status == "completed" and batch.collected_at is not None
    assert (batch.completed_count, batch.failed_count) == (2, 2)
    for job in good:
        job.refresh_from_db()
        assert job.status == Job.Status.SUCCEEDED and job.reserved_cost == 0
        [image] = job.images.all()
        assert image.width == 1024 and image.file.name.startswith(f"{job.folder}/a1-")
        call = ApiCall.objects.get(job=job)
        assert call.overnight_batch == batch and call.endpoint == "batch.images.generate"
        charge = LedgerEntry.objects.get(job=job)
        tokens = spend.Tokens.from_usage(call.usage)
        price = spend.price_for(job.model)
        exact = sum(Decimal(getattr(tokens, kind)) * getattr(price, kind) for kind in Price.RATE_FIELDS)
        assert charge.batch and charge.cost == spend.money(exact / 2 / spend.MILLION)
        assert charge.cost < spend.cost(tokens, price)
        assert charge.rates["image_output"] == str(price.image_output * price.batch_factor)
        assert charge.rates["batch_factor"] == "0.500"
    blocked.refresh_from_db()
    assert blocked.status == Job.Status.FAILED and blocked.reserved_cost == 0
    assert blocked.error_message == imageapi.REASONS["moderation_blocked"]
    refused.refresh_from_db()
    assert refused.status == Job.Status.FAILED
    assert refused.error_message.startswith("OpenAI could not accept this request:")
    assert not LedgerEntry.objects.filter(job__in=[blocked, refused]).exists()

    # Once collected, OpenAI keeps none of its files: input, output, error.
    assert batch.files_to_delete == [] and standin.batches.files == {}
    ledger = list(LedgerEntry.objects.order_by("pk").values_list("pk", "cost"))
    assert overnight.overnight_poll() == 0  # a second poll charges nothing
    assert list(LedgerEntry.objects.order_by("pk").values_list("pk", "cost")) == ledger
    assert ApiCall.objects.count() == 4 and Image.objects.count() == 2


def test_a_poll_that_dies_before_marking_the_batch_collected_collects_again_charging_nothing_twice(
    cast, project, standin, monkeypatch
):
    made = [overnight_job(project, cast.alice, prompt=f"A pear, take {n}") for n in range(2)]
    overnight.overnight_dispatch()

    def dies(*args, **kwargs):
        raise RuntimeError("the poll died here")

    with monkeypatch.context() as patch:
        patch.setattr(type(OvernightBatch.objects.all()), "collected", dies)
        with pytest.raises(RuntimeError):
            overnight.overnight_poll()
    assert len(standin.batches.files) == 2  # nothing deleted before the batch is collected: input, output
    ledger = list(LedgerEntry.objects.order_by("pk").values_list("pk", "cost"))
    assert len(ledger) == 2
    assert overnight.overnight_poll() == 1
    assert list(LedgerEntry.objects.order_by("pk").values_list("pk", "cost")) == ledger
    assert ApiCall.objects.count() == 2 and Image.objects.count() == 2
    assert all(Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED for job in made)
    assert standin.batches.files == {}


def test_a_file_delete_that_fails_is_tried_again_at_the_next_poll(cast, project, standin):
    job = overnight_job(project, cast.alice)
    overnight.overnight_dispatch()
    batch = OvernightBatch.objects.get()
    standin.batches.delete_failures = 1  # the first delete (the input file) answers 500
    assert overnight.overnight_poll() == 1

    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED  # the failure holds no job
    batch.refresh_from_db()
    assert batch.collected_at is not None and batch.files_to_delete == [batch.input_file_id]
    assert list(standin.batches.files) == [batch.input_file_id]  # the output file went
    assert overnight.overnight_poll() == 0
    batch.refresh_from_db()
    assert batch.files_to_delete == [] and standin.batches.files == {}


def test_a_file_already_gone_counts_as_deleted(cast, project, standin):
    overnight_job(project, cast.alice)
    overnight.overnight_dispatch()
    batch = OvernightBatch.objects.get()
    standin.batches.delete_failures = 5  # OpenAI is down while the poll deletes
    overnight.overnight_poll()
    batch.refresh_from_db()
    assert len(batch.files_to_delete) == 2
    standin.batches.delete_failures = 0
    sdk().files.delete(batch.files_to_delete[0])  # deleted meanwhile (by a poll that died, or by hand)
    assert overnight.delete_files() == 2
    batch.refresh_from_db()
    assert batch.files_to_delete == [] and standin.batches.files == {}


def test_a_failed_line_is_retried_in_the_next_overnight_batch(cast, project, standin, monkeypatch):
    sent = []
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id, **_: sent.append(job_id))
    job = overnight_job(project, cast.alice, prompt="A pear [standin:500]")
    overnight.overnight_dispatch()
    overnight.overnight_poll()
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error_message == imageapi.REASONS["server_error"]

    Job.objects.filter(pk=job.pk).update(prompt="A pear")  # as if the problem had passed
    assert jobs.job_retry(job=job, actor=cast.bob)
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and job.lane == Job.Lane.OVERNIGHT
    assert job.overnight_batch is None and job.reserved_cost == job.estimated_cost
    assert sent == []  # no worker is woken for it
    assert overnight.overnight_dispatch() == 1
    overnight.overnight_poll()
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.overnight_batch.line_count == 1
    assert LedgerEntry.objects.get(job=job).user == cast.bob


def test_an_expired_batch_keeps_and_charges_what_finished(cast, project, standin):
    made = [overnight_job(project, cast.alice, prompt=f"A plum, take {n}") for n in range(3)]
    standin.batches.batch_expire_after = 1
    overnight.overnight_dispatch()
    assert overnight.overnight_poll() == 1
    first, *late = (Job.objects.get(pk=job.pk) for job in made)
    assert first.status == Job.Status.SUCCEEDED and first.images.count() == 1
    assert LedgerEntry.objects.get(job=first).batch
    for job in late:
        assert job.status == Job.Status.FAILED and job.reserved_cost == 0
        assert job.error_message == "The overnight batch expired before this image was made."
        assert job.error_code == "batch_expired"
    assert LedgerEntry.objects.count() == 1
    batch = OvernightBatch.objects.get()
    assert batch.status == "expired"
    assert batch.files_to_delete == [] and standin.batches.files == {}  # input, output and error files


def test_canceling_every_waiting_job_cancels_the_batch(cast, project, standin):
    made = [overnight_job(project, cast.alice, prompt=f"A fig, take {n}") for n in range(2)]
    standin.batches.batch_seconds = 3600
    overnight.overnight_dispatch()
    [remote] = standin.batches.batches.values()

    assert overnight.overnight_cancel(job_ids=[made[0].pk]) == 1
    assert remote.status == "in_progress"  # one job still waits for it
    assert overnight.overnight_cancel(job_ids=[job.pk for job in made]) == 1
    assert remote.status == "cancelling"
    for job in made:
        job.refresh_from_db()
        assert job.status == Job.Status.CANCELED and job.reserved_cost == 0
    assert spend.used(user=cast.alice) == 0

    assert overnight.overnight_poll() == 1
    batch = OvernightBatch.objects.get()
    assert batch.status == "cancelled" and batch.collected_at is not None
    assert not LedgerEntry.objects.exists()
    assert batch.files_to_delete == [] and standin.batches.files == {}


def test_the_poll_cancels_a_batch_whose_jobs_were_canceled_from_their_cards(cast, project, standin):
    job = overnight_job(project, cast.alice)
    standin.batches.batch_seconds = 3600
    overnight.overnight_dispatch()
    assert jobs.job_cancel(job=job)
    overnight.overnight_poll()
    [remote] = standin.batches.batches.values()
    assert remote.status == "cancelling"
    assert OvernightBatch.objects.get().status == "cancelling"
    assert overnight.overnight_poll() == 1  # cancelled when next asked, and collected
    assert OvernightBatch.objects.get().status == "cancelled"


def test_a_line_made_before_its_job_was_canceled_is_charged_once_without_images(
    cast, project, standin, media_root
):
    job = overnight_job(project, cast.alice)
    standin.batches.batch_seconds = 3600
    overnight.overnight_dispatch()
    Job.objects.cancel(job.pk)  # the line was already made at OpenAI (ready below): it is paid for
    [remote] = standin.batches.batches.values()
    remote.ready_at = 0
    # The poll sees nobody waits and asks to cancel, but the batch ended first.
    standin.batches.batch_get(remote.id)
    assert overnight.overnight_poll() == 1
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELED and not job.images.exists()
    assert LedgerEntry.objects.filter(job=job).count() == 1
    folder = media_root / job.folder
    assert not folder.exists() or not any(folder.iterdir())


def test_edits_send_their_inputs_as_uploaded_files_and_paste_back_masks(cast, project, standin):
    source = ImageFactory(job__project=project, job__author=cast.alice, width=64, height=48)
    reference = ReferenceFactory(project=project)
    job = jobs.edit_create(
        project=project,
        author=cast.alice,
        prompt="Make the pear blue",
        params=job_params(size="1024x1024"),
        inputs=[source, reference],
        mask=mask_png(width=64, height=48),
        lane=Job.Lane.OVERNIGHT,
    )
    generation = overnight_job(project, cast.alice)
    assert overnight.overnight_dispatch() == 2
    batches = {batch.endpoint: batch for batch in OvernightBatch.objects.all()}
    assert set(batches) == {"/v1/images/edits", "/v1/images/generations"}
    edit_batch = batches["/v1/images/edits"]
    assert len(edit_batch.image_file_ids) == 3  # two inputs and the mask, each uploaded once
    remote = standin.batches.batches[edit_batch.openai_batch_id]
    [line] = [json.loads(raw) for raw in standin.batches.files[remote.input_file_id].data.splitlines()]
    assert line["url"] == "/v1/images/edits"
    assert [list(item) for item in line["body"]["images"]] == [["file_id"], ["file_id"]]
    assert line["body"]["mask"]["file_id"] in edit_batch.image_file_ids
    assert standin.batches.files[line["body"]["images"][0]["file_id"]].purpose == "vision"

    assert overnight.overnight_poll() == 2
    job.refresh_from_db()
    generation.refresh_from_db()
    assert job.status == generation.status == Job.Status.SUCCEEDED
    [image] = job.images.all()
    assert image.composite and image.composite_thumbnail  # pasted back onto the first input
    assert ApiCall.objects.get(job=job).endpoint == "batch.images.edit"
    assert LedgerEntry.objects.get(job=job).image_input_tokens > 0
    # Its uploaded images and mask go with its input and output files.
    assert standin.batches.files == {}
    assert not OvernightBatch.objects.with_files_to_delete().exists()


def test_closing_one_batch_never_deletes_an_image_another_open_batch_uses(cast, project, standin):
    other = ProjectFactory(members={cast.alice: Role.OWNER})
    source = ImageFactory(job__project=project, job__author=cast.alice, width=64, height=48)
    twin = ImageFactory(job__project=other, job__author=cast.alice, width=64, height=48)
    assert twin.sha256 == source.sha256  # the same picture, in two projects
    for where, image in ((project, source), (other, twin)):
        jobs.edit_create(
            project=where,
            author=cast.alice,
            prompt="Make the pear blue",
            params=job_params(size="1024x1024"),
            inputs=[image],
            lane=Job.Lane.OVERNIGHT,
        )
    standin.batches.batch_seconds = 3600
    assert overnight.overnight_dispatch() == 2
    first, second = OvernightBatch.objects.order_by("pk")
    # The same picture in two batches: each uploaded its own copy.
    assert first.image_file_ids and second.image_file_ids
    assert set(first.image_file_ids).isdisjoint(second.image_file_ids)
    standin.batches.batches[first.openai_batch_id].ready_at = 0
    assert overnight.overnight_poll() == 1
    for file_id in first.image_file_ids:
        assert file_id not in standin.batches.files
    for file_id in [second.input_file_id, *second.image_file_ids]:
        assert file_id in standin.batches.files  # the open batch still reads them
    standin.batches.batches[second.openai_batch_id].ready_at = 0
    assert overnight.overnight_poll() == 1
    assert Job.objects.filter(lane=Job.Lane.OVERNIGHT, status=Job.Status.SUCCEEDED).count() == 2
    assert standin.batches.files == {}


def test_batches_keep_to_openais_limits(cast, project, standin, monkeypatch):
    made = [overnight_job(project, cast.alice, prompt=f"A quince, take {n}") for n in range(5)]
    monkeypatch.setattr(overnight, "MAX_LINES", 2)
    assert overnight.overnight_dispatch() == 5
    assert sorted(OvernightBatch.objects.values_list("line_count", flat=True)) == [1, 2, 2]

    for job in made:
        Job.objects.filter(pk=job.pk).update(overnight_batch=None, status=Job.Status.QUEUED)
    line_bytes = len(json.dumps({"custom_id": f"job-{made[0].pk}", "body": made[0].api_params()})) + 60
    monkeypatch.setattr(overnight, "MAX_LINES", 50_000)
    monkeypatch.setattr(overnight, "MAX_INPUT_BYTES", line_bytes * 3)
    assert overnight.overnight_dispatch() == 5
    newest = OvernightBatch.objects.order_by("-pk")[:2]
    assert sorted(batch.line_count for batch in newest) == [2, 3]
    assert all(batch.input_bytes <= line_bytes * 3 for batch in newest)


def test_a_batch_openai_does_not_take_puts_its_jobs_back_to_wait(cast, project, settings):
    job = overnight_job(project, cast.alice)
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens there
    imageapi.reset_client()
    assert overnight.overnight_dispatch() == 0
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and job.overnight_batch is None and job.attempts == 0
    batch = OvernightBatch.objects.get()
    assert batch.status == OvernightBatch.NOT_SENT and batch.errors and batch.collected_at
    assert job.reserved_cost > 0


def test_the_files_of_a_batch_openai_refused_to_create_are_deleted(cast, project, standin, monkeypatch):
    source = ImageFactory(job__project=project, job__author=cast.alice, width=64, height=48)
    job = jobs.edit_create(
        project=project,
        author=cast.alice,
        prompt="Make the pear blue",
        params=job_params(size="1024x1024"),
        inputs=[source],
        lane=Job.Lane.OVERNIGHT,
    )
    monkeypatch.setattr(overnight, "COMPLETION_WINDOW", "1h")  # refused once its files are uploaded
    assert overnight.overnight_dispatch() == 0
    batch = OvernightBatch.objects.get()
    assert batch.status == OvernightBatch.NOT_SENT
    assert len(standin.batches.files) == 2 and set(batch.files_to_delete) == set(standin.batches.files)
    overnight.overnight_poll()
    batch.refresh_from_db()
    assert batch.files_to_delete == [] and standin.batches.files == {}
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and job.overnight_batch is None


def test_a_batch_left_preparing_is_adopted_though_a_hundred_newer_batches_hide_it(cast, project, standin):
    job = overnight_job(project, cast.alice)
    adopted = OvernightBatch.objects.create(project=project, endpoint=overnight.GENERATIONS)
    Job.objects.batch_assign([job.pk], batch_id=adopted.pk)
    line = jsonl({**generation_line(f"job-{job.pk}"), "body": job.api_params()})
    input_file = sdk().files.create(file=("in.jsonl", line), purpose="batch")
    sdk().batches.create(
        input_file_id=input_file.id,
        endpoint=overnight.GENERATIONS,
        completion_window="24h",
        metadata={"atelier_batch": str(adopted.pk)},
    )
    for _ in range(150):  # other tools' batches on the same account, made since
        sdk().batches.create(
            input_file_id=input_file.id, endpoint=overnight.GENERATIONS, completion_window="24h"
        )
    assert overnight.overnight_dispatch() == 0
    adopted.refresh_from_db()
    assert adopted.openai_batch_id and adopted.status != OvernightBatch.NOT_SENT


def test_images_uploaded_before_dispatch_stopped_on_storage_are_recorded_and_deleted(
    cast, project, standin, monkeypatch
):
    sources = [ImageFactory(job__project=project, job__author=cast.alice, width=64, height=48) for _ in "ab"]
    made = [
        jobs.edit_create(
            project=project,
            author=cast.alice,
            prompt=f"Make pear {n} blue",
            params=job_params(size="1024x1024"),
            inputs=[source],
            lane=Job.Lane.OVERNIGHT,
        )
        for n, source in enumerate(sources)
    ]
    read = overnight.worker.edit_files

    def storage_goes_away(job):
        if job.pk == made[1].pk:
            raise OSError("the bucket is unreachable")
        return read(job)

    monkeypatch.setattr(overnight.worker, "edit_files", storage_goes_away)
    with pytest.raises(OSError):
        overnight.overnight_dispatch()
    batch = OvernightBatch.objects.get()
    assert batch.status == OvernightBatch.NOT_SENT
    assert len(standin.batches.files) == 1 and batch.files_to_delete == list(standin.batches.files)
    overnight.overnight_poll()
    assert standin.batches.files == {}
    assert all(Job.objects.get(pk=job.pk).overnight_batch is None for job in made)


def test_a_batch_left_preparing_by_a_dead_dispatcher_is_found_again_or_undone(cast, project, standin):
    kept, undone = overnight_job(project, cast.alice), overnight_job(project, cast.bob)
    adopted = OvernightBatch.objects.create(project=project, endpoint=overnight.GENERATIONS)
    Job.objects.batch_assign([kept.pk], batch_id=adopted.pk)
    lost = OvernightBatch.objects.create(project=project, endpoint=overnight.GENERATIONS)
    Job.objects.batch_assign([undone.pk], batch_id=lost.pk)
    # The dead dispatcher had created the first at OpenAI before it died.
    input_file = sdk().files.create(
        file=("in.jsonl", jsonl({**generation_line(f"job-{kept.pk}"), "body": kept.api_params()})),
        purpose="batch",
    )
    sdk().batches.create(
        input_file_id=input_file.id,
        endpoint=overnight.GENERATIONS,
        completion_window="24h",
        metadata={"atelier_batch": str(adopted.pk)},
    )
    assert overnight.overnight_dispatch() == 1  # the undone one, in a new batch
    adopted.refresh_from_db()
    lost.refresh_from_db()
    assert adopted.openai_batch_id and lost.status == OvernightBatch.NOT_SENT
    overnight.overnight_poll()
    assert Job.objects.get(pk=kept.pk).status == Job.Status.SUCCEEDED
    assert Job.objects.get(pk=undone.pk).status == Job.Status.SUCCEEDED
    assert LedgerEntry.objects.count() == 2


def test_a_batch_left_preparing_is_not_undone_while_openai_cannot_say_whether_it_runs_it(
    cast, project, settings
):
    job = overnight_job(project, cast.alice)
    stale = OvernightBatch.objects.create(project=project, endpoint=overnight.GENERATIONS)
    Job.objects.batch_assign([job.pk], batch_id=stale.pk)
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens there: batches.list fails
    imageapi.reset_client()
    assert overnight.overnight_dispatch() == 0
    stale.refresh_from_db()
    # Undone, its jobs would go out twice and its files be deleted under a batch OpenAI may be running.
    assert stale.status == OvernightBatch.PREPARING and stale.collected_at is None
    assert Job.objects.get(pk=job.pk).overnight_batch_id == stale.pk


# --- The job card -------------------------------------------------------------------------------------------


def test_the_job_card_says_it_waits_for_the_overnight_batch(client, cast, project, standin):
    job = overnight_job(project, cast.alice)
    client.force_login(cast.bob)
    page = client.get(reverse("job_detail", args=[project.pk, job.pk])).content.decode()
    assert "Waiting for the overnight batch (ready within 24 h) · not sent yet." in page
    assert "every 30s" in page
    standin.batches.batch_seconds = 3600
    overnight.overnight_dispatch()
    overnight.overnight_poll()
    card = client.get(reverse("job_card", args=[project.pk, job.pk])).content.decode()
    assert "Waiting for the overnight batch (ready within 24 h) · batch in progress at OpenAI." in card
    assert "Overnight, half price" in card


# --- Through beat and a worker as processes -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_beat_sends_and_collects_overnight_jobs_through_a_worker(cast, project, processes, standin):
    processes.env |= {"OVERNIGHT_POLL_SECONDS": "1"}
    night = overnight_job(project, cast.alice, prompt="A pear by moonlight")
    studio = jobs.job_create(project=project, author=cast.bob, prompt="A pear at noon", params=job_params())
    processes.worker("night")
    processes.beat()
    for job in (night, studio):
        wait_for(
            lambda job=job: Job.objects.filter(pk=job.pk, status=Job.Status.SUCCEEDED).exists(),
            timeout=60,
            what=f"job {job.pk} to succeed",
        )
    night.refresh_from_db()
    # Each line's job ends as the line is collected; the batch is marked collected after its last line.
    wait_for(
        lambda: OvernightBatch.objects.filter(
            pk=night.overnight_batch_id, collected_at__isnull=False
        ).exists(),
        timeout=30,
        what="the batch to be collected",
    )
    assert night.images.count() == 1
    assert night.worker == ""  # no worker ever claimed it
    # Beat's poll deleted the batch's files at OpenAI once it was collected.
    wait_for(
        lambda: not standin.batches.files and not OvernightBatch.objects.with_files_to_delete().exists(),
        timeout=30,
        what="the batch's files to be deleted at OpenAI",
    )
    assert LedgerEntry.objects.get(job=night).batch
    assert not LedgerEntry.objects.get(job=studio).batch
