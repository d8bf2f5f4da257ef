"""No page scrolls sideways: the newest pages at desktop (1280 px) and phone (390 px) width, with real
content in them (a checked PNG, a GIF, an SVG, a finished grid, a refused CSV, a conversation, an
overnight job), each asserted to fit its viewport.

A page wider than the window hides its right edge behind a horizontal scrollbar; at 1280 px the image
page once did (a long unbroken line in its details). Set ATELIER_SHOTS_DIR to also save a screenshot of
every page at both widths, to look at.
"""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.factories import ProjectFactory, brand_kit_version, template_version
from tests.helpers import create_job, run
from tests.test_browser import (  # noqa: F401 - fixtures are found by name
    ASYNC,
    NOW,
    browser,
    celery_worker,
    live_server,
    log_in,
    page,
    plain_http,
)
from workspace import conversations
from workspace.models import ContentCredential, Job

pytestmark = pytest.mark.browser

SHOTS = os.environ.get("ATELIER_SHOTS_DIR", "")
WIDTHS = ((1280, 900, "desktop"), (390, 844, "phone"))

# The outermost elements sticking out past the right edge (their parent fits), to say which to fix.
OVERFLOW = """() => {
  const width = window.innerWidth;
  const over = (el) => el.getBoundingClientRect().right > width + 0.5;
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (!over(el) || el.getBoundingClientRect().width === 0 || over(el.parentElement)) continue;
    const classes = typeof el.className === 'string' ? el.className.trim().split(/\\s+/).join('.') : '';
    const box = el.getBoundingClientRect();
    out.push(`${el.parentElement.tagName.toLowerCase()} > ${el.tagName.toLowerCase()}` +
             `${el.id ? '#' + el.id : ''}${classes ? '.' + classes : ''}` +
             ` ${Math.round(box.width)} px wide, right at ${Math.round(box.right)}`);
  }
  return {scroll: document.documentElement.scrollWidth, inner: width, out: out.slice(0, 8)};
}"""


def check(tab, name: str, problems: list[str]) -> None:
    """At each width: the page is no wider than the window (and a screenshot when asked for)."""
    for width, height, label in WIDTHS:
        tab.set_viewport_size({"width": width, "height": height})
        tab.wait_for_timeout(100)  # layout after the resize
        found = tab.evaluate(OVERFLOW)
        if found["scroll"] > found["inner"]:
            problems.append(f"{name} at {width} px is {found['scroll']} px wide: {found['out']}")
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(Path(SHOTS) / f"{name}-{label}.png"), full_page=True)
    tab.set_viewport_size({"width": 1280, "height": 900})


def test_the_new_pages_fit_the_window_at_desktop_and_phone_width(page, make_user, standin):  # noqa: F811
    maya = make_user("maya")
    project = ProjectFactory(name="Spring catalogue launch", created_by=maya)
    png = run(create_job(project=project, author=maya, prompt="A lemon on a blue tiled table")).images.get()
    gif = run(
        create_job(
            project=project,
            author=maya,
            prompt="A paper rocket taking off, looping",
            model="gpt-image-2.6-sunburst",
            output_format="gif",
            frame_count=4,
            frame_duration_ms=150,
        )
    ).images.get()
    svg = run(
        create_job(
            project=project,
            author=maya,
            prompt="A flat vector lemon logo",
            model="gpt-image-2.6-flare",
            output_format="svg",
            svg_model="gpt-5.4-mini",
            svg_effort="low",
        )
    ).images.get()
    # The worker checks each output's credentials after it is stored; the PNG's must be answered.
    for _ in range(100):
        if ContentCredential.objects.filter(image=png, state="checked").exists():
            break
        page.wait_for_timeout(100)
    overnight = create_job(
        project=project, author=maya, prompt="Forty product shots on oak, overnight", lane=Job.Lane.OVERNIGHT
    )
    kit = brand_kit_version(project=project, name="House style", palette=["#aabbcc", "#223344", "#f0c808"])
    shot = template_version(project=project, name="Product on oak", text="A {product} on oak, soft light")
    catalog = template_version(project=project, name="Catalog", text="{sku}: a {product} in {season} light")
    thread = conversations.conversation_start(project=project, author=maya, image=png)
    conversations.turn_send(conversation=thread, author=maya, message="Make the lemon a lime")

    problems: list[str] = []
    log_in(page, "maya")

    page.goto(f"/p/{project.pk}/")
    expect(page.locator(f"#job-{overnight.pk}, .job-card").first).to_be_visible(timeout=NOW)
    check(page, "project", problems)
    page.goto(f"/p/{project.pk}/jobs/{overnight.pk}/")
    check(page, "job-overnight", problems)
    page.goto(f"/p/{project.pk}/gallery")
    check(page, "gallery", problems)
    for name, image in (("image-png", png), ("image-gif", gif), ("image-svg", svg)):
        page.goto(image.get_absolute_url())
        expect(page.locator("figure img").first).to_be_visible(timeout=NOW)
        check(page, name, problems)

    page.goto(f"/p/{project.pk}/edit?inputs=img:{png.pk}")
    page.locator("#edit-form").get_by_label("Model").select_option("gpt-image-2.5-sunburst")
    expect(page.locator("[data-markup-fieldset]")).to_be_visible(timeout=NOW)
    check(page, "edit-markup", problems)

    page.goto(f"/p/{project.pk}/kits/")
    check(page, "kits", problems)
    page.goto(f"/p/{project.pk}/kits/{kit.kit_id}/")
    check(page, "kit-detail", problems)
    page.goto(f"/p/{project.pk}/templates/")
    check(page, "templates", problems)
    page.goto(f"/p/{project.pk}/templates/{shot.template_id}/edit")
    page.locator("form textarea").first.fill(
        "A {product} on oak, soft morning light from the left, a linen backdrop, {angle} view"
    )
    expect(page.locator("[data-testid=prompt-preview]")).to_contain_text("linen", timeout=NOW)
    check(page, "template-form", problems)

    # A 3 × 2 grid, set up, run and finished.
    page.goto(f"/p/{project.pk}/campaigns/grid")
    page.get_by_label("Template", exact=True).select_option(str(shot.template_id))
    page.get_by_role("button", name="Use this template").click()
    page.get_by_label("First axis").select_option("quality")
    page.locator("#id_values1").fill("low, medium, high")
    page.get_by_label("Second axis (optional)").select_option("var:product")
    page.locator("#id_values2").fill("ceramic mug, tall glass vase")
    page.get_by_role("button", name="Show the grid and its cost").click()
    expect(page.locator("table.variant-grid tbody tr")).to_have_count(3, timeout=NOW)
    check(page, "grid-setup", problems)
    page.get_by_role("button", name=re.compile(r"Run 6 jobs")).click()
    expect(page).to_have_url(re.compile(r"/campaigns/\d+/$"), timeout=NOW)
    expect(page.locator('.campaign-cell[data-status="succeeded"]')).to_have_count(6, timeout=ASYNC)
    check(page, "grid-results", problems)
    page.goto(f"/p/{project.pk}/campaigns/")
    check(page, "campaigns", problems)

    # A catalog batch whose file has problems: the table that lists them.
    page.goto(f"/p/{project.pk}/campaigns/batch")
    page.get_by_label("Template", exact=True).select_option(str(catalog.template_id))
    bad = (
        b"sku,product,season\nSKU-1,mug,winter\nSKU-2,=HYPERLINK(1),summer\n"
        b"SKU-1,a very long product name that goes on and on without stopping anywhere,autumn\n"
    )
    page.get_by_label("CSV file").set_input_files({"name": "bad.csv", "mimeType": "text/csv", "buffer": bad})
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator("table.problems-table tbody tr").first).to_be_visible(timeout=NOW)
    check(page, "batch-problems", problems)

    page.goto(f"/p/{project.pk}/conversations/{thread.pk}/")
    expect(page.locator("#turns > li.turn img").first).to_be_visible(timeout=ASYNC)
    check(page, "conversation", problems)

    assert not problems, "\n".join(problems)
