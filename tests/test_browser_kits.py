"""A browser journey: make a brand kit and a template, use the template from the Studio, see the exact
prompt before submitting, and find the versions on the image page. Machinery from test_browser.py."""

import os

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

import re

import pytest
from playwright.sync_api import expect

from tests.factories import ReferenceFactory
from tests.test_browser import (  # noqa: F401  (fixtures, found by name)
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
from workspace.campaign_models import BrandKitVersion, TemplateVersion
from workspace.models import Job

pytestmark = pytest.mark.browser

SENT = (
    "A linen shirt on a table, spring light\n\n"
    "Style: warm, editorial. Palette: #1f3a5f, #f2e8d5. Avoid: text, logos."
)


def test_a_kit_and_a_template_make_an_image_that_says_so(page, make_user, standin):  # noqa: F811
    maya = make_user("maya")
    project = project_for(maya)
    ref = ReferenceFactory(project=project, uploaded_by=maya, name="shirt.png")
    log_in(page, "maya")
    page.goto(project.get_absolute_url())

    # 1. A brand kit, previewed as it is typed, with a reference from the library.
    page.get_by_role("link", name="Brand kits").click()
    page.get_by_role("link", name="New brand kit").click()
    page.get_by_label("Name", exact=True).fill("House style")
    page.get_by_label("Style words").fill("warm, editorial")
    page.get_by_label("Palette").fill("#1F3A5F #f2e8d5")
    page.get_by_label("Things to avoid").fill("text, logos")
    page.get_by_label("Sample prompt for the preview").fill("A lamp")
    preview = page.get_by_test_id("prompt-preview")
    expect(preview).to_have_text(
        "A lamp\n\nStyle: warm, editorial. Palette: #1f3a5f, #f2e8d5. Avoid: text, logos.", timeout=NOW
    )
    page.get_by_label("shirt.png").check()
    page.get_by_role("button", name="Save brand kit").click()
    expect(page.get_by_role("heading", name=re.compile("House style"))).to_be_visible(timeout=NOW)
    expect(page.locator(".swatches li")).to_have_count(2)
    kit = BrandKitVersion.objects.get()
    assert list(kit.references.all()) == [ref]

    # 2. A template: a bad one is refused with its position, then the preview shows the exact prompt.
    page.get_by_role("link", name="Templates").click()
    page.get_by_role("link", name="New template").click()
    page.get_by_label("Name", exact=True).fill("Product on a table")
    page.get_by_label("Template", exact=True).fill("A {product on a table")
    expect(page.get_by_test_id("template-problem")).to_contain_text("Position 3", timeout=NOW)
    page.get_by_label("Template", exact=True).fill("A {product} on a table, {season} light")
    page.get_by_label("Brand kit").select_option(label="House style")
    page.get_by_label("Default values").fill("product = linen shirt\nseason = spring")
    expect(page.get_by_test_id("prompt-preview")).to_have_text(SENT, timeout=NOW)
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("heading", name=re.compile("Product on a table"))).to_be_visible(timeout=NOW)
    version = TemplateVersion.objects.get()
    assert version.brand_kit_version == kit
    assert version.samples == {"product": "linen shirt", "season": "spring"}

    # 3. Use it from the Studio: one field per variable (starting from the saved default values),
    # the exact prompt before submit.
    page.get_by_role("link", name="Use version 1 in the Studio").click()
    expect(page.get_by_test_id("template-binding")).to_contain_text("Product on a table v1", timeout=NOW)
    expect(page.get_by_label("Season")).to_have_value("spring")
    page.get_by_label("Product").fill("linen shirt")
    page.get_by_label("Season").fill("spring")
    expect(page.get_by_test_id("prompt-preview")).to_have_text(SENT, timeout=NOW)
    page.get_by_role("button", name="Generate").click()

    card = page.locator("#job-feed .job-card").first
    expect(card.locator("img")).to_have_count(1, timeout=ASYNC)
    job = wait_until_finished(Job.objects.get(project=project).pk)
    assert job.status == Job.Status.SUCCEEDED
    assert (job.template_version, job.brand_kit_version) == (version, kit)
    assert job.variables == {"product": "linen shirt", "season": "spring"}
    assert job.kind == Job.Kind.EDIT  # the kit's reference went as an input
    [sent] = [r for r in standin.requests if r.path.startswith("/v1/images/")]  # not the credential check
    assert sent.fields["prompt"] == SENT

    # 4. The image page names the versions, with links.
    card.locator("img").first.click()
    made_with = page.get_by_test_id("made-with")
    expect(made_with).to_contain_text("Product on a table, version 1", timeout=NOW)
    expect(made_with).to_contain_text("linen shirt")
    made_with.get_by_role("link", name="House style, version 1").click()
    expect(page.get_by_role("heading", name=re.compile("House style"))).to_be_visible(timeout=NOW)
