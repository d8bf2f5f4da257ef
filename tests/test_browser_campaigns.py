"""A browser journey through campaigns: headless Chromium → live server → Redis → an in-thread Celery
worker → the stand-in, and back through htmx polling. Run a 3 x 2 grid, approve a cell, upload a
20-row CSV (a bad one first), watch it finish, download the ZIP named by the SKU column.

Set ATELIER_SHOTS_DIR to also save screenshots of each page at desktop and phone width.
"""

import io
import os
import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.factories import ProjectFactory, template_version
from tests.test_browser import (  # noqa: F401 - fixtures
    ASYNC,
    NOW,
    browser,
    celery_worker,
    live_server,
    log_in,
    page,
    plain_http,
)
from workspace.campaign_models import Campaign
from workspace.models import Image, Job

pytestmark = pytest.mark.browser

SHOTS = os.environ.get("ATELIER_SHOTS_DIR", "")


def shoot(tab, name: str) -> None:
    """Desktop and phone screenshots of the page as it is, when ATELIER_SHOTS_DIR asks for them."""
    if not SHOTS:
        return
    folder = Path(SHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(folder / f"{name}-desktop.png"), full_page=True)
    size = tab.viewport_size
    tab.set_viewport_size({"width": 390, "height": 844})
    tab.screenshot(path=str(folder / f"{name}-phone.png"), full_page=True)
    tab.set_viewport_size(size)


def test_a_grid_and_a_catalog_batch_from_setup_to_zip(page, make_user, standin, tmp_path):  # noqa: F811
    maya = make_user("maya")
    project = ProjectFactory(name="Launch", created_by=maya)
    shot = template_version(project=project, name="Product on oak", text="A {product} on oak, soft light")
    log_in(page, "maya")

    # A 3 × 2 grid: quality down, the product across.
    page.goto(f"/p/{project.pk}/campaigns/")
    page.get_by_role("link", name="New variant grid").click()
    page.get_by_label("Template").select_option(str(shot.template_id))
    page.get_by_role("button", name="Use this template").click()
    page.get_by_label("First axis").select_option("quality")
    page.locator("#id_values1").fill("low, medium, high")
    page.get_by_label("Second axis (optional)").select_option("var:product")
    page.locator("#id_values2").fill("mug, vase")
    page.get_by_role("button", name="Show the grid and its cost").click()
    preview = page.locator("table.variant-grid")
    expect(preview.locator("tbody tr")).to_have_count(3, timeout=NOW)
    expect(preview.locator("thead")).to_contain_text("mug")
    expect(page.get_by_role("heading", name=re.compile(r"6 cells, about \$"))).to_be_visible()
    shoot(page, "grid-setup")
    page.get_by_role("button", name=re.compile(r"Run 6 jobs")).click()

    expect(page).to_have_url(re.compile(r"/campaigns/\d+/$"), timeout=NOW)
    grid = Campaign.objects.get(kind=Campaign.Kind.GRID)
    cells = page.locator("table.variant-grid.results .campaign-cell")
    expect(cells).to_have_count(6, timeout=NOW)
    expect(page.locator('.campaign-cell[data-status="succeeded"]')).to_have_count(6, timeout=ASYNC)
    expect(page.locator("#count-done")).to_have_text("6", timeout=ASYNC)
    expect(page.locator("table.variant-grid.results thead")).to_contain_text("vase")
    first = Job.objects.filter(campaign=grid).order_by("id").first()
    page.locator(f"#cell-{first.pk}-approve").click()
    expect(page.locator(f"#cell-{first.pk} .badge.review")).to_have_text("Approved", timeout=NOW)
    assert Image.objects.get(job=first).review_state == Image.Review.APPROVED
    shoot(page, "grid-results")

    # A catalog batch: a bad file is refused with its row and column, then 20 good rows.
    catalog = template_version(project=project, name="Catalog", text="{sku}: a {product} in {season} light")
    page.goto(f"/p/{project.pk}/campaigns/batch")
    page.get_by_label("Template", exact=True).select_option(str(catalog.template_id))
    bad = b"sku,product,season\nSKU-1,mug,winter\nSKU-2,=HYPERLINK(1),summer\n"
    page.get_by_label("CSV file").set_input_files({"name": "bad.csv", "mimeType": "text/csv", "buffer": bad})
    page.get_by_role("button", name="Check the file").click()
    problems = page.locator("table.problems-table tbody tr")
    expect(problems).to_have_count(1, timeout=NOW)
    expect(problems.first).to_contain_text("3")
    expect(problems.first).to_contain_text("product")
    expect(problems.first).to_contain_text("formula")
    assert not Campaign.objects.filter(kind=Campaign.Kind.BATCH).exists()
    shoot(page, "batch-problems")

    rows = "\n".join(f"SKU-{i:02d},item {i},winter" for i in range(1, 21))
    good = f"sku,product,season\n{rows}\n".encode()
    page.get_by_label("Template", exact=True).select_option(str(catalog.template_id))
    page.get_by_label("CSV file").set_input_files(
        {"name": "items.csv", "mimeType": "text/csv", "buffer": good}
    )
    page.get_by_label("Name the files by column").fill("sku")
    page.get_by_role("button", name="Check the file").click()
    expect(page.get_by_role("heading", name="20 rows checked: ready to queue")).to_be_visible(timeout=NOW)
    expect(page.locator(".prompt-preview")).to_contain_text("SKU-01: a item 1 in winter light")
    page.get_by_role("button", name=re.compile(r"Queue 20 jobs")).click()
    expect(page.locator("#count-done")).to_have_text("20", timeout=ASYNC * 2)
    expect(page.locator("#campaign-state")).to_contain_text("Finished", timeout=ASYNC)
    expect(page.locator("#count-cost")).not_to_have_text("$0.00")
    shoot(page, "campaign-page")

    page.get_by_label("Name files by").select_option("sku")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download ZIP").click()
    saved = tmp_path / "batch.zip"
    download_info.value.save_as(saved)
    with zipfile.ZipFile(io.BytesIO(saved.read_bytes())) as archive:
        names = archive.namelist()
    assert names == [*(f"SKU-{i:02d}.png" for i in range(1, 21)), "metadata.json"]
    batch = Campaign.objects.get(kind=Campaign.Kind.BATCH)
    assert batch.status == Campaign.Status.FINISHED
    assert Job.objects.filter(campaign=batch, status=Job.Status.SUCCEEDED).count() == 20


def test_a_grid_runs_an_older_version_and_a_cell_becomes_the_new_default(page, make_user, standin):  # noqa: F811
    maya = make_user("maya")
    project = ProjectFactory(name="Launch", created_by=maya)
    approved = template_version(
        project=project, text="A {product} in {season} light", defaults={"quality": "low"}
    )
    template_version(project=project, template=approved.template, text="A {product} on marble, {season}")
    log_in(page, "maya")

    # Version 2 is being edited; the grid runs version 1, chosen on the grid form.
    page.goto(f"/p/{project.pk}/campaigns/grid?template={approved.template_id}")
    expect(page.get_by_test_id("grid-template-text")).to_have_text("A {product} on marble, {season}")
    page.get_by_label("Template version").select_option(str(approved.pk))
    page.get_by_label("{product}").fill("mug")
    page.get_by_label("First axis").select_option("model")
    page.locator("#id_values1").fill("gpt-image-2, gpt-image-2.5-sunburst")
    page.get_by_label("Second axis (optional)").select_option("var:season")
    page.locator("#id_values2").fill("spring, winter")
    page.get_by_role("button", name="Show the grid and its cost").click()
    expect(page.get_by_test_id("grid-template-text")).to_have_text(
        "A {product} in {season} light", timeout=NOW
    )
    expect(page.locator("table.variant-grid")).to_contain_text("A mug in winter light")
    expect(page.get_by_label("Template version")).to_have_value(str(approved.pk))
    shoot(page, "grid-version")
    page.get_by_role("button", name=re.compile(r"Run 4 jobs")).click()

    expect(page.get_by_test_id("campaign-template-version")).to_have_text(
        "Product shot, version 1", timeout=NOW
    )
    expect(page.locator('.campaign-cell[data-status="succeeded"]')).to_have_count(4, timeout=ASYNC)
    grid = Campaign.objects.get(kind=Campaign.Kind.GRID)
    assert grid.template_version == approved
    cell = Job.objects.get(campaign=grid, model="gpt-image-2.5-sunburst", variables__season="winter")
    assert cell.prompt == "A mug in winter light"

    # The sunburst × winter cell becomes version 3's defaults; version 1 stays as it was.
    page.locator(f"#cell-{cell.pk}-default").click()
    expect(page.get_by_text("Saved Product shot version 3")).to_be_visible(timeout=NOW)
    expect(page.get_by_text("made from version 1 (the one this grid ran)")).to_be_visible()
    newest = approved.template.versions.get(number=3)
    assert newest.text == approved.text
    assert newest.defaults == {"quality": "low", "model": "gpt-image-2.5-sunburst"}
    assert newest.samples == {"season": "winter"}
    approved.refresh_from_db()
    assert approved.samples == {} and approved.defaults == {"quality": "low"}

    page.goto(newest.get_absolute_url())
    expect(page.get_by_test_id("template-samples")).to_have_text("{season} = winter")
    shoot(page, "template-defaults")
    page.get_by_role("link", name="Edit (new version)").click()
    expect(page.get_by_label("Default model")).to_have_value("gpt-image-2.5-sunburst")
    expect(page.get_by_test_id("preview-defaults")).to_contain_text("{season} = winter")
    expect(page.get_by_test_id("prompt-preview")).to_have_text("A [product] in winter light")
    shoot(page, "template-form-defaults")
