"""Conversations through /api/v1/: started from an image, read with their turns (status, images, cost
from the ledger), the next message sent as a job through the stand-in over HTTP, a branch from a
finished turn; the page's refusals (a retired model, an unfinished turn, another project's image) as
the API's errors, and nothing created by a refused request. Bob edits, vera views, charlie is a
stranger with his own project."""

from decimal import Decimal

import pytest
from django.urls import reverse

from tests.helpers import create_job, run
from tests.test_api import Api, secret_for
from workspace.models import Budget, Conversation, Image, Job, LedgerEntry, Turn

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def bob_api(cast, project):
    return Api(secret_for(cast.bob))


def _root(project, author) -> Image:
    job = run(create_job(project=project, author=author, model="gpt-image-2"))
    assert job.status == Job.Status.SUCCEEDED, job.error_message
    return job.images.get()


def _start(api: Api, project, image, **kw):
    return api.post(reverse("api:conversation-start", args=[project.pk, image.pk]), **kw)


def _turns_url(project, conversation_id: int) -> str:
    return reverse("api:conversation-turns", args=[project.pk, conversation_id])


def test_a_conversation_is_started_its_turns_run_as_jobs_and_read_with_their_cost(cast, project, bob_api):
    root = _root(project, cast.bob)
    started = _start(bob_api, project, root)
    assert started.status_code == 201, started.content
    thread = started.json()
    assert thread["root_image"] == root.pk and thread["image_model"] == "gpt-image-2"
    assert thread["turns"] == [] and thread["model_problem"] == ""

    sent = bob_api.post(thread["links"]["turns"], {"message": "Make the lemon a lime"}, key="turn-1")
    assert sent.status_code == 201, sent.content
    turn = sent.json()["turns"][0]
    assert turn["message"] == "Make the lemon a lime" and turn["status"] == "queued"
    assert turn["source_image"] == root.pk and turn["image"] is None and Decimal(turn["estimated_cost"]) > 0
    # The same key and body: the first answer again, not a second turn.
    replay = bob_api.post(thread["links"]["turns"], {"message": "Make the lemon a lime"}, key="turn-1")
    assert replay["Idempotent-Replayed"] == "true" and Turn.objects.count() == 1

    job = run(Job.objects.get(pk=turn["job"]))
    assert job.status == Job.Status.SUCCEEDED, job.error_message
    detail = bob_api.get(thread["links"]["self"]).json()
    done = detail["turns"][0]
    made = Turn.objects.get(pk=done["id"])
    assert done["status"] == "succeeded" and done["image"] == made.image_id is not None
    assert done["images"] == [made.image_id]
    charged = sum(LedgerEntry.objects.filter(job=job).values_list("cost", flat=True))
    assert charged > 0 and Decimal(done["cost"]) == charged == Decimal(detail["cost"])

    second = bob_api.post(thread["links"]["turns"], {"message": "Now a blue plate"})
    assert second.status_code == 201
    turns = second.json()["turns"]
    assert [t["index"] for t in turns] == [0, 1]
    assert turns[1]["parent"] == made.pk and turns[1]["source_image"] == made.image_id

    listed = Api(secret_for(cast.vera, scopes=["read"])).get(
        reverse("api:conversation-list", args=[project.pk]), image=root.pk
    )
    assert [c["id"] for c in listed.json()["conversations"]] == [thread["id"]]


def test_a_turn_branches_from_a_finished_turn_into_a_new_conversation(cast, project, bob_api):
    root = _root(project, cast.bob)
    thread = _start(bob_api, project, root).json()
    first = bob_api.post(thread["links"]["turns"], {"message": "Make it a lime"}).json()["turns"][0]
    # An unfinished turn cannot be branched from, nor followed: a 409 saying why, nothing created.
    early = bob_api.post(thread["links"]["turns"], {"message": "Blue", "branch_from": first["id"]})
    assert early.status_code == 409
    assert early.json()["error"]["fields"] == {
        "branch_from": ["Only a turn that has finished its image can be branched."]
    }
    waiting = bob_api.post(thread["links"]["turns"], {"message": "Blue"})
    assert waiting.status_code == 409 and "Wait for the last turn" in waiting.json()["error"]["message"]
    assert Conversation.objects.count() == 1 and Turn.objects.count() == 1

    run(Job.objects.get(pk=first["job"]))
    branched = bob_api.post(thread["links"]["turns"], {"message": "A blue plate", "branch_from": first["id"]})
    assert branched.status_code == 201, branched.content
    branch = branched.json()
    assert branch["id"] != thread["id"] and branch["branched_from"] == first["id"]
    parent = Turn.objects.get(pk=first["id"])
    assert branch["root_image"] == parent.image_id
    assert [t["message"] for t in branch["turns"]] == ["A blue plate"]
    assert branch["turns"][0]["source_image"] == parent.image_id
    # The old thread is as it was.
    assert [t["id"] for t in bob_api.get(thread["links"]["self"]).json()["turns"]] == [first["id"]]


def test_the_page_s_refusals_are_the_api_s_errors_and_create_nothing(cast, project, other_project, bob_api):
    root = _root(project, cast.bob)
    retired_root = _root(project, cast.bob)
    Image.objects.filter(pk=retired_root.pk).update(model="gpt-image-1")
    retired = _start(bob_api, project, Image.objects.get(pk=retired_root.pk))
    assert retired.status_code == 400
    assert "retired" in retired.json()["error"]["fields"]["image"][0]

    old = Conversation.objects.create(
        project=project, author=cast.bob, root_image=root, mainline_model="gpt-5.5", image_model="gpt-image-1"
    )
    refused = bob_api.post(_turns_url(project, old.pk), {"message": "Brighter"})
    assert refused.status_code == 400 and "retired" in refused.json()["error"]["message"]

    thread = _start(bob_api, project, root).json()
    blank = bob_api.post(thread["links"]["turns"], {"message": ""})
    assert blank.json()["error"]["fields"] == {"message": ["This field is required."]}
    long = bob_api.post(thread["links"]["turns"], {"message": "x" * 4001})
    assert "at most 4000" in long.json()["error"]["fields"]["message"][0]
    typed = bob_api.post(thread["links"]["turns"], {"message": 3, "branch_from": "x", "n": 2})
    assert set(typed.json()["error"]["fields"]) == {"message", "branch_from", "n"}
    elsewhere = bob_api.post(thread["links"]["turns"], {"message": "Blue", "branch_from": 999_999})
    assert elsewhere.json()["error"]["fields"] == {"branch_from": ["No such turn in this conversation."]}
    no_key = bob_api.post(thread["links"]["turns"], {"message": "Blue"}, key=None)
    assert no_key.json()["error"]["code"] == "idempotency_key_required"
    viewer = Api(secret_for(cast.vera)).post(thread["links"]["turns"], {"message": "Blue"})
    assert viewer.status_code == 403

    Budget.objects.create(project=project, monthly_limit=Decimal("0.000001"))
    broke = bob_api.post(thread["links"]["turns"], {"message": "Blue"})
    assert broke.status_code == 402 and broke.json()["error"]["code"] == "over_budget"
    assert not Turn.objects.exists() and not Job.objects.filter(kind=Job.Kind.CONVERSE).exists()

    # Another project's image, conversation or turn: a 404 through mine, and nothing of theirs made.
    theirs = _root(other_project, cast.charlie)
    assert _start(bob_api, project, theirs).status_code == 404
    assert _start(bob_api, other_project, theirs).status_code == 404
    their_thread = Conversation.objects.create(
        project=other_project,
        author=cast.charlie,
        root_image=theirs,
        mainline_model="gpt-5.5",
        image_model="gpt-image-2",
    )
    assert (
        bob_api.get(reverse("api:conversation-detail", args=[project.pk, their_thread.pk])).status_code == 404
    )
    assert bob_api.post(_turns_url(project, their_thread.pk), {"message": "Mine now"}).status_code == 404
    assert not Turn.objects.filter(conversation=their_thread).exists()
    assert Conversation.objects.filter(root_image=theirs).count() == 1


def test_a_turn_is_held_to_the_tokens_own_limit(cast, project):
    root = _root(project, cast.bob)
    api = Api(secret_for(cast.bob, monthly_limit=Decimal("0.000001")))
    thread = _start(api, project, root).json()
    refused = api.post(thread["links"]["turns"], {"message": "Make it a lime"})
    assert refused.status_code == 402 and "token" in refused.json()["error"]["message"]
    assert not Turn.objects.exists()
