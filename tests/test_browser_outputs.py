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
from tests.helpers import create_job, last_image_call, run
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
    wait_until_finished,
)
from workspace.models import ContentCredential, Conversation, Job, Turn

pytestmark = pytest.mark.browser


def test_make_a_gif_open_it_refine_an_image_over_two_turns_and_branch_the_first(
    page,  # noqa: F811
    make_user,
    standin,
):
    """The issue's journey, as one person does it: make a GIF, open it and see it play, then refine a
    still image over two turns and branch the first turn into a thread that continues its response."""
    owner = make_user("gil")
    project = project_for(owner, "Motion")
    still = run(create_job(project=project, author=owner, prompt="A lemon on a blue table")).images.get()
    log_in(page, "gil")

    # 1. Make a GIF: its fields appear only for a model and format that take them.
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
    card = page.locator("#job-feed .job-card").filter(has_text="A paper rocket")  # the still's is there too
    expect(card.locator(".status-pill")).to_have_text("Done", timeout=ASYNC)
    expect(card.locator("img")).to_have_count(1)
    job = Job.objects.get(project=project, output_format="gif")
    assert job.frame_count == 4
    gif_image = job.images.get()

    # 2. Open it: the image page shows the animated original, which plays (4 frames of 150 ms).
    page.goto(gif_image.get_absolute_url())
    shown = page.locator("figure img").first
    expect(shown).to_be_visible(timeout=NOW)
    response = page.request.get(shown.get_attribute("src"))
    assert response.headers["content-type"] == "image/gif"
    with PILImage.open(io.BytesIO(response.body())) as gif:
        assert gif.is_animated and gif.n_frames == 4 and gif.info["duration"] == 150
    expect(page.get_by_text("animated, 4 frames of 150 ms")).to_be_visible()
    assert page.evaluate("document.querySelector('figure img').naturalWidth") == gif_image.width  # it decoded
    # A GIF is what a model makes, not takes: no conversation is offered from it.
    expect(page.get_by_role("button", name="Refine in conversation")).to_have_count(0)

    # 3. Refine the still image over two turns; each turn shows its own image once the worker is done.
    page.goto(still.get_absolute_url())
    page.get_by_role("button", name="Refine in conversation").click()
    expect(page.get_by_role("heading", name="Refine in conversation", level=1)).to_be_visible(timeout=NOW)
    thread = Conversation.objects.get(root_image=still)
    turns = page.locator("#turns > li.turn")
    for number, message in enumerate(("Make the lemon a lime", "Now put it on a red plate"), start=1):
        page.get_by_label("Your message").fill(message)
        page.get_by_role("button", name="Send").click()
        expect(turns).to_have_count(number, timeout=NOW)
        picture = turns.nth(number - 1).get_by_role("img", name=re.compile(f"Turn {number}:"))
        expect(picture).to_be_visible(timeout=ASYNC)
        expect(turns.nth(number - 1)).to_contain_text(message)
        expect(turns.nth(number - 1)).to_contain_text("gpt-5.5")  # its ledger lines, mainline included
        page.wait_for_function(
            "image => image.complete && image.naturalWidth > 0", arg=picture.element_handle()
        )
    first, second = Turn.objects.filter(conversation=thread).order_by("index")
    assert first.image_id and second.image_id and first.image_id != second.image_id
    assert second.parent_id == first.pk and second.source_image_id == first.image_id
    for number, turn in enumerate((first, second), start=1):
        link = turns.nth(number - 1).get_by_role("link").filter(has=page.get_by_role("img"))
        expect(link).to_have_attribute("href", turn.image.get_absolute_url())

    # 4. Branch the first turn: a new thread that starts from turn 1's image, says where it came from,
    # and whose first message continues turn 1's response (not turn 2's).
    page.get_by_role("button", name="Branch a new thread from turn 1").click()
    expect(page.get_by_text("Branched from")).to_be_visible(timeout=NOW)
    expect(page.get_by_role("link", name=f"turn 1 of conversation {thread.pk}")).to_be_visible()
    expect(page.get_by_role("img", name=f"The starting image ({first.image_id})")).to_be_visible()
    expect(turns).to_have_count(0)
    branch = Conversation.objects.exclude(pk=thread.pk).get()
    page.get_by_label("Your message").fill("Make it a blood orange instead")
    page.get_by_role("button", name="Send").click()
    expect(turns.first.get_by_role("img", name=re.compile("Turn 1:"))).to_be_visible(timeout=ASYNC)
    branched = Turn.objects.get(conversation=branch)
    assert branched.parent_id == first.pk and branched.source_image_id == first.image_id
    sent = [record for record in standin.requests if record.path == "/v1/responses"]
    assert [record.fields.get("previous_response_id") for record in sent] == [
        None,
        first.response_id,
        first.response_id,
    ]

    # 5. The branched turn's image page shows its credential once the worker has checked it.
    for _ in range(100):
        if ContentCredential.objects.filter(image_id=branched.image_id, state="checked").exists():
            break
        page.wait_for_timeout(100)
    page.goto(branched.image.get_absolute_url())
    expect(page.locator("#credentials")).to_contain_text("verified", timeout=NOW)
    wait_until_finished(branched.job_id)


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
    sent = last_image_call(standin)
    [data] = [part[3] for part in sent.files if part[0] == "markup"]
    with PILImage.open(io.BytesIO(data)) as drawn:
        assert drawn.size == (source.width, source.height)
        alpha = drawn.getchannel("A")
        assert alpha.getextrema() == (0, 255)  # transparent around the marks, opaque on them
        rim_x, rim_y = round(0.75 * source.width), round(0.5 * source.height)
        rim = alpha.crop((rim_x - 3, rim_y - 3, rim_x + 3, rim_y + 3))
        assert rim.getextrema()[1] == 255  # the circle's rim is where it was drawn, in image pixels
        assert alpha.getpixel((source.width - 1, source.height - 1)) == 0
