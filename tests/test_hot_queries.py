"""The hand-written queries behind every request's user and the job-card poll return what the ORM would.

Each test compares field by field with a fresh ORM read of the same row, on Postgres here and on SQLite
(the laptop's database, which keeps dates as text) in a subprocess.
"""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from tests.factories import JobFactory
from tests.helpers import create_job, run, run_on_sqlite
from workspace import hot_queries
from workspace.access import job_card_access
from workspace.auth_backend import SessionUserBackend
from workspace.models import Image, Job, Role

pytestmark = pytest.mark.django_db


def _assert_same_fields(loaded, fresh, attnames):
    assert loaded.pk == fresh.pk
    for attname in attnames:
        assert getattr(loaded, attname) == getattr(fresh, attname), attname
    assert loaded._state.adding is False and loaded._state.db == "default"


def _retrying_job(project, author) -> Job:
    return JobFactory(
        project=project,
        author=author,
        n=3,
        status=Job.Status.RETRYING,
        attempts=2,
        retry_reason="OpenAI is busy right now.",
        next_attempt_at=timezone.now() + timedelta(seconds=30),
        preview="previews/job-1-0.png",
        preview_count=2,
    )


def test_the_card_row_is_the_orm_row_with_the_viewers_role(cast, project, django_assert_num_queries):
    job = _retrying_job(project, cast.bob)
    project.archived_at = timezone.now()
    project.save()

    with django_assert_num_queries(1):
        card, role, images = hot_queries.job_card(
            viewer_id=cast.vera.pk, project_id=project.pk, job_id=job.pk
        )
        assert card.project.name == "Spring campaign" and card.author.get_username() == "bob"

    fresh = Job.objects.select_related("project", "author").get(pk=job.pk)
    _assert_same_fields(card, fresh, hot_queries.CARD_JOB.attnames)
    _assert_same_fields(card.project, fresh.project, hot_queries.CARD_PROJECT.attnames)
    assert card.project.is_archived
    assert card.preview.name == "previews/job-1-0.png"
    assert role == Role.VIEWER
    assert images == []  # only a succeeded card shows images
    # What the card does not show is left deferred, and loads on demand like any deferred field.
    assert "params" not in card.__dict__ and "deadline_at" not in card.__dict__
    with django_assert_num_queries(1):
        assert card.deadline_at == fresh.deadline_at


def test_the_card_row_knows_strangers_and_wrong_projects(cast, project, other_project):
    job = create_job(project=project, author=cast.bob)
    _, role, _ = hot_queries.job_card(viewer_id=cast.charlie.pk, project_id=project.pk, job_id=job.pk)
    assert role is None
    assert hot_queries.job_card(viewer_id=cast.bob.pk, project_id=other_project.pk, job_id=job.pk) is None
    assert hot_queries.job_card(viewer_id=cast.bob.pk, project_id=project.pk, job_id=job.pk + 999) is None


def test_card_access_keeps_the_rules(cast, project, other_project):
    job = create_job(project=project, author=cast.bob)
    access, card, _ = job_card_access(cast.alice, project_id=project.pk, job_id=job.pk)
    assert (access.role, access.is_member, access.can_edit, card.pk) == (Role.OWNER, True, True, job.pk)
    access, _, _ = job_card_access(cast.vera, project_id=project.pk, job_id=job.pk)
    assert (access.role, access.can_edit) == (Role.VIEWER, False)
    access, _, _ = job_card_access(cast.sam, project_id=project.pk, job_id=job.pk)  # staff, not a member
    assert (access.role, access.is_member) == (Role.VIEWER, False)
    with pytest.raises(Http404):
        job_card_access(cast.charlie, project_id=project.pk, job_id=job.pk)
    with pytest.raises(Http404):  # a member of the job's project, asking through another project's URL
        job_card_access(cast.charlie, project_id=other_project.pk, job_id=job.pk)


def test_a_succeeded_card_brings_its_visible_images_in_order(cast, project, django_assert_num_queries):
    job = run(create_job(project=project, author=cast.bob, n=3))
    images = list(job.images.order_by("index"))
    Image.objects.filter(pk=images[1].pk).update(deleted_at=timezone.now())

    with django_assert_num_queries(1):
        card, role, loaded = hot_queries.job_card(viewer_id=cast.bob.pk, project_id=project.pk, job_id=job.pk)

    assert (card.status, role) == (Job.Status.SUCCEEDED, Role.EDITOR)
    assert [image.index for image in loaded] == [0, 2]
    for image, fresh in zip(loaded, [images[0], images[2]], strict=True):
        _assert_same_fields(image, fresh, hot_queries.CARD_IMAGES.attnames)
    Image.objects.filter(job=job).update(deleted_at=timezone.now())
    card, _, loaded = hot_queries.job_card(viewer_id=cast.bob.pk, project_id=project.pk, job_id=job.pk)
    assert (card.pk, loaded) == (job.pk, [])


def test_the_session_user_is_the_orm_user(cast):
    cast.bob.last_login = timezone.now()
    cast.bob.save()
    loaded = hot_queries.user_by_id(str(cast.bob.pk))  # sessions keep the id as text
    fresh = type(cast.bob).objects.get(pk=cast.bob.pk)
    _assert_same_fields(loaded, fresh, hot_queries.SESSION_USER.attnames)
    assert loaded.check_password("pass-for-tests-1")
    assert hot_queries.user_by_id(cast.bob.pk + 999) is None


def test_the_backend_turns_away_what_django_turns_away(cast):
    backend = SessionUserBackend()
    assert backend.get_user(cast.bob.pk) == cast.bob
    cast.bob.is_active = False
    cast.bob.save()
    assert backend.get_user(cast.bob.pk) is None
    assert backend.get_user("not-an-id") is None


def test_a_deactivated_or_re_passworded_user_is_logged_out_on_the_next_poll(client, cast, project):
    job = create_job(project=project, author=cast.bob)
    url = reverse("job_card", args=[project.pk, job.pk])
    client.force_login(cast.bob)
    assert client.get(url).status_code == 200
    cast.bob.set_password("a-new-password-for-bob")
    cast.bob.save()
    assert client.get(url).status_code == 302  # to the login page

    client.force_login(cast.vera)
    assert client.get(url).status_code == 200
    cast.vera.is_active = False
    cast.vera.save()
    assert client.get(url).status_code == 302


def test_the_cache_keeps_one_redis_client_and_still_works():
    backend = cache._cache
    assert backend.get_client("a") is backend.get_client("b")
    cache.set("hot-queries-test", {"n": 1}, 30)
    assert cache.get("hot-queries-test") == {"n": 1}
    cache.set("hot-queries-counter", 0, 30)
    assert cache.incr("hot-queries-counter") == 1
    cache.delete_many(["hot-queries-test", "hot-queries-counter"])
    assert cache.get("hot-queries-test") is None


SQLITE_SCRIPT = """
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from workspace import hot_queries
from workspace.models import Image, Job, Membership, Project

user = get_user_model().objects.create_user("ana", password="x", last_login=timezone.now())
project = Project.objects.create(name="Laptop", created_by=user, archived_at=timezone.now())
Membership.objects.create(project=project, user=user, role="editor")
job = Job.objects.create(
    project=project, author=user, prompt="A pear", model="gpt-image-2", size="1024x1024",
    deadline_at=timezone.now() + timedelta(minutes=10), max_attempts=3, status="retrying",
    next_attempt_at=timezone.now() + timedelta(seconds=30),
)
Image.objects.create(job=job, project=project, index=1, file="b.png", width=1024, height=1024,
                     format="png", bytes=1, sha256="1" * 64)
Image.objects.create(job=job, project=project, index=0, file="a.png", width=1024, height=1024,
                     format="png", bytes=1, sha256="0" * 64)

Job.objects.filter(pk=job.pk).update(status="succeeded")
card, role, images = hot_queries.job_card(viewer_id=user.pk, project_id=project.pk, job_id=job.pk)
fresh = Job.objects.select_related("project").get(pk=job.pk)
session_user = hot_queries.user_by_id(str(user.pk))
fresh_user = get_user_model().objects.get(pk=user.pk)
def same(loaded, fresh, columns):
    return all(getattr(loaded, a) == getattr(fresh, a) for a in columns.attnames)
print(json.dumps({
    "role": role,
    "job": same(card, fresh, hot_queries.CARD_JOB),
    "project": same(card.project, fresh.project, hot_queries.CARD_PROJECT),
    "user": same(session_user, fresh_user, hot_queries.SESSION_USER),
    "aware": [timezone.is_aware(card.created_at), timezone.is_aware(card.project.archived_at),
              timezone.is_aware(session_user.last_login)],
    "images": [image.index for image in images],
}))
"""


def test_the_same_queries_read_sqlite_as_the_orm_does(tmp_path):
    assert run_on_sqlite(SQLITE_SCRIPT, tmp_path) == {
        "role": "editor",
        "job": True,
        "project": True,
        "user": True,
        "aware": [True, True, True],
        "images": [0, 1],
    }


# The API's job-create path: the token, its lock and sums, and the budgets' lock and sums.
MONEY_SCRIPT = """
from datetime import timedelta
from decimal import Decimal
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone
from workspace import hot_queries, spend
from workspace.api.models import ApiToken, ApiTokenJob
from workspace.api.tokens import token_create
from workspace.models import ApiCall, Budget, Job, LedgerEntry, Project

user = get_user_model().objects.create_user("ana", password="x")
other = get_user_model().objects.create_user("bo", password="x")
project = Project.objects.create(name="Laptop", created_by=user)
made = token_create(user=user, name="script", scopes=["generate"], monthly_limit=Decimal("12.5"))

def job(author, reserved, cost=None):
    row = Job.objects.create(
        project=project, author=author, prompt="A pear", model="gpt-image-2", size="1024x1024",
        deadline_at=timezone.now() + timedelta(minutes=10), max_attempts=3, reserved_cost=reserved,
    )
    if cost is not None:
        call = ApiCall.objects.create(job=row, attempt=1, endpoint="generate", outcome="ok",
                                     latency_ms=1, usage={"output_tokens": 1})
        LedgerEntry.objects.create(api_call=call, user=author, project=project, job=row,
                                   model="gpt-image-2", cost=cost, simulated=spend.simulated_now())
    return row

ApiTokenJob.objects.create(token=made.token, job=job(user, Decimal("0.25"), Decimal("1.000001")))
ApiTokenJob.objects.create(token=made.token, job=job(user, Decimal("0.5")))
job(other, Decimal("2"), Decimal("3.1"))  # not the token's: only the project's and workspace's
budgets = [Budget.objects.create(monthly_limit=100), Budget.objects.create(user=user, monthly_limit=7),
           Budget.objects.create(project=project, monthly_limit=9)]
token = hot_queries.token_by_hash(ApiToken.hash(made.secret))
fresh = ApiToken.objects.select_related("user").get(pk=made.token.pk)
locked = hot_queries.token_lock(made.token.pk)
orm_budgets = list(  # what spend.reserve locked before the hand-written query
    Budget.objects.filter(Q(user=user) | Q(project=project) | Q(user__isnull=True, project__isnull=True))
    .order_by("user_id", "id")
)
lock = hot_queries.budgets_lock(user_id=user.pk, project_id=project.pk)
sums = hot_queries.budgets_used(lock, since=spend.month_start(), simulated=spend.simulated_now())
print(json.dumps({
    "token": all(getattr(token, a) == getattr(fresh, a) for a in hot_queries.TOKEN.attnames),
    "owner": token.user.username,
    "limit": [str(locked.monthly_limit), locked.name],
    "token_used": [str(v) for v in hot_queries.token_used(
        token_id=made.token.pk, since=spend.month_start(), simulated=spend.simulated_now())],
    "budgets": [b.pk for b in lock] == [b.pk for b in orm_budgets] and len(lock) == 3,
    "sums": sums == [spend.budget_used(b) for b in lock] and sums[0] != sums[2],  # as numbers
}))
"""


def _money_answer(script_output: dict) -> None:
    assert script_output == {
        "token": True,
        "owner": "ana",
        "limit": ["12.50", "script"],
        "token_used": ["1.000001", "0.750000"],
        "budgets": True,
        "sums": True,
    }


def test_the_api_paths_sums_and_locks_are_the_orms_on_postgres():
    import json
    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):
        exec(MONEY_SCRIPT, {"json": json})  # noqa: S102 - the script above, the same one SQLite runs
    _money_answer(json.loads(out.getvalue().strip().splitlines()[-1]))


def test_the_api_paths_sums_and_locks_read_sqlite_as_the_orm_does(tmp_path):
    # SQLite sums decimals as floats and converts each column itself (hot_queries.Columns.load).
    _money_answer(run_on_sqlite(MONEY_SCRIPT, tmp_path))
