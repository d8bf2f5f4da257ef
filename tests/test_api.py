"""The /api/v1/ interface: tokens, job creation and its refusals, idempotency, images, references,
spend, rate limits and the one error shape. Alice owns the project, bob edits, vera views, charlie is
a stranger with his own project, sam is staff."""

import base64
import json
import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image as PILImage

from tests.factories import ImageFactory, JobFactory, ReferenceFactory, mask_png, picture
from tests.helpers import purge_queue
from workspace.api.models import ApiToken, ApiTokenJob, IdempotencyRecord
from workspace.api.tokens import token_create
from workspace.models import Budget, Job, Reference

pytestmark = pytest.mark.django_db

BODY = {"prompt": "A lemon on a blue tiled table, morning light", "quality": "low", "size": "square"}


# Queries to create a job through the API, without budgets and with three. In a test's transaction,
# so each atomic block inside the request counts two more (its SAVEPOINT and RELEASE).
QUERY_BOUND = {False: 14, True: 15}


def secret_for(user, scopes=("read", "generate"), **extra) -> str:
    return token_create(user=user, name="script", scopes=list(scopes), **extra).secret


class Api:
    """A client that sends a bearer token and JSON."""

    def __init__(self, secret: str | None) -> None:
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {secret}"} if secret else {}

    def get(self, url: str, **query):
        return self.client.get(url, query, headers=self.headers)

    def post(self, url: str, body=None, *, key: str | None = "auto", raw: str | None = None, **kw):
        headers = dict(self.headers)
        if key:
            headers["Idempotency-Key"] = str(uuid.uuid4()) if key == "auto" else key
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(url, data, content_type="application/json", headers=headers, **kw)


def jobs_url(project) -> str:
    return reverse("api:job-create", args=[project.pk])


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["message"]
    if code:
        assert error["code"] == code, error
    return error


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Requests without a token share one client address here: start each test with a fresh count."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def bob_api(cast, project):
    return Api(secret_for(cast.bob))


# --- Tokens --------------------------------------------------------------------------------------


def test_it_stores_only_the_hash_and_a_display_prefix(cast):
    made = token_create(user=cast.bob, name="ci", scopes=["read"])
    assert made.secret.startswith("atl_") and len(made.secret) == 44
    token = ApiToken.objects.get()
    assert token.key_hash == ApiToken.hash(made.secret) and made.secret not in token.key_hash
    assert token.prefix == made.secret[:12]


def test_it_refuses_admin_tokens_to_people_who_are_not_staff(cast):
    with pytest.raises(ValueError, match="staff"):
        token_create(user=cast.bob, name="x", scopes=["admin"])
    assert token_create(user=cast.sam, name="x", scopes=["admin"]).token.scopes == ["admin"]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "Send a token"),
        ("Bearer atl_not-a-real-token", "not valid"),
        ("Bearer two words", "Bearer atl_"),
    ],
)
def test_it_answers_401_with_a_reason_without_a_good_token(project, header, reason):
    client = Client()
    headers = {"Authorization": header} if header else {}
    response = client.get(reverse("api:project-list"), headers=headers)
    error = assert_error(response, 401)
    assert reason in error["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_an_expired_token(cast, project):
    api = Api(secret_for(cast.bob, expires_at=timezone.now() - timedelta(minutes=1)))
    assert "expired" in assert_error(api.get(reverse("api:project-list")), 401)["message"]


def test_it_refuses_a_revoked_token_at_once(cast, project, client):
    secret = secret_for(cast.bob)
    api = Api(secret)
    assert api.get(reverse("api:project-list")).status_code == 200
    client.force_login(cast.bob)
    token = ApiToken.objects.get()
    assert client.post(reverse("token_revoke"), {"token": token.pk}).status_code == 302
    assert "revoked" in assert_error(api.get(reverse("api:project-list")), 401)["message"]


def test_it_refuses_a_token_without_the_scope_and_creates_nothing(cast, project):
    api = Api(secret_for(cast.bob, scopes=["read"]))
    error = assert_error(api.post(jobs_url(project), BODY), 403, "permission_denied")
    assert "generate" in error["message"]
    assert not Job.objects.exists()
    assert_error(api.get(reverse("api:user-spend")), 403)


def test_it_records_the_last_use_at_most_once_a_minute(cast, project):
    api = Api(secret_for(cast.bob))
    api.get(reverse("api:project-list"))
    first = ApiToken.objects.get().last_used_at
    assert first is not None
    api.get(reverse("api:project-list"))
    assert ApiToken.objects.get().last_used_at == first
    ApiToken.objects.update(last_used_at=first - timedelta(minutes=2))
    api.get(reverse("api:project-list"))
    assert ApiToken.objects.get().last_used_at > first


def test_it_makes_a_token_on_the_account_page_and_shows_the_secret_once(client, cast):
    client.force_login(cast.bob)
    page = client.get(reverse("account_tokens"))
    assert page.status_code == 200 and b"admin" not in page.content.split(b"<h2>New token")[1][:3000].lower()
    response = client.post(reverse("account_tokens"), {"name": "CI", "scopes": ["read", "generate"]})
    token = ApiToken.objects.get()
    secret = response.context["secret"]
    assert secret.encode() in response.content and ApiToken.hash(secret) == token.key_hash
    assert secret.encode() not in client.get(reverse("account_tokens")).content
    assert b"API tokens" in client.get(reverse("home")).content  # in the user menu


def test_it_refuses_admin_scope_on_the_page_for_people_who_are_not_staff(client, cast):
    client.force_login(cast.bob)
    response = client.post(reverse("account_tokens"), {"name": "x", "scopes": ["admin"]})
    assert response.status_code == 400 and not ApiToken.objects.exists()


def test_it_revokes_only_my_own_tokens(client, cast):
    theirs = token_create(user=cast.alice, name="alice's", scopes=["read"]).token
    client.force_login(cast.bob)
    client.post(reverse("token_revoke"), {"token": theirs.pk})
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_the_command_prints_a_working_secret_once(cast, project):
    out = StringIO()
    call_command("create_api_token", "bob", "--name", "ci", "--scopes", "read,generate", stdout=out)
    secret = out.getvalue().strip()
    assert secret.startswith("atl_")
    assert ApiToken.objects.get().scopes == ["read", "generate"]
    assert Api(secret).get(reverse("api:project-list")).status_code == 200


# --- Projects ---------------------------------------------------------------------------------------


def test_it_lists_my_projects_with_my_role(cast, project, other_project, bob_api):
    answer = bob_api.get(reverse("api:project-list")).json()
    assert [(p["id"], p["role"]) for p in answer] == [(project.pk, "editor")]
    assert bob_api.get(reverse("api:project-detail", args=[project.pk])).json()["name"] == project.name
    assert_error(bob_api.get(reverse("api:project-detail", args=[other_project.pk])), 404, "not_found")


# --- Creating jobs ------------------------------------------------------------------------------------


def test_it_creates_a_job_with_the_forms_defaults_and_links_it_to_the_token(cast, project, bob_api):
    response = bob_api.post(jobs_url(project), BODY)
    assert response.status_code == 201, response.content
    job = Job.objects.get()
    answer = response.json()
    assert answer["id"] == job.pk and answer["status"] == "queued"
    assert answer["params"]["size"] == "1024x1024" and answer["params"]["n"] == 1
    assert (job.author, job.project, job.quality) == (cast.bob, project, "low")
    assert ApiTokenJob.objects.get().job == job
    assert answer["links"]["self"] == reverse("api:job-detail", args=[project.pk, job.pk])


def test_it_applies_the_forms_rules_and_messages(project, bob_api):
    error = assert_error(bob_api.post(jobs_url(project), BODY | {"n": 999}), 400, "invalid")
    assert error["fields"]["n"] == ["Ensure this value is less than or equal to 10."]
    error = assert_error(bob_api.post(jobs_url(project), {"prompt": "   "}), 400)
    assert error["fields"]["prompt"] == ["Describe the image you want."]
    error = assert_error(
        bob_api.post(jobs_url(project), BODY | {"output_format": "jpeg", "background": "transparent"}), 400
    )
    assert "transparent background needs PNG" in error["fields"]["background"][0]
    assert not Job.objects.exists()


def test_it_names_unknown_fields_and_wrong_types(project, bob_api):
    error = assert_error(bob_api.post(jobs_url(project), BODY | {"colour": "red", "seed": 4}), 400)
    assert error["fields"] == {"colour": ["Unknown field."], "seed": ["Unknown field."]}
    error = assert_error(bob_api.post(jobs_url(project), BODY | {"n": "two", "prompt": 5}), 400)
    assert set(error["fields"]) == {"n", "prompt"}
    assert_error(bob_api.post(jobs_url(project), BODY | {"n": True}), 400)
    assert_error(bob_api.post(jobs_url(project), raw="[1, 2]"), 400)
    assert not Job.objects.exists()


def test_it_answers_malformed_json_in_the_error_shape(project, bob_api):
    error = assert_error(bob_api.post(jobs_url(project), raw='{"prompt": '), 400)
    assert "JSON" in error["message"]
    assert not Job.objects.exists()


def test_another_projects_ids_are_a_404_and_create_nothing(cast, project, other_project, bob_api):
    assert_error(bob_api.post(jobs_url(other_project), BODY), 404)
    their_job = JobFactory(project=other_project, author=cast.charlie)
    assert_error(bob_api.get(reverse("api:job-detail", args=[project.pk, their_job.pk])), 404)
    assert_error(bob_api.get(reverse("api:job-detail", args=[other_project.pk, their_job.pk])), 404)
    their_image = ImageFactory(job__project=other_project, job__author=cast.charlie)
    assert_error(bob_api.get(reverse("api:image-detail", args=[project.pk, their_image.pk])), 404)
    their_ref = ReferenceFactory(project=other_project, uploaded_by=cast.charlie)
    error = assert_error(
        bob_api.post(
            reverse("api:edit-create", args=[project.pk]), BODY | {"inputs": [f"ref:{their_ref.pk}"]}
        ),
        400,
    )
    assert "inputs" in error["fields"]
    assert Job.objects.filter(author=cast.bob).count() == 0  # only charlie's own


def test_a_viewer_may_read_but_not_create(cast, project):
    api = Api(secret_for(cast.vera))
    assert api.get(reverse("api:project-detail", args=[project.pk])).status_code == 200
    assert_error(api.post(jobs_url(project), BODY), 403)
    assert not Job.objects.exists()


def test_an_archived_project_refuses_writes_with_409(project, bob_api):
    project.archived_at = timezone.now()
    project.save()
    assert_error(bob_api.post(jobs_url(project), BODY), 409, "project_archived")
    assert bob_api.get(reverse("api:project-detail", args=[project.pk])).json()["archived"] is True
    assert not Job.objects.exists()


def test_it_creates_an_edit_from_an_image_and_a_reference(cast, project, bob_api):
    image = ImageFactory(job__project=project, job__author=cast.bob)
    reference = ReferenceFactory(project=project, uploaded_by=cast.bob)
    body = {
        "prompt": "Make the lemon a lime",
        "quality": "low",
        "inputs": [f"img:{image.pk}", f"ref:{reference.pk}"],
    }
    response = bob_api.post(reverse("api:edit-create", args=[project.pk]), body)
    assert response.status_code == 201, response.content
    job = Job.objects.get(kind=Job.Kind.EDIT)
    assert response.json()["inputs"] == [f"img:{image.pk}", f"ref:{reference.pk}"]
    assert [i.source for i in job.inputs.all()] == [image, reference]
    error = assert_error(
        bob_api.post(reverse("api:edit-create", args=[project.pk]), body | {"inputs": []}), 400
    )
    assert error["fields"]["inputs"] == ["Choose at least one image to edit."]


def test_an_edit_takes_a_mask_held_to_the_edit_forms_rules(cast, project, bob_api):
    image = ImageFactory(job__project=project, job__author=cast.bob)  # 64 x 48
    body = {
        "prompt": "Put a lime in the hole",
        "quality": "low",
        "inputs": [f"img:{image.pk}"],
        "mask": base64.b64encode(mask_png(width=64, height=48)).decode(),
    }
    response = bob_api.post(reverse("api:edit-create", args=[project.pk]), body)

    assert response.status_code == 201, response.content
    job = Job.objects.get(kind=Job.Kind.EDIT)
    assert job.mask.name == f"{job.folder}/mask.png"
    with default_storage.open(job.mask.name, "rb") as handle, PILImage.open(handle) as stored:
        assert stored.format == "PNG" and stored.size == (64, 48)  # re-encoded, the first input's size
        assert stored.getchannel("A").getextrema()[0] == 0


def _jpeg_base64() -> str:
    return base64.b64encode(picture(width=64, height=48, fmt="jpeg")).decode()


@pytest.mark.parametrize(
    ("mask", "says"),
    [
        ("not base64 at all!", "base64"),
        ("", "empty"),
        (lambda: _jpeg_base64(), "PNG"),
        (lambda: base64.b64encode(mask_png(width=32, height=24)).decode(), "must match"),
        (
            lambda: base64.b64encode(picture(width=64, height=48, colour=(0, 0, 0, 255))).decode(),
            "transparent",
        ),
        (lambda: base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40).decode(), ""),
        (7, "Expected a base64-encoded PNG."),
    ],
    ids=["not-base64", "empty", "jpeg", "wrong-size", "opaque", "broken-png", "not-a-string"],
)
def test_a_bad_mask_is_a_400_naming_the_mask_and_creates_nothing(cast, project, bob_api, mask, says):
    image = ImageFactory(job__project=project, job__author=cast.bob)
    jobs_before = Job.objects.count()
    body = {"prompt": "Put a lime in the hole", "inputs": [f"img:{image.pk}"]}
    body["mask"] = mask() if callable(mask) else mask

    error = assert_error(bob_api.post(reverse("api:edit-create", args=[project.pk]), body), 400, "invalid")

    assert list(error["fields"]) == ["mask"], error
    assert says.lower() in " ".join(error["fields"]["mask"]).lower(), error
    assert Job.objects.count() == jobs_before  # only the image's own job: no edit, so no mask stored
    assert not Job.objects.filter(kind=Job.Kind.EDIT).exists()


def test_a_mask_over_the_body_limit_is_a_400_in_the_error_shape(cast, project, bob_api):
    image = ImageFactory(job__project=project, job__author=cast.bob)
    body = {"prompt": "Lime", "inputs": [f"img:{image.pk}"], "mask": "A" * (1024 * 1024 + 4)}
    error = assert_error(bob_api.post(reverse("api:edit-create", args=[project.pk]), body), 400, "invalid")
    assert "1024 KB" in error["message"]
    assert not Job.objects.filter(kind=Job.Kind.EDIT).exists()


def test_the_tokens_own_monthly_limit_refuses_a_job_with_402(cast, project):
    api = Api(secret_for(cast.bob, monthly_limit=Decimal("0.01")))
    JobFactory(project=project, author=cast.bob, reserved_cost=Decimal("5"))  # not the token's: not counted
    assert api.post(jobs_url(project), BODY).status_code == 201  # low square is under a cent
    job = Job.objects.get(api_token_link__isnull=False)
    Job.objects.filter(pk=job.pk).update(reserved_cost=Decimal("0.0099"))
    error = assert_error(api.post(jobs_url(project), BODY), 402, "over_budget")
    assert "limit" in error["message"]
    assert Job.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_jobs_never_take_a_token_past_its_limit(cast, project, seeded_prices):
    """Four scripts with one token submit at once, each with its own key; the limit fits one job.

    Each waits on the token's lock while another's job commits, then must count that job: summed from
    a snapshot taken before the wait (the sum in the locking statement itself), more than one gets in.
    """
    from workspace import jobs

    body = BODY | {"quality": "high"}
    estimate = jobs.job_estimate(
        prompt=body["prompt"], params={"model": "gpt-image-2", "n": 1, **body, "size": "1024x1024"}
    )
    limit = (estimate.cost * Decimal("1.5")).quantize(Decimal("0.01"))
    assert estimate.cost <= limit < 2 * estimate.cost
    secret = secret_for(cast.bob, monthly_limit=limit)
    barrier = threading.Barrier(4)
    answers = []

    def send() -> None:
        try:
            api = Api(secret)
            barrier.wait()
            answers.append(api.post(jobs_url(project), body).status_code)
        finally:
            connection.close()

    purge_queue()
    try:
        threads = [threading.Thread(target=send) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        purge_queue()
    assert sorted(answers) == [201, 402, 402, 402]
    assert Job.objects.count() == 1


@pytest.mark.parametrize("budgets", [False, True])
def test_creating_a_job_takes_a_bounded_number_of_queries(
    cast, project, budgets, django_assert_max_num_queries
):
    """Scripts submit jobs in bursts (issue 15: p95 ≤ 20 ms on the bench), and each query on this
    path costs a round trip and its building: a change that adds one has to raise this bound.

    With the token's own limit (its lock and sum) and, in the second case, a budget of each kind (the
    lock on all three and the sums of each). Counted after a first request has read the model
    registry and the prices in force, and recorded the token's use, as a running process has.
    """
    if budgets:
        Budget.objects.create(user=cast.bob, monthly_limit=100)
        Budget.objects.create(project=project, monthly_limit=100)
        Budget.objects.create(monthly_limit=100)
    api = Api(secret_for(cast.bob, monthly_limit=Decimal(100)))
    assert api.post(jobs_url(project), BODY).status_code == 201
    with django_assert_max_num_queries(QUERY_BOUND[budgets]):
        assert api.post(jobs_url(project), BODY).status_code == 201


def test_cancel_and_retry(cast, project, bob_api):
    job = JobFactory(project=project, author=cast.alice)
    url = reverse("api:job-cancel", args=[project.pk, job.pk])
    assert bob_api.post(url, key=None).json()["status"] == "canceled"
    assert_error(bob_api.post(url, key=None), 409, "too_late")
    retry = reverse("api:job-retry", args=[project.pk, job.pk])
    assert_error(bob_api.post(retry, key=None), 400, "idempotency_key_required")
    answer = bob_api.post(retry).json()
    assert answer["status"] == "queued"
    job.refresh_from_db()
    assert job.author == cast.bob and job.api_token_link.token.user == cast.bob


# --- Idempotency -----------------------------------------------------------------------------------


def test_it_requires_an_idempotency_key_to_create_work(project, bob_api):
    assert_error(bob_api.post(jobs_url(project), BODY, key=None), 400, "idempotency_key_required")
    assert not Job.objects.exists()


@pytest.mark.parametrize("key", ["a\x00b", "tab\there", "é-clé", "k" * 300])
def test_it_refuses_a_key_it_could_not_store_or_compare(project, bob_api, key):
    assert_error(bob_api.post(jobs_url(project), BODY, key=key), 400, "invalid")
    assert not Job.objects.exists()


def test_the_same_key_and_body_replay_the_first_answer_and_create_nothing(project, bob_api):
    first = bob_api.post(jobs_url(project), BODY, key="order-7")
    again = bob_api.post(jobs_url(project), BODY, key="order-7")
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1
    other = bob_api.post(jobs_url(project), BODY | {"prompt": "A pear"}, key="order-7")
    assert_error(other, 409, "idempotency_key_reused")
    assert Job.objects.count() == 1


def test_keys_are_per_user_and_forgotten_after_24_hours(cast, project, bob_api):
    bob_api.post(jobs_url(project), BODY, key="k")
    assert Api(secret_for(cast.alice)).post(jobs_url(project), BODY, key="k").status_code == 201
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert bob_api.post(jobs_url(project), BODY, key="k").status_code == 201
    assert Job.objects.count() == 3
    from workspace.api.idempotency import records_purge

    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert records_purge() == 2  # bob's expired record was replaced by his new one, then alice's


def test_a_refused_request_lets_its_key_go(project, bob_api):
    assert_error(bob_api.post(jobs_url(project), BODY | {"n": 999}, key="fix-me"), 400)
    assert not IdempotencyRecord.objects.exists()
    assert bob_api.post(jobs_url(project), BODY, key="fix-me").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_with_one_key_create_one_job(cast, project, seeded_prices):
    secret = secret_for(cast.bob)
    barrier = threading.Barrier(2)
    answers = []

    def send() -> None:
        try:
            api = Api(secret)
            barrier.wait()
            answers.append(api.post(jobs_url(project), BODY, key="same"))
        finally:
            connection.close()

    purge_queue()
    try:
        threads = [threading.Thread(target=send) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        purge_queue()
    assert Job.objects.count() == 1
    assert sorted(a.status_code for a in answers) in ([201, 201], [201, 409])
    created = [a.json() for a in answers if a.status_code == 201]
    assert all(body["id"] == Job.objects.get().pk for body in created)


# --- Images, references, spend ----------------------------------------------------------------------


def test_it_lists_images_with_filters_and_a_cursor(cast, project, bob_api, settings):
    from workspace import gallery

    older = [ImageFactory(job__project=project, job__author=cast.alice) for _ in range(2)]
    mine = ImageFactory(job__project=project, job__author=cast.bob)
    url = reverse("api:image-list", args=[project.pk])
    assert [i["id"] for i in bob_api.get(url, author=cast.bob.pk).json()["images"]] == [mine.pk]
    gallery_size = gallery.PAGE_SIZE
    try:
        gallery.PAGE_SIZE = 2
        page = bob_api.get(url).json()
    finally:
        gallery.PAGE_SIZE = gallery_size
    assert len(page["images"]) == 3 and page["next_cursor"] == ""
    assert_error(bob_api.get(url, cursor="!!"), 400)
    assert_error(bob_api.get(url, since="yesterday"), 400)
    assert older


def test_image_metadata_has_lineage_and_downloads(cast, project, bob_api):
    source = ImageFactory(job__project=project, job__author=cast.bob)
    edit = JobFactory(project=project, author=cast.bob, edit=True, succeeded=True, inputs=[source])
    child = ImageFactory(job=edit)
    answer = bob_api.get(reverse("api:image-detail", args=[project.pk, child.pk])).json()
    assert answer["parents"] == [{"position": 0, "input": f"img:{source.pk}"}]
    assert answer["ancestors"] == [source.pk]
    assert answer["job"]["id"] == edit.pk
    parent = bob_api.get(reverse("api:image-detail", args=[project.pk, source.pk])).json()
    assert parent["children"] == [child.pk]
    download = bob_api.get(answer["links"]["download"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content).startswith(b"\x89PNG")
    assert "attachment" in download["Content-Disposition"]


def test_it_uploads_references_with_the_same_sanitising(project, bob_api):
    url = reverse("api:reference-upload", args=[project.pk])
    files = [
        SimpleUploadedFile("lemon.png", picture(), content_type="image/png"),
        SimpleUploadedFile("notes.txt", b"hello", content_type="text/plain"),
    ]
    response = bob_api.client.post(url, {"files": files}, headers=bob_api.headers)
    assert response.status_code == 201, response.content
    answer = response.json()
    assert [r["name"] for r in answer["references"]] == ["lemon.png"]
    assert list(answer["rejected"]) == ["notes.txt"]
    bad = bob_api.client.post(url, {"files": [SimpleUploadedFile("x.png", b"nope")]}, headers=bob_api.headers)
    assert_error(bad, 400, "upload_rejected")
    assert Reference.objects.count() == 1


def test_an_oversized_upload_is_a_413_in_the_error_shape(project, bob_api, settings):
    settings.MAX_REQUEST_BYTES = 100 * 1024
    url = reverse("api:reference-upload", args=[project.pk])
    big = SimpleUploadedFile("big.png", b"\x89PNG" + b"0" * 200 * 1024, content_type="image/png")
    error = assert_error(
        bob_api.client.post(url, {"files": [big]}, headers=bob_api.headers), 413, "too_large"
    )
    assert "limit" in error["message"]
    assert not Reference.objects.exists()


def test_spend_mine_and_per_user_for_staff(cast, project, bob_api):
    assert set(bob_api.get(reverse("api:my-spend")).json()) == {"spent", "simulated", "held", "limit", "demo"}
    assert_error(bob_api.get(reverse("api:user-spend")), 403)
    staff = Api(secret_for(cast.sam, scopes=["admin"]))
    assert staff.get(reverse("api:user-spend")).json()["users"] == []
    assert_error(staff.get(reverse("api:user-spend"), period="custom", start="2026-01-02"), 400)


# --- The error shape and rate limits ------------------------------------------------------------------


def test_unknown_addresses_and_methods_answer_in_the_error_shape(project, bob_api):
    assert_error(bob_api.get("/api/v1/nothing/here"), 404, "not_found")
    assert_error(
        bob_api.client.delete(reverse("api:project-list"), headers=bob_api.headers), 405, "method_not_allowed"
    )


def test_it_limits_requests_per_token_with_retry_after(cast, project, settings):
    from django.core.cache import cache

    cache.clear()
    settings.API_RATE_PER_MINUTE = 3
    api = Api(secret_for(cast.bob))
    other = Api(secret_for(cast.alice))
    for _ in range(3):
        assert api.get(reverse("api:project-list")).status_code == 200
    response = api.get(reverse("api:project-list"))
    assert_error(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert other.get(reverse("api:project-list")).status_code == 200
    cache.clear()


def test_a_person_at_their_waiting_jobs_limit_gets_a_429_with_retry_after_and_nothing_is_made(
    cast, project, bob_api, settings
):
    settings.FAIR_SHARE_QUEUED_PER_USER = 2
    for _ in range(2):
        assert bob_api.post(jobs_url(project), BODY).status_code == 201
    response = bob_api.post(jobs_url(project), BODY)
    error = assert_error(response, 429, "too_many_waiting")
    assert "2 jobs waiting" in error["message"]
    assert int(response["Retry-After"]) >= 1
    assert Job.objects.filter(author=cast.bob).count() == 2


def test_the_schema_and_docs_page_are_served_without_a_token(client):
    schema = client.get(reverse("api:schema"), headers={"Accept": "application/json"})
    assert schema.status_code == 200
    assert "/api/v1/projects/{project_id}/jobs" in schema.content.decode()
    docs = client.get(reverse("api:docs"))
    assert docs.status_code == 200 and b"swagger-ui-bundle.js" in docs.content
    assert b"<script>" not in docs.content  # nothing inline: the CSP allows none


# --- Job list -------------------------------------------------------------------------------------


def test_it_lists_jobs_newest_first_by_status_with_a_cursor(cast, project, other_project, bob_api):
    from tests.factories import JobFactory
    from workspace.models import Job

    made = [JobFactory(project=project, author=cast.bob) for _ in range(21)]
    failed = JobFactory(project=project, author=cast.bob, status=Job.Status.FAILED)
    JobFactory(project=other_project, author=cast.charlie)
    first = bob_api.get(jobs_url(project)).json()
    assert [job["id"] for job in first["jobs"]] == [failed.pk, *[job.pk for job in reversed(made)][:19]]
    second = bob_api.get(jobs_url(project), cursor=first["next_cursor"]).json()
    assert [job["id"] for job in second["jobs"]] == [made[1].pk, made[0].pk] and second["next_cursor"] == ""
    only = bob_api.get(jobs_url(project), status="failed").json()
    assert [job["id"] for job in only["jobs"]] == [failed.pk]
    assert_error(bob_api.get(jobs_url(project), status="nope"), 400, "invalid")
    assert "cursor" in assert_error(bob_api.get(jobs_url(project), cursor="x1"), 400)["fields"]


# --- Webhooks -------------------------------------------------------------------------------------


def hooks_url(project, *rest) -> str:
    return reverse("api:webhook-list", args=[project.pk]) + "".join(f"/{part}" for part in rest)


def test_an_owner_adds_lists_rotates_pings_and_removes_a_webhook(cast, project, settings):
    from workspace.webhook_models import WebhookDelivery, WebhookEndpoint

    settings.WEBHOOK_ALLOW_PRIVATE = True
    alice = Api(secret_for(cast.alice))
    made = alice.post(hooks_url(project), {"url": "http://127.0.0.1/hook", "description": "CI"})
    assert made.status_code == 201, made.content
    endpoint = made.json()
    assert endpoint["secret"] and endpoint["events"] == ["job.succeeded", "job.failed"]
    listed = alice.get(hooks_url(project)).json()
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]
    rotated = alice.post(hooks_url(project, endpoint["id"], "rotate"))
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != endpoint["secret"] and rotated.json()["previous_secret_valid_until"]
    pinged = alice.post(hooks_url(project, endpoint["id"], "ping"))
    assert pinged.status_code == 202 and pinged.json()["event_type"] == "webhook.ping"
    log = alice.get(hooks_url(project, endpoint["id"], "deliveries")).json()
    assert [d["id"] for d in log] == [pinged.json()["id"]]
    gone = alice.client.delete(hooks_url(project, endpoint["id"]), headers=alice.headers)
    assert gone.status_code == 204
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()
    assert_error(alice.post(hooks_url(project, endpoint["id"], "rotate")), 404, "not_found")


def test_a_private_webhook_address_is_a_400_on_url(cast, project, settings):
    from workspace.webhook_models import WebhookEndpoint

    settings.WEBHOOK_ALLOW_PRIVATE = False
    alice = Api(secret_for(cast.alice))
    error = assert_error(alice.post(hooks_url(project), {"url": "https://127.0.0.1/hook"}), 400, "invalid")
    assert error["fields"]["url"]
    error = assert_error(alice.post(hooks_url(project), {"url": "https://a.example", "events": ["x"]}), 400)
    assert "events" in error["fields"]
    assert not WebhookEndpoint.objects.exists()


def test_webhooks_are_for_owners_only(cast, project, bob_api):
    assert_error(bob_api.get(hooks_url(project)), 403, "permission_denied")
    assert_error(bob_api.post(hooks_url(project), {"url": "https://example.com/h"}), 403)
    charlie = Api(secret_for(cast.charlie))
    assert_error(charlie.get(hooks_url(project)), 404, "not_found")
