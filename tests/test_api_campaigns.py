"""Campaigns through /api/v1/: listed and shown with their progress, another project's a 404, the
controls an editor's (a viewer's 403, a transition not allowed a 409 saying why), a catalog batch from
CSV text refused with every problem's row and column and nothing created, and a confirmed batch
queued once however often the same Idempotency-Key is sent. Alice owns the project, bob edits, vera
views, charlie is a stranger with his own project."""

from decimal import Decimal

import pytest
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
    assert "batch page" in response.json()["error"]["message"]
    assert not Campaign.objects.exists()
