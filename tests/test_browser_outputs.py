"""Browser journeys for GPT Image 2.6's outputs and markup edits: headless Chromium → live server → Redis →
an in-thread Celery worker → the stand-in, as in test_browser.py (whose machinery this reuses)."""

import io
import re

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image as PILImage
from playwright.sync_api import expect

from tests.factories import ImageFactory
from tests.test_browser import (  # noqa: F401 - fixtures are found by name
    ASYNC,
    NOW,
    browser,
    celery_worker,
    live_server,
    log_in,
    page,
    plain_http,
    project_for,
)
from workspace.models import Job

pytestmark = pytest.mark.browser


def test_make_a_gif_open_it_and_it_plays(page, make_user, standin):  # noqa: F811
    owner = make_user("gil")
    project = project_for(owner, "Motion")
    log_in(page, "gil")
    page.goto(f"/p/{project.pk}/")
    form = page.locator("form.composer-form")
    expect(form.get_by_label("Frames")).to_be_hidden()
    form.get_by_label("Prompt", exact=True).fill("A paper rocket taking off, looping")
    form.get_by_label("Model").select_option("gpt-image-2.6-sunburst")
    form.get_by_label("Format").select_option("gif")
    expect(form.get_by_label("Frames")).to_be_visible()
    expect(form.get_by_label("Compression (%)")).to_be_hidden()
    form.get_by_label("Frames").fill("4")
    form.get_by_label("Frame duration (ms)").fill("150")
    form.get_by_role("button", name="Generate").click()

    card = page.locator("#job-feed .job-card").first
    expect(card.locator("img")).to_have_count(1, timeout=ASYNC)
    expect(card.locator(".status-pill")).to_have_text("Done")
    job = Job.objects.get(project=project)
    assert job.output_format == "gif" and job.frame_count == 4
    image = job.images.get()

    page.goto(image.get_absolute_url())
    shown = page.locator("figure img").first
    expect(shown).to_be_visible(timeout=NOW)
    response = page.request.get(shown.get_attribute("src"))
    assert response.headers["content-type"] == "image/gif"
    with PILImage.open(io.BytesIO(response.body())) as gif:
        assert gif.is_animated and gif.n_frames == 4 and gif.info["duration"] == 150
    expect(page.get_by_text("animated, 4 frames of 150 ms")).to_be_visible()
    assert page.evaluate("document.querySelector('figure img').naturalWidth") == image.width  # it decoded


def test_draw_a_markup_on_the_edit_page_and_submit(page, make_user, standin):  # noqa: F811
    owner = make_user("hana")
    project = project_for(owner, "Markup")
    source = ImageFactory(job__project=project, job__author=owner)  # a small PNG
    with default_storage.open(source.file.name, "rb") as handle:
        assert PILImage.open(handle).size == (source.width, source.height)
    log_in(page, "hana")
    page.goto(f"{reverse('edit', args=[project.pk])}?inputs=img:{source.pk}")
    form = page.locator("#edit-form")
    form.get_by_label("Model").select_option("gpt-image-2.5-sunburst")
    markup = form.locator("[data-markup-fieldset]")
    expect(markup).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.querySelector('.markup-painter .mask-image'); return i && i.complete; }"
    )

    # A circle: press at its centre, drag out to its radius.
    page.locator(".markup-canvas").scroll_into_view_if_needed()
    box = page.locator(".markup-canvas").bounding_box()  # in the viewport, where the mouse is

    def at(fx: float, fy: float) -> tuple[float, float]:
        return box["x"] + fx * box["width"], box["y"] + fy * box["height"]

    page.mouse.move(*at(0.5, 0.5))
    page.mouse.down()
    page.mouse.move(*at(0.75, 0.5), steps=5)
    page.mouse.up()
    # A label: type it, then click where it goes.
    markup.get_by_role("button", name="Label", exact=True).click()
    markup.get_by_label("Label text").fill("make this red")
    page.mouse.click(*at(0.05, 0.15))
    expect(markup.locator("[data-markup-status]")).to_have_text(re.compile("2 marks drawn"), timeout=NOW)
    page.wait_for_function(
        """() => { const r = document.querySelector('[data-markup-painter]');
             return Number(r.dataset.markupRevision) >= 1 && !r.hasAttribute('data-markup-pending')
               && document.querySelector('[data-markup-input]').files.length === 1; }"""
    )

    form.get_by_label("Prompt", exact=True).fill("Make the circled part red")
    form.get_by_role("button", name=re.compile("Edit image")).click()
    card = page.locator("#job-feed .job-card").first
    expect(card.locator(".status-pill")).to_have_text("Done", timeout=ASYNC)

    job = Job.objects.get(project=project, kind="edit")
    assert job.markup and not job.mask
    [sent] = [r for r in standin.requests if r.path.startswith("/v1/images/")]  # not the credential check
    [data] = [part[3] for part in sent.files if part[0] == "markup"]
    with PILImage.open(io.BytesIO(data)) as drawn:
        assert drawn.size == (source.width, source.height)
        alpha = drawn.getchannel("A")
        assert alpha.getextrema() == (0, 255)  # transparent around the marks, opaque on them
        rim_x, rim_y = round(0.75 * source.width), round(0.5 * source.height)
        rim = alpha.crop((rim_x - 3, rim_y - 3, rim_x + 3, rim_y + 3))
        assert rim.getextrema()[1] == 255  # the circle's rim is where it was drawn, in image pixels
        assert alpha.getpixel((source.width - 1, source.height - 1)) == 0
