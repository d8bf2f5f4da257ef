"""Variant grids, catalog batches and the campaign page: requests that differ only on their axes (on
what the stand-in received, through a real worker), every bad CSV refused with its row and column and
nothing queued or held, whole-batch reservations under concurrency, pause/resume/cancel/retry, the ZIP
named by a column, and the finish hook."""

import io
import threading
import zipfile
from decimal import Decimal
from itertools import combinations

import pytest
from django.db import connection
from django.urls import reverse

from tests.factories import ImageFactory, ReferenceFactory, WebhookEndpointFactory, template_version
from tests.helpers import wait_for
from workspace import batches, campaign_runs, campaigns, grids, overnight, queue, spend
from workspace.campaign_models import Campaign
from workspace.models import Budget, Job, LedgerEntry, Price, WebhookDelivery

S = Job.Status


def _grid(project, author, *, version, axes, base=None, prompt="", values=None):
    plan = grids.grid_plan(
        project=project,
        template_version=version,
        brand_kit_version=None,
        prompt=prompt,
        values=values or {},
        base=base or {"quality": "low"},
        axes=axes,
    )
    return grids.grid_create(
        project=project,
        author=author,
        name="Grid",
        template_version=version,
        brand_kit_version=None,
        prompt=prompt,
        plan=plan,
        base=base or {"quality": "low"},
    )


def _csv(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def _draft(project, author, data: bytes, *, version=None, key_column=""):
    version = version or template_version(project=project, text="A {product} in {season} light")
    campaign, _ = batches.batch_draft(
        project=project,
        author=author,
        name="Batch",
        source_name="items.csv",
        template_version=version,
        brand_kit_version=None,
        data=data,
        base={"quality": "low"},
        key_column=key_column,
    )
    return campaign


# --- Grids: one controlled change, checked on the wire ----------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_grids_requests_differ_only_on_their_axes(cast, project, standin, processes, seeded_prices):
    WebhookEndpointFactory(project=project, url="https://93.184.215.14/hook", events=["campaign.finished"])
    version = template_version(project=project, text="A {product} on oak, soft light")
    campaign = _grid(
        project,
        cast.bob,
        version=version,
        axes=[("quality", "low, medium, high"), ("var:product", "mug, vase")],
    )
    cells = list(Job.objects.filter(campaign=campaign))
    assert len(cells) == 6 and {job.lane for job in cells} == {Job.Lane.BULK}
    processes.worker("grid")
    wait_for(
        lambda: Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.FINISHED,
        timeout=60,
        what="the grid to finish",
    )

    received = [
        request.fields for request in standin.requests if request.path.endswith("/images/generations")
    ]
    assert len(received) == 6
    by_cell = {}
    for fields in received:
        product = "mug" if " mug " in fields["prompt"] else "vase"
        by_cell[(fields["quality"], product)] = fields
    assert set(by_cell) == {(q, p) for q in ("low", "medium", "high") for p in ("mug", "vase")}
    for (cell_a, a), (cell_b, b) in combinations(by_cell.items(), 2):
        differ = {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}
        expected = set()
        if cell_a[0] != cell_b[0]:
            expected.add("quality")
        if cell_a[1] != cell_b[1]:
            expected.add("prompt")
        assert differ == expected, (cell_a, cell_b, differ)
    assert by_cell[("low", "mug")]["prompt"] == "A mug on oak, soft light"
    # The last job to end finished the campaign and queued campaign.finished.
    delivery = WebhookDelivery.objects.get(event_type="campaign.finished")
    assert f'"campaign_id":{campaign.pk}' in delivery.body and '"succeeded":6' in delivery.body


@pytest.mark.django_db
def test_a_grid_is_planned_with_its_total_and_reserved_in_one_step(cast, project):
    version = template_version(project=project)
    plan = grids.grid_plan(
        project=project,
        template_version=version,
        brand_kit_version=None,
        prompt="",
        values={"product": "teapot"},
        base={},
        axes=[("size", "square, portrait"), ("complexity", "low, high")],
    )
    assert len(plan.cells) == 4 and plan.total == sum(cell.spec.cost for cell in plan.cells)
    assert [row["value"] for row in plan.rows] == ["square", "portrait"]
    Budget.objects.create(project=project, monthly_limit=plan.total - Decimal("0.000001"))
    with pytest.raises(spend.BudgetExceeded):
        grids.grid_create(
            project=project,
            author=cast.bob,
            name="g",
            template_version=version,
            brand_kit_version=None,
            prompt="",
            plan=plan,
            base={},
        )
    assert not Job.objects.exists() and not Campaign.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ([("quality", "low, ultra")], "“ultra” is not one of"),
        ([("quality", "low"), ("quality", "high")], "must differ"),
        ([("var:colour", "red")], "not an axis"),
        ([("model", ", ".join(["gpt-image-2"] * 1 + [f"m{i}" for i in range(9)]))], "at most 8"),
    ],
)
def test_a_grid_that_cannot_be_made_says_why(project, axes, message):
    version = template_version(project=project)
    with pytest.raises(grids.GridProblem, match=message):
        grids.grid_plan(
            project=project,
            template_version=version,
            brand_kit_version=None,
            prompt="",
            values={"product": "mug"},
            base={},
            axes=axes,
        )


@pytest.mark.django_db
def test_use_as_default_saves_a_template_version_with_the_cells_quality(client, cast, project):
    version = template_version(project=project, defaults={"quality": "low"})
    campaign = _grid(
        project,
        cast.bob,
        version=version,
        axes=[("quality", "medium, high")],
        base={},
        values={"product": "mug"},
    )
    job = Job.objects.get(campaign=campaign, quality="high")
    client.force_login(cast.bob)
    client.post(reverse("campaign_cell_default", args=[project.pk, campaign.pk, job.pk]))
    newest = version.template.versions.order_by("-number").first()
    assert newest.number == 2 and newest.defaults["quality"] == "high" and newest.text == version.text


@pytest.mark.django_db
def test_use_as_default_of_a_plain_prompt_grid_fills_the_studio(client, cast, project):
    campaign = _grid(project, cast.bob, version=None, prompt="A lemon", axes=[("quality", "low, high")])
    job = Job.objects.filter(campaign=campaign).first()
    client.force_login(cast.bob)
    response = client.post(reverse("campaign_cell_default", args=[project.pk, campaign.pk, job.pk]))
    assert response["Location"] == f"{reverse('project', args=[project.pk])}?again={job.pk}#generate"


# --- Batches: every bad input refused by row and column, nothing queued or held -------------------


def _refused(client, cast, project, data: bytes, *, version=None) -> str:
    version = version or template_version(project=project, text="A {product} in {season} light")
    client.force_login(cast.bob)
    upload = io.BytesIO(data)
    upload.name = "items.csv"
    response = client.post(
        reverse("campaign_batch_new", args=[project.pk]),
        {"template": version.template.pk, "file": upload, "quality": "low"},
    )
    assert response.status_code == 400, response.content[:500]
    assert not Campaign.objects.exists() and not Job.objects.exists()
    assert spend.used(project=project) == 0
    page = response.content.decode()
    assert "Nothing was queued and no budget was held" in page
    return page


def _problem_row(page: str, row: str, column: str, words: str) -> None:
    table = page.split('class="problems-table"')[1].split("</table>")[0]
    rows = [chunk for chunk in table.split("<tr>")[2:]]
    cells = [r.replace("<code>", "").replace("</code>", "") for r in rows]
    assert any(f"<td>{row}</td><td>{column}</td>" in r and words in r for r in cells), (
        row,
        column,
        words,
        table,
    )


@pytest.mark.django_db
def test_a_csv_that_is_not_utf8_is_refused(client, cast, project):
    page = _refused(client, cast, project, b"product,season\nmug,winter\ncaf\xe9,summer\n")
    _problem_row(page, "3", "—", "not UTF-8")


@pytest.mark.django_db
def test_a_csv_without_a_header_is_refused(client, cast, project):
    page = _refused(client, cast, project, _csv("mug,winter", "vase,summer"))
    _problem_row(page, "1", "—", "no header")


@pytest.mark.django_db
def test_a_csv_of_more_than_100000_rows_is_refused(client, cast, project):
    lines = ["product,season", *(f"item {i},winter" for i in range(100_001))]
    page = _refused(client, cast, project, _csv(*lines))
    _problem_row(page, "100002", "—", "more than 100,000 rows")


@pytest.mark.django_db
@pytest.mark.parametrize("lead", ["=", "+", "-", "@"])
def test_a_formula_leading_cell_is_refused(client, cast, project, lead):
    page = _refused(
        client, cast, project, _csv("product,season", "mug,winter", f'{lead}HYPERLINK("x"),summer')
    )
    _problem_row(page, "3", "product", "formula")


@pytest.mark.django_db
def test_a_column_the_template_does_not_have_is_refused(client, cast, project):
    page = _refused(client, cast, project, _csv("product,season,colour", "mug,winter,red"))
    _problem_row(page, "1", "colour", "no variable “colour”")


@pytest.mark.django_db
def test_missing_variables_are_refused(client, cast, project):
    page = _refused(client, cast, project, _csv("product", "mug"))
    _problem_row(page, "1", "season", "is missing")
    page = _refused(client, cast, project, _csv("product,season", "mug,winter", "vase,"))
    _problem_row(page, "3", "season", "has no value")


@pytest.mark.django_db
def test_an_unknown_reference_is_refused(client, cast, project):
    ReferenceFactory(project=project, name="mug.png")
    page = _refused(
        client, cast, project, _csv("product,season,reference", "mug,winter,mug.png", "vase,summer,vase.png")
    )
    _problem_row(page, "3", "reference", "no reference named “vase.png”")


@pytest.mark.django_db
def test_another_projects_reference_is_refused(client, cast, project, other_project):
    ReferenceFactory(project=other_project, name="their-vase.png")
    page = _refused(client, cast, project, _csv("product,season,reference", "vase,summer,their-vase.png"))
    _problem_row(page, "2", "reference", "references cannot be used")


@pytest.mark.django_db
def test_duplicate_rows_are_refused(client, cast, project):
    page = _refused(client, cast, project, _csv("product,season", "mug,winter", "vase,summer", "mug,winter"))
    _problem_row(page, "4", "—", "repeats row 2")


@pytest.mark.django_db
def test_a_prompt_over_the_limit_after_substitution_is_refused(client, cast, project):
    page = _refused(client, cast, project, _csv("product,season", "mug,winter", f"{'x' * 40_000},summer"))
    _problem_row(page, "3", "product", "40,0")


@pytest.mark.django_db
def test_a_good_csv_becomes_a_draft_then_one_reservation_in_the_bulk_lane(client, cast, project):
    ref = ReferenceFactory(project=project, name="mug.png")
    version = template_version(project=project, text="A {product} in {season} light")
    client.force_login(cast.bob)
    upload = io.BytesIO(_csv("product,season,reference", "mug,winter,mug.png", "vase,summer,"))
    upload.name = "items.csv"
    response = client.post(
        reverse("campaign_batch_new", args=[project.pk]),
        {"template": version.template.pk, "file": upload, "quality": "low", "key_column": "product"},
    )
    campaign = Campaign.objects.get()
    assert response["Location"] == campaign.get_absolute_url()
    assert campaign.status == Campaign.Status.DRAFT and not Job.objects.exists()
    page = client.get(campaign.get_absolute_url()).content.decode()
    assert "A mug in winter light" in page and "Queue 2 jobs" in page
    # A re-posted form cannot change what is queued: the rows come from the draft.
    client.post(
        reverse("campaign_confirm", args=[project.pk, campaign.pk]), {"key_column": "product", "rows": "evil"}
    )
    made = list(Job.objects.filter(campaign=campaign).order_by("campaign_row"))
    assert [(job.campaign_row, job.prompt, job.kind) for job in made] == [
        (2, "A mug in winter light", Job.Kind.EDIT),
        (3, "A vase in summer light", Job.Kind.GENERATE),
    ]
    assert made[0].inputs.get().reference == ref
    assert {job.lane for job in made} == {Job.Lane.BULK}
    assert sum(job.reserved_cost for job in made) == Campaign.objects.get().estimated_cost
    # Confirming twice queues once.
    client.post(reverse("campaign_confirm", args=[project.pk, campaign.pk]))
    assert Job.objects.filter(campaign=campaign).count() == 2


@pytest.mark.django_db
def test_two_thousand_rows_are_checked_and_queued_in_a_fixed_number_of_queries(
    cast, project, django_assert_max_num_queries
):
    version = template_version(project=project, text="A {product} in {season} light")
    ReferenceFactory(project=project, name="mug.png")
    data = _csv("sku,product,season,reference", *(f"SKU-{i},item {i},winter,mug.png" for i in range(2000)))
    version = template_version(
        project=project, template=version.template, text="{sku}: a {product} in {season}"
    )
    with django_assert_max_num_queries(40):
        campaign = _draft(project, cast.bob, data, version=version, key_column="sku")
        batches.batch_confirm(campaign=campaign, author=cast.bob)
    assert Job.objects.filter(campaign=campaign).count() == 2000


# --- Whole-batch reservations under concurrency -------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_batches_racing_for_one_budget_cannot_both_pass(cast, project, seeded_prices):
    first = _draft(project, cast.bob, _csv("product,season", *(f"p{i},winter" for i in range(10))))
    second = _draft(
        project,
        cast.alice,
        _csv("product,season", *(f"q{i},summer" for i in range(10))),
        version=first.template_version,
    )
    # Room for one batch, not two.
    Budget.objects.create(project=project, monthly_limit=first.estimated_cost * Decimal("1.5"))
    start = threading.Barrier(2)
    outcomes = []

    def confirm(campaign, author):
        try:
            start.wait()
            batches.batch_confirm(campaign=campaign, author=author)
            outcomes.append("queued")
        except spend.BudgetExceeded:
            outcomes.append("refused")
        except Exception as error:
            outcomes.append(f"error: {error!r}")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=confirm, args=pair) for pair in ((first, cast.bob), (second, cast.alice))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["queued", "refused"]
    assert Job.objects.count() == 10
    assert Campaign.objects.filter(status=Campaign.Status.DRAFT).count() == 1
    assert spend.used(project=project) <= Budget.objects.get().monthly_limit


# --- Pause, resume, cancel, retry, finish -----------------------------------------------------------


@pytest.mark.django_db
def test_pause_keeps_jobs_waiting_and_resume_lets_them_run(cast, project):
    campaign = _grid(project, cast.bob, version=None, prompt="A lemon", axes=[("quality", "low, medium")])
    assert campaign_runs.campaign_pause(campaign=campaign)
    assert Job.objects.claim_next(worker="w", calls_per_user=0) is None
    only = Job.objects.filter(campaign=campaign).first()
    assert Job.objects.claim(only.pk, worker="w") is None  # a stray message does not start one either
    assert set(Job.objects.filter(campaign=campaign).values_list("status", flat=True)) == {S.QUEUED}
    assert campaign_runs.campaign_resume(campaign=campaign)
    claimed = Job.objects.claim_next(worker="w", calls_per_user=0)
    assert claimed is not None and claimed.campaign_id == campaign.pk


@pytest.mark.django_db
def test_cancel_the_rest_releases_their_reservations_and_ends_the_campaign(cast, project):
    campaign = _grid(
        project, cast.bob, version=None, prompt="A lemon", axes=[("quality", "low, medium, high")]
    )
    running = Job.objects.claim_next(worker="w", calls_per_user=0)
    assert campaign_runs.campaign_cancel(campaign=campaign) == 2
    assert Job.objects.filter(campaign=campaign, status=S.CANCELED, reserved_cost=0).count() == 2
    assert Campaign.objects.get().status == Campaign.Status.CANCELED
    assert Campaign.objects.get().finished_at is None  # one still runs
    Job.objects.fail(running.pk, token=running.claim_token, code="x", message="Broke.")
    campaign_runs.job_ended(job_id=running.pk)
    assert Campaign.objects.get().finished_at is not None
    assert spend.used(project=project) == 0


@pytest.mark.django_db
def test_retry_the_failed_rows_queues_them_again_and_the_campaign_runs(cast, project):
    campaign = _grid(project, cast.bob, version=None, prompt="A lemon", axes=[("quality", "low, medium")])
    for _ in range(2):
        job = Job.objects.claim_next(worker="w", calls_per_user=0)
        Job.objects.fail(job.pk, token=job.claim_token, code="x", message="Broke.")
        campaign_runs.job_ended(job_id=job.pk)
    assert Campaign.objects.get().status == Campaign.Status.FINISHED
    assert campaign_runs.campaign_retry_failed(campaign=campaign, actor=cast.alice) == 2
    assert Campaign.objects.get().status == Campaign.Status.ACTIVE
    assert set(Job.objects.filter(campaign=campaign).values_list("status", "author_id")) == {
        (S.QUEUED, cast.alice.pk)
    }


@pytest.mark.django_db
def test_the_controls_through_the_page(client, cast, project):
    campaign = _grid(project, cast.bob, version=None, prompt="A lemon", axes=[("quality", "low, medium")])
    url = reverse("campaign_control", args=[project.pk, campaign.pk])
    client.force_login(cast.bob)
    client.post(url, {"action": "pause"})
    assert Campaign.objects.get().status == Campaign.Status.PAUSED
    assert "not started until you resume" in client.get(campaign.get_absolute_url()).content.decode()
    client.post(url, {"action": "resume"})
    assert Campaign.objects.get().status == Campaign.Status.ACTIVE
    client.post(url, {"action": "cancel"})
    assert Campaign.objects.get().status == Campaign.Status.CANCELED
    assert client.post(url, {"action": "explode"}).status_code == 400


@pytest.mark.django_db
def test_campaign_jobs_do_not_count_against_the_studios_waiting_limit(
    cast, project, settings, generation_post
):
    settings.FAIR_SHARE_QUEUED_PER_USER = 2
    _grid(project, cast.bob, version=None, prompt="A lemon", axes=[("quality", "low, medium, high")])
    from tests.conftest import job_params
    from workspace import jobs

    jobs.job_create(project=project, author=cast.bob, prompt="A pear", params=job_params())


# --- The page, and the ZIP ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_campaign_page_shows_progress_and_a_grid_labelled_by_its_values(client, cast, project):
    campaign = _grid(
        project,
        cast.bob,
        version=None,
        prompt="A lemon",
        axes=[("quality", "low, high"), ("size", "square, portrait")],
    )
    client.force_login(cast.vera)
    page = client.get(campaign.get_absolute_url()).content.decode()
    assert 'id="count-waiting">4<' in page
    for label in ("Quality ↓ · Size →", ">square<", ">portrait<", ">low<", ">high<"):
        assert label in page
    assert client.get(reverse("campaigns", args=[project.pk])).content.decode().count(campaign.name) == 1


@pytest.mark.django_db
def test_the_zip_names_files_by_the_chosen_column_sanitized_and_deduped(client, cast, project):
    campaign = _draft(
        project,
        cast.bob,
        _csv(
            "sku,product,season", "AB/12,mug,winter", "AB 12,vase,summer", "Cé-9,cup,spring", "..,bowl,autumn"
        ),
        version=template_version(project=project, text="{sku} {product} {season}"),
        key_column="sku",
    )
    batches.batch_confirm(campaign=campaign, author=cast.bob)
    for job in Job.objects.filter(campaign=campaign):
        Job.objects.filter(pk=job.pk).update(status=S.SUCCEEDED, reserved_cost=0)
        ImageFactory(job=job, project=project, format="png")
    client.force_login(cast.vera)
    response = client.get(reverse("campaign_zip", args=[project.pk, campaign.pk]), {"column": "sku"})
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.namelist() == ["AB-12.png", "AB-12-2.png", "Ce-9.png", "row.png", "metadata.json"]
    assert '"file": "AB-12-2.png"' in archive.read("metadata.json").decode()
    response = client.get(reverse("campaign_zip", args=[project.pk, campaign.pk]), {"column": "nope"})
    assert response.status_code == 400


@pytest.mark.django_db
def test_another_projects_campaign_is_a_404(client, cast, project, other_project):
    campaign = _grid(other_project, cast.charlie, version=None, prompt="A lemon", axes=[("quality", "low")])
    client.force_login(cast.alice)
    assert client.get(reverse("campaign_detail", args=[project.pk, campaign.pk])).status_code == 404
    assert client.get(reverse("campaign_detail", args=[other_project.pk, campaign.pk])).status_code == 404


def test_campaign_lane_is_bulk_unless_overnight():
    assert campaigns.campaign_lane(Campaign(overnight=True)) == (Job.Lane.OVERNIGHT, True)
    assert campaigns.campaign_lane(Campaign(overnight=False)) == (Job.Lane.BULK, False)


@pytest.mark.django_db
def test_an_overnight_batch_is_reserved_at_half_price_and_made_by_the_batch_api(
    cast, project, standin, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(queue, "send_job", lambda job_id, countdown=None: sent.append(job_id) or True)
    data = _csv("product,season", "mug,winter", "vase,summer", "jug,spring")
    synchronous = _draft(project, cast.bob, data)
    night = _draft(project, cast.bob, data, version=synchronous.template_version)
    Campaign.objects.filter(pk=night.pk).update(overnight=True)
    night.refresh_from_db()
    batches.batch_confirm(campaign=synchronous, author=cast.bob)
    batches.batch_confirm(campaign=night, author=cast.bob)
    synchronous.refresh_from_db()
    night.refresh_from_db()

    # The same rows, reserved at the Batch API's half, in the overnight lane; no worker is woken for them.
    # Each job's estimate is rounded to the micro-dollar on its own: half, to within a micro-dollar a job.
    assert abs(night.estimated_cost - synchronous.estimated_cost / 2) <= Decimal("0.000001") * 3
    made = list(Job.objects.filter(campaign=night).order_by("campaign_row"))
    assert {job.lane for job in made} == {Job.Lane.OVERNIGHT}
    assert not set(sent) & {job.pk for job in made}

    assert overnight.overnight_dispatch() == 3
    [remote] = standin.batches.batches.values()
    remote.ready_at = 0
    with django_capture_on_commit_callbacks(execute=True):  # the campaign settles once each line commits
        assert overnight.overnight_poll() == 1
    for job in made:
        job.refresh_from_db()
        assert job.status == S.SUCCEEDED and job.reserved_cost == 0
        [line] = LedgerEntry.objects.filter(job=job)
        tokens = spend.Tokens.from_usage(line.api_call.usage)
        full = sum(Decimal(getattr(tokens, kind)) * getattr(line.price, kind) for kind in Price.RATE_FIELDS)
        assert line.batch and line.cost == spend.money(full / 2 / 1_000_000)
    assert campaign_runs.progress(night).done == 3
    assert Campaign.objects.get(pk=night.pk).status == Campaign.Status.FINISHED


def test_safe_names():
    assert campaign_runs.safe_name("../../etc/passwd") == "etc-passwd"
    assert campaign_runs.safe_name("Ünïcode SKU 7") == "Unicode-SKU-7"
    assert campaign_runs.safe_name("") == "row"


# --- Choosing the template version a grid or batch runs ------------------------------------------------


def _two_versions(project, author):
    """Last month's approved version 1 and today's version 2, with different words."""
    v1 = template_version(project=project, author=author, text="A {product} on oak")
    v2 = template_version(project=project, author=author, template=v1.template, text="A {product} on marble")
    return v1, v2


def _grid_post(version, **fields) -> dict:
    return {
        "template": version.template_id,
        "template_version": version.pk,
        "var_product": "mug",
        "axis1": "quality",
        "values1": "low, medium",
        "action": "preview",
    } | fields


@pytest.mark.django_db
def test_a_grid_previews_and_runs_the_older_version_chosen(client, cast, project):
    v1, v2 = _two_versions(project, cast.bob)
    client.force_login(cast.bob)
    url = reverse("campaign_grid_new", args=[project.pk])
    # The setup page lists both versions with number, date and author; the newest is the default.
    page = client.get(f"{url}?template={v1.template_id}").content.decode()
    assert f'<option value="{v1.pk}">Version 1 · {v1.created_at:%d %b %Y} · bob</option>' in page
    assert f"Version 2 (newest) · {v2.created_at:%d %b %Y} · bob" in page
    assert "A {product} on marble" in page
    # A link from version 1's page preselects it and shows its words.
    page = client.get(f"{url}?template={v1.template_id}&template_version={v1.pk}").content.decode()
    assert f'<option value="{v1.pk}" selected>' in page and "A {product} on oak" in page

    preview = client.post(url, _grid_post(v1)).content.decode()
    assert "A mug on oak" in preview and "marble" not in preview
    response = client.post(url, _grid_post(v1, action="run"))
    assert response.status_code == 302, response.content[:800]
    campaign = Campaign.objects.get()
    assert campaign.template_version == v1
    assert {job.template_version_id for job in Job.objects.filter(campaign=campaign)} == {v1.pk}
    assert {job.prompt for job in Job.objects.filter(campaign=campaign)} == {"A mug on oak"}
    # The campaign page says which version it ran, with a link to it.
    detail = client.get(campaign.get_absolute_url()).content.decode()
    link = f'<a href="{v1.get_absolute_url()}" data-testid="campaign-template-version">'
    assert f"{link}Product shot, version 1</a>" in detail


@pytest.mark.django_db
def test_a_grid_without_a_version_runs_the_newest(client, cast, project):
    _v1, v2 = _two_versions(project, cast.bob)
    client.force_login(cast.bob)
    data = _grid_post(v2, template_version="", action="run")
    client.post(reverse("campaign_grid_new", args=[project.pk]), data)
    assert Campaign.objects.get().template_version == v2


@pytest.mark.django_db
def test_a_grid_refuses_a_version_of_another_template_or_project(client, cast, project, other_project):
    v1, _v2 = _two_versions(project, cast.bob)
    elsewhere = template_version(project=project, name="Flat lay", text="A {product} from above")
    stranger = template_version(project=other_project, text="A {product} somewhere else")
    client.force_login(cast.bob)
    url = reverse("campaign_grid_new", args=[project.pk])
    for wrong in (elsewhere, stranger):
        response = client.post(url, _grid_post(v1, template_version=wrong.pk, action="run"))
        assert response.status_code == 400
        assert "template_version" in response.context["form"].errors
        page = response.content.decode()
        assert "Choose one of this template&#x27;s versions." in page
        assert "somewhere else" not in page
    assert not Campaign.objects.exists() and not Job.objects.exists()


def _batch_post(version, *, template=None, **fields) -> dict:
    upload = io.BytesIO(_csv("product", "mug", "vase"))
    upload.name = "items.csv"
    return {
        "template": (template or version.template).pk,
        "template_version": version.pk,
        "file": upload,
        "quality": "low",
    } | fields


@pytest.mark.django_db
def test_a_batch_drafts_and_previews_the_older_version_chosen(client, cast, project):
    v1, v2 = _two_versions(project, cast.bob)
    client.force_login(cast.bob)
    url = reverse("campaign_batch_new", args=[project.pk])
    page = client.get(f"{url}?template={v1.template_id}&template_version={v1.pk}").content.decode()
    assert f'<option value="{v1.pk}" selected>Product shot: Version 1 · ' in page
    assert f"Product shot: Version 2 (newest) · {v2.created_at:%d %b %Y} · bob" in page
    response = client.post(url, _batch_post(v1))
    assert response.status_code == 302, response.content[:800]
    draft = Campaign.objects.get()
    assert draft.template_version == v1
    preview = client.get(draft.get_absolute_url()).content.decode()
    assert "A mug on oak" in preview and "marble" not in preview
    assert f'href="{v1.get_absolute_url()}"' in preview
    # Without a version: the newest.
    client.post(url, _batch_post(v2, template_version=""))
    assert Campaign.objects.order_by("-id").first().template_version == v2


@pytest.mark.django_db
def test_a_batch_refuses_a_version_of_another_template_or_project(client, cast, project, other_project):
    v1, _v2 = _two_versions(project, cast.bob)
    elsewhere = template_version(project=project, name="Flat lay", text="A {product} from above")
    stranger = template_version(project=other_project, text="A {product} somewhere else")
    client.force_login(cast.bob)
    url = reverse("campaign_batch_new", args=[project.pk])
    response = client.post(url, _batch_post(elsewhere, template=v1.template))
    assert response.status_code == 400
    assert response.context["form"].errors["template_version"] == [
        "Version 1 is a version of “Flat lay”, not of “Product shot”: choose one of its own versions."
    ]
    response = client.post(url, _batch_post(stranger, template=v1.template))
    assert response.status_code == 400
    assert "template_version" in response.context["form"].errors
    assert not Campaign.objects.exists() and not Job.objects.exists()


# --- "Use as new default" writes every axis the cell differs on -----------------------------------------


@pytest.mark.django_db
def test_use_as_default_writes_the_cells_model_and_variable_into_a_new_version(client, cast, project):
    v1 = template_version(
        project=project, text="A {product} in {season} light", defaults={"quality": "low"}, samples={}
    )
    campaign = _grid(
        project,
        cast.bob,
        version=v1,
        axes=[("model", "gpt-image-2, gpt-image-2.5-sunburst"), ("var:season", "spring, winter")],
        base={},
        values={"product": "mug"},
    )
    job = Job.objects.get(campaign=campaign, model="gpt-image-2.5-sunburst", variables__season="winter")
    client.force_login(cast.bob)
    response = client.post(reverse("campaign_cell_default", args=[project.pk, campaign.pk, job.pk]))
    assert response.status_code == 302 and "again=" not in response["Location"]
    newest = v1.template.versions.order_by("-number").first()
    assert newest.number == 2 and newest.text == v1.text
    assert newest.defaults == {"quality": "low", "model": "gpt-image-2.5-sunburst"}
    assert newest.samples == {"season": "winter"}
    # The old version and what it made are unchanged.
    v1.refresh_from_db()
    assert v1.defaults == {"quality": "low"} and v1.samples == {}
    job.refresh_from_db()
    assert job.template_version_id == v1.pk
    # Using the template now starts from the cell: its model in the Studio, its season filled in.
    studio = client.get(f"{reverse('project', args=[project.pk])}?template={v1.template_id}").content.decode()
    assert '<option value="gpt-image-2.5-sunburst" selected>' in studio
    assert 'name="var_season" value="winter"' in studio


@pytest.mark.django_db
def test_use_as_default_of_a_planning_effort_and_size_cell(client, cast, project):
    v1 = template_version(project=project, defaults={"size_preset": "square", "size": "1024x1024"})
    campaign = _grid(
        project,
        cast.bob,
        version=v1,
        axes=[("complexity", "low, high"), ("size", "square, story")],
        base={},
        values={"product": "mug"},
    )
    job = Job.objects.get(campaign=campaign, complexity="high", size_preset="story")
    client.force_login(cast.bob)
    client.post(reverse("campaign_cell_default", args=[project.pk, campaign.pk, job.pk]))
    newest = v1.template.versions.order_by("-number").first()
    assert newest.defaults == {"size_preset": "story", "size": "1152x2048", "complexity": "high"}


@pytest.mark.django_db
def test_use_as_default_keeps_the_model_a_cells_quality_needs(client, cast, project):
    v1 = template_version(project=project)
    base = {"model": "gpt-image-2.5-flare"}
    campaign = _grid(
        project, cast.bob, version=v1, axes=[("quality", "low, xhigh")], base=base, values={"product": "mug"}
    )
    job = Job.objects.get(campaign=campaign, quality="xhigh")
    client.force_login(cast.bob)
    client.post(reverse("campaign_cell_default", args=[project.pk, campaign.pk, job.pk]))
    newest = v1.template.versions.order_by("-number").first()
    # xhigh is not gpt-image-2's (the default model): the model the cell ran on comes with it.
    assert newest.defaults == {"quality": "xhigh", "model": "gpt-image-2.5-flare"}


@pytest.mark.django_db
def test_a_grid_fills_a_blank_variable_with_its_default_value(client, cast, project):
    version = template_version(
        project=project, text="A {product} in {season} light", samples={"season": "autumn"}
    )
    client.force_login(cast.bob)
    url = reverse("campaign_grid_new", args=[project.pk])
    page = client.get(f"{url}?template={version.template_id}").content.decode()
    assert 'name="var_season" value="autumn"' in page
    data = _grid_post(version, var_season="", axis1="var:product", values1="mug, vase")
    preview = client.post(url, data).content.decode()
    assert "A mug in autumn light" in preview and "A vase in autumn light" in preview


@pytest.mark.django_db
def test_a_models_defaults_make_way_for_a_grids_model(project):
    # High planning effort is the template's default, but GPT Image 1.5 takes none: its cells run
    # without it rather than refusing the whole grid; the other cells keep it.
    version = template_version(project=project, defaults={"complexity": "high"})
    plan = grids.grid_plan(
        project=project,
        template_version=version,
        brand_kit_version=None,
        prompt="",
        values={"product": "mug"},
        base={},
        axes=[("model", "gpt-image-2, gpt-image-1.5")],
    )
    efforts = {cell.values["model"]: cell.spec.params["complexity"] for cell in plan.cells}
    assert efforts == {"gpt-image-2": "high", "gpt-image-1.5": ""}


@pytest.mark.django_db
def test_a_batch_takes_its_template_versions_model_and_planning_effort(cast, project):
    version = template_version(
        project=project,
        text="A {product} in {season} light",
        defaults={"model": "gpt-image-2.5-flare", "complexity": "low", "output_format": "webp"},
    )
    draft = _draft(project, cast.bob, _csv("product,season", "mug,winter"), version=version)
    batches.batch_confirm(campaign=draft, author=cast.bob, key_column="")
    job = Job.objects.get(campaign=draft)
    assert (job.model, job.complexity, job.output_format, job.quality) == (
        "gpt-image-2.5-flare",
        "low",
        "webp",
        "low",
    )


@pytest.mark.django_db
def test_use_as_default_of_a_cell_whose_model_was_retired_saves_nothing(client, cast, project):
    from datetime import date

    from workspace import imagemodels as im
    from workspace.models import ImageModelSpec

    v1 = template_version(project=project)
    base = {"model": "gpt-image-2.5-flare"}
    campaign = _grid(
        project, cast.bob, version=v1, axes=[("quality", "low, xhigh")], base=base, values={"product": "mug"}
    )
    job = Job.objects.get(campaign=campaign, quality="xhigh")
    ImageModelSpec.objects.filter(name="gpt-image-2.5-flare").update(retired_on=date(2026, 1, 1))
    im.invalidate()
    client.force_login(cast.bob)
    response = client.post(
        reverse("campaign_cell_default", args=[project.pk, campaign.pk, job.pk]), follow=True
    )
    assert response.status_code == 200
    assert "No new version was saved: GPT Image 2.5 Flare was retired" in response.content.decode()
    assert v1.template.versions.count() == 1
