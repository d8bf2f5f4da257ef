"""Conversations through the Responses API and content credentials, against the stand-in over HTTP."""

import hashlib
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import openai
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from tests.conftest import job_params
from tests.helpers import create_job, run, wait_for
from workspace import conversations, imageapi, provenance
from workspace.models import ApiCall, ContentCredential, Conversation, Image, Job, LedgerEntry

MILLION = Decimal(1_000_000)


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def _root(project, author) -> Image:
    job = run(create_job(project=project, author=author, **job_params(model="gpt-image-2")))
    assert job.status == Job.Status.SUCCEEDED, job.error_message
    return job.images.get()


def _responses(standin) -> list:
    return [record for record in standin.requests if record.path == "/v1/responses"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_three_turns_chain_responses_form_a_lineage_and_are_costed_from_usage(
    cast, project, standin, processes, seeded_prices
):
    root = _root(project, cast.bob)
    standin.provenance_failures = 1  # the first check fails; it is retried and the job is untouched
    processes.env["PROVENANCE_RETRY_BASE_SECONDS"] = "0.2"
    processes.worker("only")
    thread = conversations.conversation_start(project=project, author=cast.bob, image=root)
    assert thread.image_model == "gpt-image-2" and thread.mainline_model == "gpt-5.5"
    turns = []
    for message in ("Make the lemon a lime", "Now a blue plate", "Add morning light"):
        turn = conversations.turn_send(conversation=thread, author=cast.bob, message=message)
        assert turn.job.reserved_cost > 0  # estimated and held back like any job
        wait_for(
            lambda turn=turn: Job.objects.get(pk=turn.job_id).status == Job.Status.SUCCEEDED,
            timeout=40,
            what="the turn to finish",
        )
        turn.refresh_from_db()
        turns.append(turn)

    sent = _responses(standin)
    assert len(sent) == 3
    assert "previous_response_id" not in sent[0].fields
    assert sent[0].fields["input"][0]["content"][1]["type"] == "input_image"
    assert sent[1].fields["previous_response_id"] == turns[0].response_id == sent[0].response_id
    assert sent[2].fields["previous_response_id"] == turns[1].response_id == sent[1].response_id
    for record in sent:
        tool = record.fields["tools"][0]
        assert tool == {
            "type": "image_generation",
            "model": "gpt-image-2",
            "action": "edit",
            "partial_images": 1,
        }
        assert record.fields["model"] == "gpt-5.5"

    # Lineage: each turn's image is a child of the one before it.
    previous = root
    for turn, record in zip(turns, sent, strict=True):
        assert turn.source_image_id == previous.pk
        assert list(turn.job.inputs.values_list("image_id", flat=True)) == [previous.pk]
        assert turn.image.sha256 == record.sent_sha256[0]  # stored byte for byte
        previous = turn.image

    # Cost: two ledger lines per call, each at its model's own rates, from that response's usage.
    for turn in turns:
        call = ApiCall.objects.get(job=turn.job, outcome="ok")
        usage = call.usage
        image_gen, mainline = usage["image_gen"], usage["response"]
        lines = {entry.part: entry for entry in LedgerEntry.objects.filter(api_call=call)}
        assert set(lines) == {"image", "mainline"}
        image_cost = _money(
            (
                Decimal(image_gen["input_tokens_details"]["text_tokens"]) * 5
                + Decimal(image_gen["input_tokens_details"]["image_tokens"]) * 8
                + Decimal(image_gen["output_tokens_details"]["image_tokens"]) * 30
            )
            / MILLION
        )
        cached = mainline["input_tokens_details"]["cached_tokens"]
        mainline_cost = _money(
            (
                Decimal(mainline["input_tokens"] - cached) * Decimal("1.25")
                + Decimal(cached) * Decimal("0.125")
                + Decimal(mainline["output_tokens"]) * 10
            )
            / MILLION
        )
        assert lines["image"].model == "gpt-image-2" and lines["image"].cost == image_cost
        assert lines["mainline"].model == "gpt-5.5" and lines["mainline"].cost == mainline_cost
        assert image_cost > 0 and mainline_cost > 0
        assert turn.job.charges.count() == 2
    assert sent[1].fields["previous_response_id"] and turns[2].job.reserved_cost == 0

    # Credentials: every output checked once after it was stored; the failed first check was retried.
    images = [root.pk, *(turn.image_id for turn in turns)]
    wait_for(
        lambda: ContentCredential.objects.filter(image_id__in=images, state="checked").count() == 4,
        timeout=30,
        what="the provenance checks",
    )
    for credential in ContentCredential.objects.filter(image_id__in=images):
        assert credential.verdict == "verified" and credential.model == "gpt-image-2"
    assert (
        sum(credential.attempts for credential in ContentCredential.objects.filter(image_id__in=images)) == 5
    )
    assert all(Job.objects.get(pk=turn.job_id).status == "succeeded" for turn in turns)


@pytest.mark.django_db
def test_a_stand_in_output_is_stored_byte_for_byte_and_its_credential_verifies(cast, project, standin):
    root = _root(project, cast.bob)
    with default_storage.open(root.file.name, "rb") as handle:
        stored = handle.read()
    assert hashlib.sha256(stored).hexdigest() == standin.requests[-1].sent_sha256[0] == root.sha256
    credential = ContentCredential.objects.create(image=root)
    assert provenance.credential_check(credential_id=credential.pk) == "checked"
    credential.refresh_from_db()
    assert credential.verdict == "verified"
    assert credential.issuer and credential.model == "gpt-image-2" and credential.generated_at
    assert credential.synthid_outcome == "detected"
    assert provenance.credential_check(credential_id=credential.pk) == "skipped"  # checked once


@pytest.mark.django_db
def test_altered_bytes_report_invalid_and_stripped_ones_missing(cast, project, client):
    root = _root(project, cast.bob)
    with default_storage.open(root.file.name, "rb") as handle:
        original = handle.read()
    # One extra chunk before IEND, as a careless re-save would add: the credential no longer verifies.
    end = original.rfind(b"IEND") - 4
    altered = original[:end] + b"\x00\x00\x00\x01tEXtx\x00\x00\x00\x00" + original[end:]
    default_storage.delete(root.file.name)
    default_storage.save(root.file.name, ContentFile(altered))
    credential = ContentCredential.objects.create(image=root)
    provenance.credential_check(credential_id=credential.pk)
    credential.refresh_from_db()
    assert credential.verdict == "invalid"
    client.force_login(cast.bob)
    page = client.get(root.get_absolute_url()).content.decode()
    assert "invalid (altered)" in page
    # A re-encoded copy (what the library does to uploads) carries no credential at all.
    import io

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.open(io.BytesIO(original)).save(buffer, "PNG")
    upload = SimpleUploadedFile("photo.png", buffer.getvalue(), content_type="image/png")
    response = client.post(reverse("credential_check", args=[project.pk]), {"file": upload})
    assert response.status_code == 200
    assert "No OpenAI credential was found" in response.content.decode()
    upload = SimpleUploadedFile("photo.png", original, content_type="image/png")
    page = client.post(reverse("credential_check", args=[project.pk]), {"file": upload}).content.decode()
    assert "This photo carries an OpenAI credential" in page and "verified" in page


@pytest.mark.django_db
def test_a_failed_check_is_retried_later_and_never_fails_the_job(cast, project, standin, settings):
    settings.PROVENANCE_MAX_ATTEMPTS = 3
    root = _root(project, cast.bob)
    credential = ContentCredential.objects.create(image=root)
    standin.provenance_failures = 2
    assert provenance.credential_check(credential_id=credential.pk) == "retry"
    assert provenance.credential_check(credential_id=credential.pk) == "retry"
    credential.refresh_from_db()
    assert credential.state == "pending" and "temporary problem" in credential.error
    assert provenance.credential_check(credential_id=credential.pk) == "checked"
    root.job.refresh_from_db()
    assert root.job.status == Job.Status.SUCCEEDED


@pytest.mark.django_db
def test_a_retired_model_and_another_projects_image_are_refused(cast, project, other_project, client):
    root = _root(project, cast.bob)
    thread = Conversation.objects.create(
        project=project, author=cast.bob, root_image=root, mainline_model="gpt-5.5", image_model="gpt-image-1"
    )
    with pytest.raises(conversations.TurnRefused, match="retired"):
        conversations.turn_send(conversation=thread, author=cast.bob, message="Brighter")
    client.force_login(cast.bob)
    response = client.post(reverse("turn_send", args=[project.pk, thread.pk]), {"message": "Brighter"})
    assert response.status_code == 400 and "retired" in response.content.decode()
    assert not Job.objects.filter(kind=Job.Kind.CONVERSE).exists()
    theirs = _root(other_project, cast.charlie)
    response = client.post(reverse("conversation_start", args=[project.pk, theirs.pk]))
    assert response.status_code == 404
    response = client.post(reverse("conversation_start", args=[other_project.pk, theirs.pk]))
    assert response.status_code == 404
    assert not Conversation.objects.filter(root_image=theirs).exists()


def test_the_stand_in_refuses_what_the_service_refuses(standin):
    client = openai.OpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0)
    tool = {"type": "image_generation", "model": "gpt-image-2", "action": "generate"}
    with pytest.raises(openai.BadRequestError, match="resp_nope"):
        client.responses.create(
            model="gpt-5.5", input="A lemon", tools=[tool], previous_response_id="resp_nope"
        )
    with pytest.raises(openai.BadRequestError, match="gpt-image-1"):
        client.responses.create(model="gpt-5.5", input="A lemon", tools=[tool | {"model": "gpt-image-1"}])
    with pytest.raises(openai.BadRequestError, match=r"tools\[0\]\.n"):
        client.responses.create(model="gpt-5.5", input="A lemon", tools=[tool | {"n": 2}])
    first = client.responses.create(model="gpt-5.5", input="A lemon", tools=[tool])
    assert first.output[0].type == "image_generation_call" and first.output[0].result
    assert first.tool_usage.image_gen.output_tokens > 0 and first.usage.input_tokens > 0
    second = client.responses.create(
        model="gpt-5.5",
        input="Make it a lime",
        tools=[tool | {"action": "edit"}],
        previous_response_id=first.id,
    )
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens_details.cached_tokens > 0
    events = list(
        client.responses.create(
            model="gpt-5.5",
            input="Brighter",
            tools=[tool | {"partial_images": 2}],
            previous_response_id=second.id,
            stream=True,
        )
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.image_generation_call.partial_image") == 2
    assert "response.image_generation_call.generating" in kinds
    assert events[-1].response.tool_usage.image_gen.total_tokens > 0
    check = client.content_provenance_checks.create(
        file=("x.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")
    )
    assert check.results[0].validation_state == "not_present"
    assert imageapi  # the workspace's own client is the same SDK


@pytest.mark.django_db
def test_a_turn_continuing_a_response_openai_no_longer_has_fails_in_words(cast, project, standin):
    root = _root(project, cast.bob)
    thread = conversations.conversation_start(project=project, author=cast.bob, image=root)
    first = conversations.turn_send(conversation=thread, author=cast.bob, message="Make it a lime")
    first.job = run(first.job)
    assert first.job.status == Job.Status.SUCCEEDED, first.job.error_message
    first.refresh_from_db()
    first.response_id = "resp_forgotten"  # as if the stored response had expired at OpenAI
    first.save()
    branch = conversations.conversation_branch(turn=first, author=cast.bob)
    turn = conversations.turn_send(conversation=branch, author=cast.bob, message="Bluer")
    job = run(turn.job)
    assert job.status == Job.Status.FAILED
    assert "Previous response with id 'resp_forgotten' not found" in job.error_message
    assert _responses(standin)[-1].fields["previous_response_id"] == "resp_forgotten"
    assert not LedgerEntry.objects.filter(job=job).exists()  # a refused call costs nothing
    assert job.reserved_cost == 0


@pytest.mark.django_db
def test_the_zip_metadata_carries_the_credential_and_names_derived_files(cast, project):
    from workspace import export

    root = _root(project, cast.bob)
    credential = ContentCredential.objects.create(image=root)
    provenance.credential_check(credential_id=credential.pk)
    images = export.prefetch_for_export(Image.objects.filter(pk=root.pk))
    record = export.export_metadata(images)["images"][0]
    assert record["content_credentials"]["verdict"] == "verified"
    assert record["content_credentials"]["model"] == "gpt-image-2"
    assert {"kind": "thumbnail", "derived_from": "file", "carries_credential": False} in record[
        "derived_files"
    ]


@pytest.mark.django_db
def test_the_sweep_sends_again_a_check_whose_message_was_lost_and_starts_unqueued_ones(
    cast, project, monkeypatch
):
    sent = []
    monkeypatch.setattr(
        provenance.current_app, "send_task", lambda name, args, **options: sent.append((name, args[0]))
    )
    lost, unqueued = _root(project, cast.bob), _root(project, cast.bob)
    credential = ContentCredential.objects.create(image=lost)
    provenance._send(credential.pk)  # its message then vanishes with a Redis restart
    # Neither is due for the sweep yet: the message may be on its way; the job may be queueing its checks.
    Image.objects.filter(pk=unqueued.pk).update(created_at=timezone.now())
    assert provenance.credentials_sweep() == {"resent": 0, "jobs": 0}

    later = timezone.now() - timedelta(hours=1)
    ContentCredential.objects.filter(pk=credential.pk).update(next_check_at=later)
    Image.objects.filter(pk=unqueued.pk).update(created_at=later)
    sent.clear()
    assert provenance.credentials_sweep() == {"resent": 1, "jobs": 1}
    fresh = ContentCredential.objects.get(image=unqueued)
    assert sorted(sent) == sorted(
        [(provenance.CHECK_CREDENTIAL, credential.pk), (provenance.CHECK_CREDENTIAL, fresh.pk)]
    )
    # Both are stamped again, so the next sweep leaves them to their messages.
    assert provenance.credentials_sweep() == {"resent": 0, "jobs": 0}


@pytest.mark.django_db
def test_an_uploaded_photo_is_checked_as_sent_though_the_library_keeps_it_re_encoded(
    cast, project, client, standin, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(
        provenance.current_app, "send_task", lambda name, args, **options: sent.append(args[0])
    )
    with default_storage.open(_root(project, cast.bob).file.name, "rb") as handle:
        openai_made = handle.read()  # carries the stand-in's signed credential
    client.force_login(cast.bob)
    upload = SimpleUploadedFile("from-openai.png", openai_made, content_type="image/png")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("references", args=[project.pk]), {"files": [upload]}).status_code == 302
    reference = project.references.get()
    credential = reference.content_credential
    assert sent == [credential.pk] and credential.verdict == "pending"
    as_sent = provenance.as_sent_name(reference)
    assert default_storage.exists(as_sent)
    with default_storage.open(reference.file.name, "rb") as handle:
        assert handle.read() != openai_made  # what the library serves was re-encoded

    assert provenance.credential_check(credential_id=credential.pk) == "checked"
    credential.refresh_from_db()
    assert credential.verdict == "verified" and credential.model == "gpt-image-2"
    assert not default_storage.exists(as_sent)  # kept only for the check
    page = client.get(reverse("references", args=[project.pk])).content.decode()
    assert "Carries an OpenAI credential (gpt-image-2)" in page


@pytest.mark.django_db
def test_a_gif_cannot_start_a_conversation_even_by_a_hand_made_post(cast, project, client, standin):
    """The image page offers no "Refine in conversation" on a GIF or SVG (a model makes them, it does
    not take them); a POST made by hand is refused the same way, before any thread or job exists."""
    params = job_params(model="gpt-image-2.6-sunburst") | {"output_format": "gif", "frame_count": 3}
    gif = run(create_job(project=project, author=cast.bob, **params)).images.get()
    assert gif.format == "gif"
    with pytest.raises(conversations.TurnRefused, match="GIF"):
        conversations.conversation_start(project=project, author=cast.bob, image=gif)
    client.force_login(cast.bob)
    response = client.post(reverse("conversation_start", args=[project.pk, gif.pk]), follow=True)
    assert "cannot be refined in a conversation" in response.content.decode()
    assert not Conversation.objects.exists() and not Job.objects.filter(kind=Job.Kind.CONVERSE).exists()


@pytest.mark.django_db
def test_after_a_failed_turn_the_next_message_continues_from_the_last_good_one(cast, project, standin):
    """A message refused for good (moderation, here) must not end the thread: the next message is sent,
    continuing the last turn that made an image, not the failed one (which has no response)."""
    root = _root(project, cast.bob)
    thread = conversations.conversation_start(project=project, author=cast.bob, image=root)
    first = conversations.turn_send(conversation=thread, author=cast.bob, message="Make it a lime")
    assert run(first.job).status == Job.Status.SUCCEEDED
    first.refresh_from_db()
    standin.inject("moderation")
    refused = conversations.turn_send(conversation=thread, author=cast.bob, message="Something refused")
    assert run(refused.job).status == Job.Status.FAILED

    again = conversations.turn_send(conversation=thread, author=cast.bob, message="Put it on a plate")
    assert again.index == 2 and again.parent_id == first.pk and again.source_image_id == first.image_id
    assert run(again.job).status == Job.Status.SUCCEEDED
    assert _responses(standin)[-1].fields["previous_response_id"] == first.response_id

    # While a turn is still running, the next message waits for it.
    waiting = conversations.turn_send(conversation=thread, author=cast.bob, message="Brighter")
    with pytest.raises(conversations.TurnRefused, match="Wait for the last turn"):
        conversations.turn_send(conversation=thread, author=cast.bob, message="And darker")
    assert waiting.job.status == Job.Status.QUEUED


@pytest.mark.django_db
def test_a_turn_retried_after_a_server_error_is_charged_once_from_the_call_that_answered(
    cast, project, standin
):
    """A 500 has no usage and costs nothing; the retry's response is charged as two lines, each at its
    own model's rates, once, and the hold is released."""
    root = _root(project, cast.bob)
    thread = conversations.conversation_start(project=project, author=cast.bob, image=root)
    turn = conversations.turn_send(conversation=thread, author=cast.bob, message="Make it a lime")
    standin.inject("500")
    job = run(turn.job)
    assert job.status == Job.Status.RETRYING and not LedgerEntry.objects.filter(job=job).exists()
    Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED, job.error_message
    answered = ApiCall.objects.get(job=job, outcome=ApiCall.Outcome.OK)
    assert ApiCall.objects.filter(job=job).count() == 2
    lines = LedgerEntry.objects.filter(job=job)
    assert sorted(lines.values_list("part", "model", "api_call_id")) == [
        ("image", "gpt-image-2", answered.pk),
        ("mainline", "gpt-5.5", answered.pk),
    ]
    run(job)  # a duplicate message for the finished job changes nothing
    assert LedgerEntry.objects.filter(job=job).count() == 2 and job.reserved_cost == 0
