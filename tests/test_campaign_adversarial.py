"""An adversarial pass over campaigns through the real views: a retried row keeps a campaign's time to
wait, a refused retry leaves the campaign as it was, every CSV cell is checked as it will be used, rows
keep the numbers the preview showed, and the ZIP's names open on every system."""

import io
import threading
import zipfile
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.factories import ImageFactory, ReferenceFactory, WebhookEndpointFactory, template_version
from tests.test_campaign_runs import _csv, _draft, _grid
from workspace import batches, campaign_runs, spend
from workspace.campaign_models import Campaign
from workspace.models import Budget, Job, WebhookDelivery

pytestmark = pytest.mark.django_db
S = Job.Status


def _fail_one(campaign) -> Job:
    job = Job.objects.claim_next(worker="w", calls_per_user=0)
    assert job is not None and job.campaign_id == campaign.pk
    Job.objects.fail(job.pk, token=job.claim_token, code="x", message="Broke.")
    campaign_runs.job_ended(job_id=job.pk)
    return job


# --- Retry ---------------------------------------------------------------------------------------------


def test_a_retried_row_gets_the_campaigns_time_to_wait_not_the_studios(client, cast, project, settings):
    # A retried row waits behind the rest of the bulk lane like any row of its campaign; with the
    # Studio's 15 minutes it would fail "out of time" before a large retry reached it.
    campaign = _grid(project, cast.bob, version=None, prompt="A lemon", axes=[("quality", "low")])
    failed = _fail_one(campaign)
    client.force_login(cast.bob)
    client.post(reverse("campaign_control", args=[project.pk, campaign.pk]), {"action": "retry"})
    failed.refresh_from_db()
    assert failed.status == S.QUEUED
    expected = timezone.now() + timedelta(seconds=settings.CAMPAIGN_JOB_DEADLINE_SECONDS)
    assert abs(failed.deadline_at - expected) < timedelta(minutes=1)


def test_a_retry_the_budget_refuses_leaves_a_canceled_campaign_canceled(client, cast, project):
    WebhookEndpointFactory(project=project, events=["campaign.finished"])
    campaign = _grid(project, cast.bob, version=None, prompt="A lemon", axes=[("quality", "low, medium")])
    _fail_one(campaign)
    client.force_login(cast.bob)
    url = reverse("campaign_control", args=[project.pk, campaign.pk])
    client.post(url, {"action": "cancel"})
    before = Campaign.objects.get()
    assert before.status == Campaign.Status.CANCELED and before.finished_at is not None
    finished_events = WebhookDelivery.objects.filter(event_type="campaign.finished").count()
    assert finished_events == 1
    Budget.objects.create(project=project, monthly_limit=0)

    response = client.post(url, {"action": "retry"}, follow=True)
    assert "budget" in response.content.decode()
    after = Campaign.objects.get()
    assert (after.status, after.finished_at) == (before.status, before.finished_at)
    assert WebhookDelivery.objects.filter(event_type="campaign.finished").count() == finished_events
    assert spend.used(project=project) == 0
    assert set(Job.objects.values_list("status", "reserved_cost")) == {(S.CANCELED, 0), (S.FAILED, 0)}


# --- The CSV: each cell checked as it will be used ---------------------------------------------------------


def _upload(client, project, data: bytes, *, version=None, **fields):
    version = version or template_version(project=project, text="A {product} in {season} light")
    upload = io.BytesIO(data)
    upload.name = "items.csv"
    return client.post(
        reverse("campaign_batch_new", args=[project.pk]),
        {"template": version.template.pk, "file": upload, "quality": "low", **fields},
    )


def _refused(client, cast, project, data: bytes) -> str:
    client.force_login(cast.bob)
    response = _upload(client, project, data)
    assert response.status_code == 400, response.content[:300]
    assert not Campaign.objects.exists() and not Job.objects.exists()
    assert spend.used(project=project) == 0
    return response.content.decode().split('class="problems-table"')[1].split("</table>")[0]


@pytest.mark.parametrize("cell", [" =HYPERLINK(1)", "\u00a0@SUM(A1)", "  +1+1", " -2+3"])
def test_a_formula_behind_spaces_is_refused_as_the_value_is_stored_without_them(client, cast, project, cell):
    # Cells are stored stripped: " =X" would become "=X" in the draft, its jobs and every export.
    table = _refused(client, cast, project, _csv("product,season", "mug,winter", f"{cell},summer"))
    assert "<td>3</td><td><code>product</code></td>" in table and "formula" in table


@pytest.mark.parametrize(("cell", "named"), [("\tmug", "a tab"), ('"\rmug"', "a carriage return")])
def test_a_leading_tab_or_carriage_return_is_refused_by_name(client, cast, project, cell, named):
    table = _refused(client, cast, project, _csv("product,season", f"{cell},summer"))
    assert "<td>2</td><td><code>product</code></td>" in table and f"starts with {named}," in table


# --- Rows keep their numbers from the file to the jobs -----------------------------------------------------


def test_rows_after_a_blank_line_keep_the_numbers_the_preview_showed(client, cast, project):
    ref = ReferenceFactory(project=project, name="vase.png")
    client.force_login(cast.bob)
    data = _csv("product,season,reference", "mug,winter,", "", "vase,summer,vase.png", "jug,spring,")
    assert _upload(client, project, data).status_code == 302
    campaign = Campaign.objects.get()
    page = client.get(campaign.get_absolute_url()).content.decode()
    assert "A vase in summer light" in page
    assert [row["row"] for row in campaign.rows] == [2, 4, 5]

    # A problem found at the confirm names the row as the file and the preview number it.
    ref.delete()
    response = client.post(reverse("campaign_confirm", args=[project.pk, campaign.pk]), follow=True)
    assert "Row 4, column “reference”" in response.content.decode()
    assert not Job.objects.exists()

    ReferenceFactory(project=project, name="vase.png")
    client.post(reverse("campaign_confirm", args=[project.pk, campaign.pk]))
    made = Job.objects.filter(campaign=campaign).order_by("campaign_row")
    assert [(job.campaign_row, job.prompt) for job in made] == [
        (2, "A mug in winter light"),
        (4, "A vase in summer light"),
        (5, "A jug in spring light"),
    ]


# --- The ZIP's names -------------------------------------------------------------------------------------


def test_the_zip_never_names_a_file_as_a_windows_device(client, cast, project):
    keys = ["con", "NUL.txt", "com1", "Aux", "LPT9", "prn", "COM¹", "../../etc/passwd", "a/b:c*?", "console"]
    campaign = _draft(
        project,
        cast.bob,
        _csv("sku,product,season", *(f'"{key}",p{i},winter' for i, key in enumerate(keys))),
        version=template_version(project=project, text="{sku} {product} {season}"),
        key_column="sku",
    )
    batches.batch_confirm(campaign=campaign, author=cast.bob)
    for job in Job.objects.filter(campaign=campaign):
        Job.objects.filter(pk=job.pk).update(status=S.SUCCEEDED, reserved_cost=0)
        ImageFactory(job=job, project=project, format="png")
    client.force_login(cast.vera)
    response = client.get(reverse("campaign_zip", args=[project.pk, campaign.pk]))
    names = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()
    assert names == [
        "_con.png",
        "_NUL.txt.png",
        "_com1.png",
        "_Aux.png",
        "_LPT9.png",
        "_prn.png",
        "_COM1-2.png",  # "com1" above, whatever the case
        "etc-passwd.png",
        "a-b-c.png",
        "console.png",
        "metadata.json",
    ]


@pytest.mark.parametrize(
    ("lines", "row", "words"),
    [
        # Read leniently, the open quote took rows 3 and 4 into row 2's season: one job, no word said.
        (["product,season", 'mug,"winter', "vase,summer", "jug,spring"], "2", "never closed"),
        # Leniently this became "mug": a quote in the middle of a quoted cell.
        (["product,season", "cup,autumn", '"mu"g,winter'], "3", "cannot be read"),
    ],
)
def test_a_broken_quote_is_refused_with_its_row_not_read_as_something_else(
    client, cast, project, lines, row, words
):
    table = _refused(client, cast, project, _csv(*lines))
    assert f"<td>{row}</td><td>—</td>" in table and words in table


def test_a_blank_header_cell_is_named_by_its_position(client, cast, project):
    # A stray empty column, as a spreadsheet saves it: a trailing comma on every line.
    table = _refused(client, cast, project, _csv("product,season,", "mug,winter,", "vase,summer,"))
    assert "<td>1</td><td><code>column 3</code></td>" in table and "has no name in the header" in table
    assert "no variable “”" not in table


def test_a_column_in_another_case_says_names_are_case_sensitive(client, cast, project):
    table = _refused(client, cast, project, _csv("Product,season", "mug,winter"))
    assert "names are case-sensitive: “product”?" in table


# --- Controls in every state, and two confirms at once ------------------------------------------------------


def _in_state(project, author, state: str) -> Campaign:
    if state == "draft":
        return _draft(project, author, _csv("product,season", "mug,winter", "vase,summer"))
    campaign = _grid(project, author, version=None, prompt="A lemon", axes=[("quality", "low, medium")])
    if state == "paused":
        campaign_runs.campaign_pause(campaign=campaign)
    elif state == "canceled":
        campaign_runs.campaign_cancel(campaign=campaign)
    elif state == "finished":
        for _ in range(2):
            job = Job.objects.claim_next(worker="w", calls_per_user=0)
            Job.objects.fail(job.pk, token=job.claim_token, code="x", message="Broke.")
            campaign_runs.job_ended(job_id=job.pk)
    campaign.refresh_from_db()
    assert campaign.status == state
    return campaign


AFTER = {
    # state: {action: state after}
    "draft": {"pause": "draft", "resume": "draft", "cancel": "draft", "retry": "draft"},
    "active": {"pause": "paused", "resume": "active", "cancel": "canceled", "retry": "active"},
    "paused": {"pause": "paused", "resume": "active", "cancel": "canceled", "retry": "paused"},
    "canceled": {"pause": "canceled", "resume": "canceled", "cancel": "canceled", "retry": "canceled"},
    "finished": {"pause": "finished", "resume": "finished", "cancel": "finished", "retry": "active"},
}


@pytest.mark.parametrize("state", list(AFTER))
@pytest.mark.parametrize("action", ["pause", "resume", "cancel", "retry"])
def test_every_control_in_every_state_leaves_consistent_counts_and_no_stranded_money(
    client, cast, project, state, action
):
    campaign = _in_state(project, cast.bob, state)
    client.force_login(cast.bob)
    url = reverse("campaign_control", args=[project.pk, campaign.pk])
    for _ in range(2):  # and a second click, as a hurried owner does
        assert client.post(url, {"action": action}).status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == AFTER[state][action]
    jobs = list(Job.objects.filter(campaign=campaign))
    assert all(job.reserved_cost == 0 for job in jobs if job.status in Job.FINAL_STATUSES)
    waiting = sum((job.reserved_cost for job in jobs if job.status in Job.ACTIVE_STATUSES), start=0)
    assert spend.used(project=project) == waiting
    progress = campaign_runs.progress(campaign)
    assert progress.total == len(jobs) and progress.held == waiting
    assert progress.ended + progress.waiting + progress.running == progress.total
    assert (campaign.finished_at is not None) == (campaign.status in ("finished", "canceled"))


@pytest.mark.django_db(transaction=True)
def test_two_confirms_of_one_draft_at_once_queue_it_once_and_hold_its_estimate_once(
    cast, project, seeded_prices
):
    campaign = _draft(project, cast.bob, _csv("product,season", *(f"p{i},winter" for i in range(10))))
    url = reverse("campaign_confirm", args=[project.pk, campaign.pk])
    start = threading.Barrier(2)
    codes = []

    def confirm() -> None:
        try:
            browser = Client()
            browser.force_login(cast.bob)
            start.wait()
            codes.append(browser.post(url).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=confirm) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert codes == [302, 302]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.ACTIVE
    assert Job.objects.filter(campaign=campaign).count() == 10
    assert spend.used(project=project) == campaign.estimated_cost > 0


# --- Kit and template forms ------------------------------------------------------------------------------


@pytest.mark.parametrize("digit", ["²", "٣", "１"])
@pytest.mark.parametrize(("route", "field"), [("kit_preview", "kit"), ("template_preview", "template")])
def test_a_preview_naming_its_kit_or_template_in_non_ascii_digits_is_no_500(
    client, cast, project, route, field, digit
):
    template_version(project=project)  # a template (and so an id) that "٣" or "１" could be read as
    client.force_login(cast.bob)
    response = client.post(
        reverse(route, args=[project.pk]), {"name": "x", "text": "A {product}", field: digit}
    )
    assert response.status_code == 200
    assert 'action="' in response.content.decode()


@pytest.mark.parametrize("digit", ["²", "٣"])
@pytest.mark.parametrize("route", ["template_preview", "template_create"])
def test_a_template_form_naming_its_brand_kit_in_non_ascii_digits_is_no_500(
    client, cast, project, route, digit
):
    client.force_login(cast.bob)
    response = client.post(
        reverse(route, args=[project.pk]), {"name": "x", "text": "A {product}", "brand_kit": digit}
    )
    assert response.status_code in (200, 400)
    assert "A [product]" in response.content.decode()  # the preview, without a kit


# --- A template whose variable is called {reference} --------------------------------------------------------


def test_a_variable_named_reference_is_filled_from_its_column_not_looked_up_in_the_library(
    client, cast, project
):
    version = template_version(project=project, text="A {product} shot like {reference}")
    client.force_login(cast.bob)
    response = _upload(client, project, _csv("product,reference", "mug,a catalogue cover"), version=version)
    assert response.status_code == 302, response.content.decode()[-3000:]
    campaign = Campaign.objects.get()
    client.post(reverse("campaign_confirm", args=[project.pk, campaign.pk]))
    job = Job.objects.get(campaign=campaign)
    assert (job.prompt, job.kind, job.variables) == (
        "A mug shot like a catalogue cover",
        Job.Kind.GENERATE,
        {"product": "mug", "reference": "a catalogue cover"},
    )


# --- A campaign's last waiting job canceled from its own card ---------------------------------------------


def test_canceling_a_campaigns_last_waiting_job_from_its_card_ends_the_campaign(
    client, cast, project, django_capture_on_commit_callbacks
):
    # The Studio's job list shows campaign jobs with a Cancel button; without the campaign's settle
    # it stayed "Running" (its page polling) for ever, and campaign.finished was never sent.
    WebhookEndpointFactory(project=project, events=["campaign.finished"])
    campaign = _grid(project, cast.bob, version=None, prompt="A lemon", axes=[("quality", "low, medium")])
    _fail_one(campaign)
    last = Job.objects.get(campaign=campaign, status=S.QUEUED)
    client.force_login(cast.bob)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("job_cancel", args=[project.pk, last.pk]))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.FINISHED and campaign.finished_at is not None
    assert WebhookDelivery.objects.filter(event_type="campaign.finished").count() == 1
    assert spend.used(project=project) == 0


def test_retrying_a_finished_campaigns_failed_job_from_its_card_runs_the_campaign_again(
    client, cast, project, settings
):
    campaign = _grid(project, cast.bob, version=None, prompt="A lemon", axes=[("quality", "low")])
    failed = _fail_one(campaign)
    assert Campaign.objects.get().status == Campaign.Status.FINISHED
    client.force_login(cast.bob)
    client.post(reverse("job_retry", args=[project.pk, failed.pk]))
    failed.refresh_from_db()
    campaign.refresh_from_db()
    assert failed.status == S.QUEUED
    # Running again (its page polls, it finishes again once the job ends), and the row keeps a
    # campaign row's time to wait.
    assert (campaign.status, campaign.finished_at) == (Campaign.Status.ACTIVE, None)
    expected = timezone.now() + timedelta(seconds=settings.CAMPAIGN_JOB_DEADLINE_SECONDS)
    assert abs(failed.deadline_at - expected) < timedelta(minutes=1)


# --- Encodings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_csv_is_refused_saying_it_is_utf16(client, cast, project, encoding):
    table = _refused(client, cast, project, "product,season\nmug,winter\n".encode(encoding))
    assert "UTF-16" in table and "CSV UTF-8" in table


def test_a_utf8_csv_with_a_byte_order_mark_is_read_as_utf8(client, cast, project):
    client.force_login(cast.bob)
    response = _upload(client, project, "\ufeffproduct,season\ncafé,winter\n".encode())
    assert response.status_code == 302
    assert Campaign.objects.get().rows[0]["values"] == {"product": "café", "season": "winter"}
