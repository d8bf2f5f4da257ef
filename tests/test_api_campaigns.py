"""Campaigns through /api/v1/: listed and shown with their progress, another project's a 404, the
controls an editor's (a viewer's 403, a transition not allowed a 409 saying why), a catalog batch from
CSV text refused with every problem's row and column and nothing created, and a confirmed batch
queued once however often the same Idempotency-Key is sent. Alice owns the project, bob edits, vera
views, charlie is a stranger with his own project."""

import uuid
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import encode_multipart
from django.urls import reverse

from tests.factories import JobFactory, template_version
from tests.test_api import Api, secret_for
from workspace.campaign_models import Campaign
from workspace.models import ApiCall, Budget, Job, LedgerEntry

pytestmark = pytest.mark.django_db

S = Job.Status


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def bob_api(cast, project):
    return Api(secret_for(cast.bob))


@pytest.fixture
def version(project):
    return template_version(project=project, text="A {product} in {season} light")


def _campaign(project, author, **fields) -> Campaign:
    return Campaign.objects.create(
        project=project, author=author, **({"kind": Campaign.Kind.GRID, "name": "Grid"} | fields)
    )


def url(name: str, project, campaign=None) -> str:
    return reverse(f"api:{name}", args=[project.pk] + ([campaign.pk] if campaign else []))


def test_the_list_is_newest_first_with_my_drafts_only_and_pages(cast, project, bob_api, version):
    older = _campaign(project, cast.bob, template_version=version)
    newer = _campaign(project, cast.alice, axes=[{"name": "quality", "values": ["low", "high"]}])
    _campaign(project, cast.alice, status=Campaign.Status.DRAFT)  # alice's draft: not bob's to see
    mine = _campaign(project, cast.bob, status=Campaign.Status.DRAFT, kind=Campaign.Kind.BATCH)
    answer = bob_api.get(url("campaign-list", project)).json()
    assert [c["id"] for c in answer["campaigns"]] == [mine.pk, newer.pk, older.pk]
    assert answer["next_cursor"] == ""
    listed = {c["id"]: c for c in answer["campaigns"]}
    assert listed[older.pk]["template"] == {
        "id": version.template_id,
        "name": version.template.name,
        "version": version.number,
    }
    assert listed[newer.pk]["axes"] == [{"name": "quality", "values": ["low", "high"]}]
    assert listed[newer.pk]["links"]["pause"] == url("campaign-pause", project, newer)

    for _ in range(21):
        _campaign(project, cast.bob)
    first = bob_api.get(url("campaign-list", project)).json()
    assert len(first["campaigns"]) == 20 and first["next_cursor"]
    second = bob_api.get(url("campaign-list", project), cursor=first["next_cursor"]).json()
    seen = [c["id"] for c in first["campaigns"] + second["campaigns"]]
    assert len(seen) == len(set(seen)) == 24
    assert bob_api.get(url("campaign-list", project), cursor="x").status_code == 400


def test_the_detail_counts_jobs_by_state_and_money_from_the_ledger(cast, project, bob_api, version):
    campaign = _campaign(
        project, cast.bob, template_version=version, overnight=True, estimated_cost=Decimal("0.4")
    )
    done = JobFactory(project=project, author=cast.bob, campaign=campaign, status=S.SUCCEEDED)
    call = ApiCall.objects.create(job=done, attempt=1, endpoint="generate", outcome="ok", latency_ms=5)
    LedgerEntry.objects.create(
        api_call=call, user=cast.bob, project=project, job=done, model="gpt-image-2", cost=Decimal("0.011")
    )
    JobFactory(project=project, author=cast.bob, campaign=campaign, status=S.FAILED)
    JobFactory(project=project, author=cast.bob, campaign=campaign, reserved_cost=Decimal("0.05"))
    JobFactory(project=project, author=cast.bob)  # not the campaign's
    answer = Api(secret_for(cast.vera, scopes=["read"])).get(url("campaign-detail", project, campaign))
    assert answer.status_code == 200
    body = answer.json()
    assert body["kind"] == "grid" and body["status"] == "active" and body["overnight"] is True
    assert body["estimated_cost"] == "0.400000"
    progress = body["progress"]
    assert (progress["total"], progress["done"], progress["failed"], progress["waiting"]) == (3, 1, 1, 1)
    assert progress["percent"] == 66
    assert Decimal(progress["cost"]) == Decimal("0.011")
    assert Decimal(progress["held"]) == Decimal("0.05")


def test_another_projects_campaign_is_a_404_through_my_project(cast, project, other_project, bob_api):
    theirs = _campaign(other_project, cast.charlie)
    for name in ("campaign-detail", "campaign-pause", "campaign-cancel"):
        response = (bob_api.get if name == "campaign-detail" else bob_api.post)(
            reverse(f"api:{name}", args=[project.pk, theirs.pk])
        )
        assert response.status_code == 404, name
        assert response.json()["error"]["code"] == "not_found"
    # And charlie cannot see into bob's project at all.
    assert Api(secret_for(cast.charlie)).get(url("campaign-list", project)).status_code == 404


def test_a_viewer_cannot_pause(cast, project):
    campaign = _campaign(project, cast.bob)
    response = Api(secret_for(cast.vera)).post(url("campaign-pause", project, campaign))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.ACTIVE


def test_pause_resume_cancel_and_the_409s_that_say_why(cast, project, bob_api):
    campaign = _campaign(project, cast.bob)
    running = JobFactory(project=project, author=cast.bob, campaign=campaign, status=S.RUNNING)
    waiting = [JobFactory(project=project, author=cast.bob, campaign=campaign) for _ in range(2)]

    paused = bob_api.post(url("campaign-pause", project, campaign))
    assert paused.status_code == 200 and paused.json()["campaign"]["status"] == "paused"
    again = bob_api.post(url("campaign-pause", project, campaign))
    assert again.status_code == 409
    assert (
        "paused" in again.json()["error"]["message"] and "only a running" in again.json()["error"]["message"]
    )

    resumed = bob_api.post(url("campaign-resume", project, campaign))
    assert resumed.status_code == 200 and resumed.json()["campaign"]["status"] == "active"
    assert bob_api.post(url("campaign-resume", project, campaign)).status_code == 409

    canceled = bob_api.post(url("campaign-cancel", project, campaign))
    assert canceled.status_code == 200
    assert canceled.json()["canceled"] == 2
    assert canceled.json()["campaign"]["progress"]["canceled"] == 2
    assert {job.status for job in Job.objects.filter(pk__in=[j.pk for j in waiting])} == {S.CANCELED}
    running.refresh_from_db()
    assert running.status == S.RUNNING  # it finishes
    assert bob_api.post(url("campaign-cancel", project, campaign)).json()["error"]["code"] == (
        "not_allowed_now"
    )


def test_retry_queues_the_failed_once_and_a_budget_refusal_is_402_with_nothing_queued(cast, project, bob_api):
    campaign = _campaign(project, cast.bob, status=Campaign.Status.FINISHED)
    failed = [
        JobFactory(
            project=project,
            author=cast.bob,
            campaign=campaign,
            status=S.FAILED,
            estimated_cost=Decimal("0.02"),
        )
        for _ in range(2)
    ]
    budget = Budget.objects.create(project=project, monthly_limit=Decimal("0.03"))
    refused = bob_api.post(url("campaign-retry", project, campaign))
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "over_budget"
    # All or nothing: the first retry, fitting alone, was rolled back with the refusal.
    assert {job.status for job in Job.objects.filter(pk__in=[j.pk for j in failed])} == {S.FAILED}
    budget.monthly_limit = Decimal("10")
    budget.save()
    retried = bob_api.post(url("campaign-retry", project, campaign))
    assert retried.status_code == 200, retried.content
    assert retried.json()["queued"] == 2
    assert retried.json()["campaign"]["status"] == "active"
    assert Job.objects.filter(campaign=campaign, status=S.QUEUED).count() == 2


BAD_CSV = "product,season\nmug,spring\nvase,\n=cmd(),winter\n"
GOOD_CSV = "product,season\nmug,spring\nvase,autumn\nbowl,winter\n"


def test_a_bad_csv_is_a_400_naming_each_row_and_column_and_creates_nothing(cast, project, bob_api, version):
    response = bob_api.post(
        url("campaign-batch-create", project),
        {"template_id": version.template_id, "csv": BAD_CSV, "confirm": True},
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_csv"
    assert {(p["row"], p["column"]) for p in error["problems"]} == {(3, "season"), (4, "product")}
    assert error["problem_count"] == 2
    assert "Row 3, column “season”" in " ".join(error["fields"]["csv"])
    assert not Campaign.objects.exists()
    assert not Job.objects.exists()


def test_the_batch_form_s_rules_name_the_api_s_fields(cast, project, other_project, bob_api):
    theirs = template_version(project=other_project, text="A {product}")
    response = bob_api.post(
        url("campaign-batch-create", project),
        {"template_id": theirs.template_id, "csv": "product\nmug\n", "confirm": False, "quality": "ultra"},
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"template_id", "quality"}
    missing = bob_api.post(url("campaign-batch-create", project), {"template_id": theirs.template_id})
    assert missing.json()["error"]["fields"].keys() == {"confirm"}
    assert not Campaign.objects.exists()


def test_a_draft_is_kept_unqueued_when_not_confirmed(cast, project, bob_api, version):
    response = bob_api.post(
        url("campaign-batch-create", project),
        {"template_id": version.template_id, "csv": GOOD_CSV, "confirm": False, "key_column": "product"},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "draft" and body["key_column"] == "product"
    assert body["columns"] == ["product", "season"]
    assert Decimal(body["estimated_cost"]) > 0
    assert not Job.objects.exists()


def test_a_confirmed_batch_is_queued_once_for_a_repeated_key(cast, project, bob_api, version):
    body = {
        "template_id": version.template_id,
        "csv": GOOD_CSV,
        "name": "Spring catalog",
        "key_column": "product",
        "quality": "low",
        "confirm": True,
    }
    first = bob_api.post(url("campaign-batch-create", project), body, key="batch-1")
    assert first.status_code == 201, first.content
    again = bob_api.post(url("campaign-batch-create", project), body, key="batch-1")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    campaign = Campaign.objects.get()
    assert campaign.status == Campaign.Status.ACTIVE and campaign.name == "Spring catalog"
    jobs = list(Job.objects.filter(campaign=campaign).order_by("campaign_row"))
    assert [job.campaign_row for job in jobs] == [2, 3, 4]
    assert {job.quality for job in jobs} == {"low"} and {job.status for job in jobs} == {S.QUEUED}
    assert sum(job.reserved_cost for job in jobs) == campaign.estimated_cost
    assert first.json()["progress"]["waiting"] == 3
    # The same key with another body is refused, not a second batch.
    other = bob_api.post(url("campaign-batch-create", project), body | {"name": "x"}, key="batch-1")
    assert other.status_code == 409
    assert Campaign.objects.count() == 1


def test_a_batch_over_the_budget_is_402_like_a_job_and_creates_nothing(cast, project, bob_api, version):
    Budget.objects.create(project=project, monthly_limit=Decimal("0.000001"))
    response = bob_api.post(
        url("campaign-batch-create", project),
        {"template_id": version.template_id, "csv": GOOD_CSV, "confirm": True},
    )
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "over_budget" and error["message"]
    assert not Campaign.objects.exists() and not Job.objects.exists()


def test_a_confirmed_batch_is_held_to_the_tokens_own_limit(cast, project, version):
    api = Api(secret_for(cast.bob, monthly_limit=Decimal("0.000001")))
    response = api.post(
        url("campaign-batch-create", project),
        {"template_id": version.template_id, "csv": GOOD_CSV, "confirm": True},
    )
    assert response.status_code == 402
    assert not Campaign.objects.exists()


def test_a_csv_over_the_json_body_limit_is_a_400_saying_so_not_a_500(cast, project, bob_api, version):
    rows = "".join(f"item {n:07d},spring\n" for n in range(60_000))  # about 1.2 MB
    response = bob_api.post(
        url("campaign-batch-create", project),
        {"template_id": version.template_id, "csv": "product,season\n" + rows, "confirm": True},
    )
    assert response.status_code == 400, response.content[:200]
    assert "multipart" in response.json()["error"]["message"]
    assert not Campaign.objects.exists()


# --- A CSV uploaded as a multipart file --------------------------------------------------------------


def _upload(api: Api, project, data: bytes, *, key: str = "auto", **fields):
    """POST the batch as multipart: the CSV as its `file`, the rest as form fields."""
    headers = dict(api.headers) | {"Idempotency-Key": str(uuid.uuid4()) if key == "auto" else key}
    body = {"file": SimpleUploadedFile("spring.csv", data, "text/csv")} | fields
    return api.client.post(url("campaign-batch-create", project), body, headers=headers)


def test_a_csv_over_1_mb_uploaded_as_a_file_becomes_a_draft_then_is_confirmed(cast, project, bob_api):
    version = template_version(project=project, text="A {product} in {season} light")
    padding = "x" * 600
    rows = "".join(f"item {n:05d} {padding},spring\n" for n in range(2_000))
    data = ("product,season\n" + rows).encode()
    assert len(data) > 1024 * 1024  # over DATA_UPLOAD_MAX_MEMORY_SIZE: JSON could not carry it
    response = _upload(
        bob_api, project, data, template_id=str(version.template_id), confirm="false", quality="low"
    )
    assert response.status_code == 201, response.content[:300]
    draft = response.json()
    assert draft["status"] == "draft" and draft["columns"] == ["product", "season"]
    campaign = Campaign.objects.get()
    assert campaign.name.endswith("spring.csv") and len(campaign.rows) == 2_000
    assert not Job.objects.exists()

    confirmed = bob_api.post(url("campaign-confirm", project, campaign), {"key_column": "product"})
    assert confirmed.status_code == 200, confirmed.content[:300]
    body = confirmed.json()
    assert body["status"] == "active" and body["key_column"] == "product"
    assert body["progress"]["waiting"] == 2_000
    jobs = Job.objects.filter(campaign=campaign)
    assert jobs.count() == 2_000 and {job.quality for job in jobs} == {"low"}
    assert sum(job.reserved_cost for job in jobs) == Decimal(body["estimated_cost"])


def test_an_uploaded_file_is_held_to_the_batch_page_s_rules_and_limit(cast, project, bob_api, monkeypatch):
    version = template_version(project=project, text="A {product} in {season} light")
    refused = _upload(
        bob_api, project, BAD_CSV.encode(), template_id=str(version.template_id), confirm="true"
    )
    assert refused.status_code == 400
    assert {(p["row"], p["column"]) for p in refused.json()["error"]["problems"]} == {
        (3, "season"),
        (4, "product"),
    }
    flag = _upload(bob_api, project, GOOD_CSV.encode(), template_id=str(version.template_id), confirm="maybe")
    assert flag.status_code == 400 and flag.json()["error"]["fields"] == {
        "confirm": ["Expected true or false."]
    }
    # The batch page's size limit, made small here so the test need not send 50 MB: a body over it is
    # a 413 saying so, read no further; nothing is created.
    monkeypatch.setattr("workspace.campaign_forms.MAX_CSV_BYTES", 1024 * 1024)
    big = b"product,season\n" + b"mug,spring\n" * 200_000  # 2.2 MB
    too_large = _upload(bob_api, project, big, template_id=str(version.template_id), confirm="false")
    assert too_large.status_code == 413, too_large.content[:300]
    error = too_large.json()["error"]
    assert error["code"] == "too_large" and "1,048,576" in error["message"]
    # Within the body's slack but over the form's limit: the form's own field error.
    near = b"product,season\n" + b"mug,spring\n" * 96_000  # just over 1 MB
    over_form = _upload(bob_api, project, near, template_id=str(version.template_id), confirm="false")
    assert over_form.status_code == 400
    assert "at most 1,048,576" in over_form.json()["error"]["fields"]["file"][0]
    assert not Campaign.objects.exists() and not Job.objects.exists()


def test_an_uploaded_batch_is_queued_once_for_a_repeated_key(cast, project, bob_api, version):
    fields = {"template_id": str(version.template_id), "confirm": "true", "key_column": "product"}

    def send(boundary: str):
        # Each retry with its own random boundary, as HTTP clients make them.
        body = fields | {"file": SimpleUploadedFile("spring.csv", GOOD_CSV.encode(), "text/csv")}
        return bob_api.client.post(
            url("campaign-batch-create", project),
            encode_multipart(boundary, body),
            content_type=f"multipart/form-data; boundary={boundary}",
            headers=bob_api.headers | {"Idempotency-Key": "upload-1"},
        )

    first = send(uuid.uuid4().hex)
    assert first.status_code == 201, first.content[:300]
    again = send(uuid.uuid4().hex)
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert Campaign.objects.count() == 1 and Job.objects.count() == 3


# --- Confirming a draft -----------------------------------------------------------------------------


def _draft(api, project, version) -> int:
    response = api.post(
        url("campaign-batch-create", project),
        {"template_id": version.template_id, "csv": GOOD_CSV, "confirm": False},
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_confirming_over_the_budget_is_402_saying_what_is_left_and_the_draft_stays(
    cast, project, bob_api, version
):
    campaign = Campaign.objects.get(pk=_draft(bob_api, project, version))
    Budget.objects.create(project=project, monthly_limit=Decimal("0.000001"))
    refused = bob_api.post(url("campaign-confirm", project, campaign))
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["code"] == "over_budget" and error["remaining"] == "0.00"
    assert "only $0.00 is left" in error["message"]
    assert Decimal(error["needed"]) == campaign.estimated_cost.quantize(Decimal("0.01"))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and len(campaign.rows) == 3
    assert not Job.objects.exists()


def test_confirming_is_held_to_the_tokens_own_limit(cast, project, version):
    api = Api(secret_for(cast.bob, monthly_limit=Decimal("0.000001")))
    campaign_id = _draft(api, project, version)
    refused = api.post(reverse("api:campaign-confirm", args=[project.pk, campaign_id]))
    assert refused.status_code == 402
    assert "token" in refused.json()["error"]["message"]
    assert not Job.objects.exists()


def test_confirming_twice_is_a_409_and_a_key_replays(cast, project, bob_api, version):
    campaign = Campaign.objects.get(pk=_draft(bob_api, project, version))
    first = bob_api.post(url("campaign-confirm", project, campaign), key="confirm-1")
    assert first.status_code == 200, first.content
    replay = bob_api.post(url("campaign-confirm", project, campaign), key="confirm-1")
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    again = bob_api.post(url("campaign-confirm", project, campaign))
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "not_allowed_now" and "only a draft can be confirmed" in error["message"]
    assert Job.objects.filter(campaign=campaign).count() == 3


def test_confirm_refuses_bad_input_strangers_viewers_and_no_key(
    cast, project, other_project, bob_api, version
):
    campaign = Campaign.objects.get(pk=_draft(bob_api, project, version))
    bad_column = bob_api.post(url("campaign-confirm", project, campaign), {"key_column": "colour"})
    assert bad_column.status_code == 400
    assert bad_column.json()["error"]["problems"][0]["column"] == "colour"
    wrong_type = bob_api.post(url("campaign-confirm", project, campaign), {"key_column": 3, "x": 1})
    assert wrong_type.status_code == 400
    assert wrong_type.json()["error"]["fields"] == {
        "key_column": ["Expected a string."],
        "x": ["Unknown field."],
    }
    assert bob_api.post(url("campaign-confirm", project, campaign), key=None).json()["error"]["code"] == (
        "idempotency_key_required"
    )
    theirs = _campaign(other_project, cast.charlie, status=Campaign.Status.DRAFT, kind=Campaign.Kind.BATCH)
    assert bob_api.post(reverse("api:campaign-confirm", args=[project.pk, theirs.pk])).status_code == 404
    assert Api(secret_for(cast.vera)).post(url("campaign-confirm", project, campaign)).status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and not Job.objects.exists()


# --- Variant grids ------------------------------------------------------------------------------------


def test_a_grid_is_planned_without_writing_then_queued_like_the_grid_page(cast, project, bob_api, version):
    body = {
        "template_id": version.template_id,
        "variables": {"season": "spring"},
        "axes": [
            {"name": "var:product", "values": ["mug", "vase"]},
            {"name": "quality", "values": ["low", "medium"]},
        ],
        "confirm": False,
    }
    plan = bob_api.post(url("campaign-grid-create", project), body)
    assert plan.status_code == 200, plan.content
    planned = plan.json()
    assert [cell["values"] for cell in planned["cells"]] == [
        {"var:product": "mug", "quality": "low"},
        {"var:product": "mug", "quality": "medium"},
        {"var:product": "vase", "quality": "low"},
        {"var:product": "vase", "quality": "medium"},
    ]
    assert planned["cells"][2]["prompt"].startswith("A vase in spring light")
    assert planned["cells"][1]["params"]["quality"] == "medium"
    assert Decimal(planned["estimated_cost"]) == sum(Decimal(c["estimated_cost"]) for c in planned["cells"])
    assert not Campaign.objects.exists() and not Job.objects.exists()

    queued = bob_api.post(url("campaign-grid-create", project), body | {"confirm": True, "overnight": True})
    assert queued.status_code == 201, queued.content
    grid = queued.json()
    assert grid["kind"] == "grid" and grid["status"] == "active" and grid["overnight"] is True
    assert grid["axes"] == [
        {"name": "var:product", "values": ["mug", "vase"]},
        {"name": "quality", "values": ["low", "medium"]},
    ]
    assert grid["name"] == f"{version}: {{product}} × Quality"
    jobs = list(Job.objects.filter(campaign_id=grid["id"]).order_by("id"))
    assert [job.cell for job in jobs] == [cell["values"] for cell in planned["cells"]]
    assert [job.prompt for job in jobs] == [cell["prompt"] for cell in planned["cells"]]
    assert sum(job.reserved_cost for job in jobs) == Decimal(grid["estimated_cost"])


def test_a_prompt_grid_over_models_and_sizes(cast, project, bob_api):
    response = bob_api.post(
        url("campaign-grid-create", project),
        {
            "prompt": "A lemon on a blue table",
            "axes": [{"name": "size", "values": ["square", "portrait"]}],
            "quality": "low",
            "name": "Sizes",
            "confirm": True,
        },
    )
    assert response.status_code == 201, response.content
    jobs = Job.objects.filter(campaign_id=response.json()["id"]).order_by("id")
    assert [job.size_preset for job in jobs] == ["square", "portrait"]
    assert {job.quality for job in jobs} == {"low"} and {job.prompt for job in jobs} == {
        "A lemon on a blue table"
    }


def test_a_grid_s_bad_input_names_its_fields_and_creates_nothing(
    cast, project, other_project, bob_api, version
):
    post = lambda body: bob_api.post(url("campaign-grid-create", project), body)  # noqa: E731
    shape = post({"prompt": "x", "axes": [{"name": "quality"}], "confirm": True})
    assert shape.status_code == 400 and set(shape.json()["error"]["fields"]) == {"axes"}
    no_prompt = post({"axes": [{"name": "quality", "values": ["low"]}], "confirm": True})
    assert no_prompt.json()["error"]["fields"] == {"prompt": ["Write a prompt, or choose a template."]}
    bad_value = post({"prompt": "x", "axes": [{"name": "quality", "values": ["ultra"]}], "confirm": True})
    assert "“ultra” is not one of" in bad_value.json()["error"]["fields"]["axes"][0]
    same = post(
        {
            "prompt": "x",
            "axes": [{"name": "quality", "values": ["low"]}, {"name": "quality", "values": ["high"]}],
            "confirm": True,
        }
    )
    assert same.json()["error"]["fields"] == {
        "axes": ["The two axes must differ: choose another second axis."]
    }
    not_an_axis = post({"prompt": "x", "axes": [{"name": "var:product", "values": ["a"]}], "confirm": False})
    assert not_an_axis.json()["error"]["fields"]["axes"][0].startswith("First axis: Select a valid choice")
    theirs = template_version(project=other_project, text="A {product}")
    foreign = post(
        {"template_id": theirs.template_id, "axes": [{"name": "quality", "values": ["low"]}], "confirm": True}
    )
    assert foreign.status_code == 400 and "template_id" in foreign.json()["error"]["fields"]
    unknown = post(
        {
            "template_id": version.template_id,
            "variables": {"colour": "red"},
            "axes": [{"name": "var:product", "values": ["mug"]}],
            "confirm": True,
        }
    )
    assert unknown.json()["error"]["fields"] == {
        "variables": ["{colour} is not a variable of this template."]
    }
    retired = post({"prompt": "x", "axes": [{"name": "model", "values": ["gpt-image-1"]}], "confirm": True})
    assert retired.status_code == 400 and "axes" in retired.json()["error"]["fields"]
    no_confirm = post({"prompt": "x", "axes": [{"name": "quality", "values": ["low"]}]})
    assert set(no_confirm.json()["error"]["fields"]) == {"confirm"}
    no_key = bob_api.post(
        url("campaign-grid-create", project),
        {"prompt": "x", "axes": [{"name": "quality", "values": ["low"]}], "confirm": True},
        key=None,
    )
    assert no_key.status_code == 400 and no_key.json()["error"]["code"] == "idempotency_key_required"
    stranger = Api(secret_for(cast.charlie)).post(
        url("campaign-grid-create", project),
        {"prompt": "x", "axes": [{"name": "quality", "values": ["low"]}], "confirm": True},
    )
    assert stranger.status_code == 404
    assert not Campaign.objects.exists() and not Job.objects.exists()


def test_a_grid_over_the_budget_is_402_saying_what_is_left(cast, project, bob_api):
    Budget.objects.create(project=project, monthly_limit=Decimal("0.000001"))
    response = bob_api.post(
        url("campaign-grid-create", project),
        {"prompt": "A lemon", "axes": [{"name": "quality", "values": ["low", "high"]}], "confirm": True},
    )
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["remaining"] == "0.00" and Decimal(error["needed"]) > 0
    assert not Campaign.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_over_real_http_a_large_upload_is_a_draft_and_a_retry_with_a_new_boundary_replays(
    cast, project, live_server, seeded_prices
):
    import httpx

    version = template_version(project=project, text="A {product} in {season} light")
    rows = "".join(f"item {n:05d} {'y' * 500},autumn\n" for n in range(2_500))
    data = ("product,season\n" + rows).encode()
    assert len(data) > 1024 * 1024
    headers = {"Authorization": f"Bearer {secret_for(cast.bob)}", "Idempotency-Key": "http-upload-1"}
    address = live_server.url + url("campaign-batch-create", project)
    fields = {"template_id": str(version.template_id), "confirm": "false"}
    answers = [
        # httpx makes a new random boundary for each request, as any client does.
        httpx.post(address, data=fields, files={"file": ("big.csv", data, "text/csv")}, headers=headers)
        for _ in range(2)
    ]
    assert answers[0].status_code == 201, answers[0].text[:300]
    assert answers[1].status_code == 201 and answers[1].headers["Idempotent-Replayed"] == "true"
    assert answers[0].json()["id"] == answers[1].json()["id"]
    campaign = Campaign.objects.get()
    assert campaign.status == Campaign.Status.DRAFT and len(campaign.rows) == 2_500


def test_an_older_template_version_runs_when_asked_and_another_templates_version_is_refused(
    cast, project, bob_api, version
):
    newer = template_version(project=project, template=version.template, text="A {product} at {season} dusk")
    other = template_version(project=project, name="Other", text="A {product} in {season} snow")

    listed = bob_api.get(reverse("api:template-list", args=[project.pk])).json()
    mine = next(template for template in listed if template["id"] == version.template_id)
    assert mine["latest"]["id"] == newer.pk
    assert [(v["id"], v["number"]) for v in mine["versions"]] == [(newer.pk, 2), (version.pk, 1)]

    grid = {
        "template_id": version.template_id,
        "template_version_id": version.pk,
        "variables": {"season": "spring"},
        "axes": [{"name": "var:product", "values": ["mug", "vase"]}],
        "confirm": False,
    }
    plan = bob_api.post(url("campaign-grid-create", project), grid)
    assert plan.status_code == 200, plan.content
    assert plan.json()["cells"][0]["prompt"].startswith("A mug in spring light")

    batch = {"template_id": version.template_id, "template_version_id": version.pk, "csv": GOOD_CSV}
    draft = bob_api.post(url("campaign-batch-create", project), batch | {"confirm": False})
    assert draft.status_code == 201, draft.content
    assert Campaign.objects.get(pk=draft.json()["id"]).template_version_id == version.pk

    for path, body in (("campaign-grid-create", grid), ("campaign-batch-create", batch | {"confirm": False})):
        refused = bob_api.post(url(path, project), body | {"template_version_id": other.pk})
        assert refused.status_code == 400, refused.content
        assert "template_version_id" in refused.json()["error"]["fields"], refused.content
