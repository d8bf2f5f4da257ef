"""Real browser journeys: headless Chromium → live Django server → Redis → an in-thread Celery worker →
the stand-in Images API over HTTP, and back to the page through htmx polling, without a reload."""

import os

# Playwright's sync API runs an event loop in the test thread; the ORM calls made here are still sync.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

import json
import re
import urllib.error
import urllib.request
import zipfile
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings as django_settings
from django.test import override_settings
from django.utils import timezone
from PIL import Image as PILImage
from playwright.sync_api import expect, sync_playwright

from config.celery import app as celery_app
from tests.factories import MembershipFactory, ProjectFactory
from tests.helpers import create_job, run
from workspace.models import Budget, Image, Job, LedgerEntry, Membership, Project, Reference, Role

pytestmark = pytest.mark.browser

PASSWORD = "pass-for-tests-1"  # what conftest's make_user gives everyone
NOW = 5_000  # ms: things the page must show straight away
ASYNC = 20_000  # ms: things that wait on the worker and the 1 s htmx poll
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
MODERATION_REASON = "OpenAI's safety system declined this prompt"


# ------------------------------------------------------------------------------------------------
# Machinery


@pytest.fixture(scope="module")
def plain_http(tmp_path_factory):
    """The live server speaks plain HTTP, but DEBUG=false turns on production transport settings.

    SecurityMiddleware reads SECURE_SSL_REDIRECT once, when the server thread builds its handler, so this
    must be in force before the live server starts (see the `live_server` override below). The manifest
    static storage needs `collectstatic`; the test server serves static files from the finders instead.
    An empty STATIC_ROOT keeps WhiteNoise from warning that var/static does not exist.
    """
    with override_settings(
        STATIC_ROOT=str(tmp_path_factory.mktemp("static-root")),
        SECURE_SSL_REDIRECT=False,
        SESSION_COOKIE_SECURE=False,
        CSRF_COOKIE_SECURE=False,
        STORAGES={
            **django_settings.STORAGES,
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        },
    ):
        yield


@pytest.fixture(scope="module")
def live_server(plain_http, live_server):
    """pytest-django's session-scoped live server, started after `plain_http` is in force."""
    # ALLOWED_HOSTS gets the live server's host only during each test; "testserver" is always allowed.
    request = urllib.request.Request(live_server.url + "/accounts/login/", headers={"Host": "testserver"})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        status = urllib.request.build_opener(NoRedirect).open(request, timeout=10).status
    except urllib.error.HTTPError as error:
        status = error.code
    assert status == 200, (
        f"GET /accounts/login/ on the live server answered {status}; a 301 means the server was started "
        "(by an earlier test module) before `plain_http` turned SECURE_SSL_REDIRECT off."
    )
    return live_server


@pytest.fixture(scope="module")
def celery_worker(django_db_setup, django_db_blocker):
    """A real Celery worker in this process, consuming the real Redis broker (REDIS_URL)."""
    assert celery_app.conf.broker_url.startswith("redis://"), "run with REDIS_URL set (see the Makefile)"
    with django_db_blocker.unblock():
        celery_app.control.purge()  # messages left over from an interrupted run name rows that do not exist
        with start_worker(
            celery_app, pool="threads", concurrency=4, perform_ping_check=False, loglevel="WARNING"
        ) as worker:
            yield worker


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server, celery_worker, seeded_prices):
    context = browser.new_context(
        accept_downloads=True, base_url=live_server.url, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(ASYNC)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def log_in(page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Projects", level=1)).to_be_visible(timeout=NOW)


def project_for(owner, name: str = "Launch") -> Project:
    return ProjectFactory(name=name, created_by=owner)


def mark_page(page) -> None:
    """A marker that only survives if the page is never reloaded or navigated."""
    page.evaluate("window.__marker = 1")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"


def wait_until_finished(job_id: int) -> Job:
    """The browser shows it; make sure the worker is done too, so the next test starts clean."""
    job = Job.objects.get(pk=job_id)
    assert job.status in Job.FINAL_STATUSES, job.status
    return job


# ------------------------------------------------------------------------------------------------
# Journeys


def test_an_editor_makes_two_custom_size_images_and_downloads_one(page, make_user, standin, tmp_path):
    make_user("maya")

    # 1. Log in with the form.
    log_in(page, "maya")

    # 2. Create a project from the Projects page.
    page.get_by_label("Project name").fill("Launch")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name="Launch", level=1)).to_be_visible(timeout=NOW)
    project = Project.objects.get(name="Launch")
    assert Membership.objects.get(project=project).role == Role.OWNER
    expect(page.locator("#job-feed .feed-empty")).to_be_visible()

    # 3. Fill the generation form: custom 1536 × 864, two images.
    page.get_by_label("Prompt", exact=True).fill("A launch poster: a paper rocket over a lemon-yellow sky")
    expect(page.get_by_label("Width (px)")).to_be_hidden()
    page.get_by_label("Size", exact=True).select_option("custom")
    expect(page.get_by_label("Width (px)")).to_be_visible()
    page.get_by_label("Width (px)").fill("1536")
    page.get_by_label("Height (px)").fill("864")
    page.get_by_label("Number of images").fill("2")
    standin.latency = 1.5
    mark_page(page)
    page.get_by_role("button", name="Generate").click()

    # 4. The card appears at once, pending, then its two images arrive through polling.
    card = page.locator("#job-feed .job-card").first
    expect(card).to_be_visible(timeout=NOW)
    expect(card.locator(".status-pill")).to_have_text(re.compile(r"Queued|Running"), timeout=NOW)
    expect(card.locator(".placeholder")).to_have_count(2, timeout=NOW)
    expect(card.get_by_role("link", name=re.compile("A launch poster"))).to_be_visible()
    expect(page.locator("#job-feed .feed-empty")).to_be_hidden()
    # The form keeps what was typed, ready for the next variation.
    expect(page.get_by_label("Prompt", exact=True)).to_have_value(re.compile("A launch poster"))
    expect(page.get_by_label("Width (px)")).to_have_value("1536")

    images = page.locator("#job-feed .job-card img")
    expect(images).to_have_count(2, timeout=ASYNC)
    expect(card.locator(".status-pill")).to_have_text("Done")
    expect(card).to_contain_text("1536 × 864")
    for index in range(2):
        image = images.nth(index)
        expect(image).to_have_attribute("width", "1536")
        expect(image).to_have_attribute("height", "864")
        image.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert abs(natural[0] / natural[1] - 1536 / 864) < 0.01, natural
    assert_not_reloaded(page)

    job = wait_until_finished(Job.objects.get(project=project).pk)
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 1
    assert (job.size, job.n) == ("1536x864", 2)
    sent = [record for record in standin.requests if record.path.startswith("/v1/images/")][-1].fields
    assert (sent["size"], sent["n"], sent["model"]) == ("1536x864", 2, "gpt-image-2")

    # 5. The image page, and a download that is the original PNG.
    images.first.click()
    expect(page).to_have_url(re.compile(r"/p/\d+/images/\d+/$"))
    download_link = page.get_by_role("link", name="Download PNG")
    expect(download_link).to_be_visible(timeout=NOW)
    expect(page.locator(".viewer-side")).to_contain_text("1536 × 864")
    with page.expect_download() as download_info:
        download_link.click()
    download = download_info.value
    assert re.fullmatch(rf"atelier-{project.pk}-{job.pk}-[12]\.png", download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with PILImage.open(saved) as png:
        assert png.format == "PNG"
        assert png.size == (1536, 864)


def test_a_refused_prompt_says_why_on_the_card_and_can_be_retried(page, make_user, standin):
    maya = make_user("maya")
    project = project_for(maya)
    log_in(page, "maya")
    page.goto(project.get_absolute_url())
    expect(page.get_by_role("heading", name="Launch", level=1)).to_be_visible(timeout=NOW)

    standin.inject("moderation")
    mark_page(page)
    page.get_by_label("Prompt", exact=True).fill("Something the safety system will not draw")
    page.get_by_role("button", name="Generate").click()

    card = page.locator("#job-feed .job-card").first
    expect(card).to_be_visible(timeout=NOW)
    expect(card.locator(".status-pill")).to_have_text("Failed", timeout=ASYNC)
    expect(card).to_contain_text(MODERATION_REASON)
    expect(card.get_by_role("button", name="Cancel")).to_have_count(0)
    retry = card.get_by_role("button", name="Retry")
    expect(retry).to_be_visible()
    assert_not_reloaded(page)
    job = wait_until_finished(Job.objects.get(project=project).pk)
    assert (job.status, job.error_code) == (Job.Status.FAILED, "moderation_blocked")

    # The fault is used up: Retry queues the same job again and it finishes in place.
    retry.click()
    expect(card.locator("img")).to_have_count(1, timeout=ASYNC)
    expect(card.locator(".status-pill")).to_have_text("Done")
    expect(card).not_to_contain_text(MODERATION_REASON)
    assert_not_reloaded(page)
    job = wait_until_finished(job.pk)
    assert (job.status, job.attempts) == (Job.Status.SUCCEEDED, 1)
    assert page.locator("#job-feed .job-card").count() == 1


def test_a_viewer_sees_the_project_and_its_images_but_cannot_generate(page, make_user):
    owner, vera = make_user("olga"), make_user("vera")
    project = project_for(owner)
    MembershipFactory(project=project, user=vera, role=Role.VIEWER)
    job = run(create_job(project=project, author=owner, prompt="A finished lemon still life"))
    assert job.status == Job.Status.SUCCEEDED

    log_in(page, "vera")
    expect(page.get_by_role("link", name=re.compile("Launch"))).to_be_visible()
    page.get_by_role("link", name=re.compile("Launch")).click()
    expect(page.get_by_role("heading", name="Launch", level=1)).to_be_visible(timeout=NOW)
    expect(page.get_by_text("You are viewer")).to_be_visible()
    expect(page.get_by_text("Viewers can browse everything here")).to_be_visible()

    card = page.locator(f"#job-{job.pk}")
    expect(card.locator("img")).to_have_count(1)
    expect(card.locator(".status-pill")).to_have_text("Done")
    expect(page.get_by_role("button", name="Generate")).to_have_count(0)
    expect(page.get_by_label("Prompt", exact=True)).to_have_count(0)
    expect(card.get_by_role("button")).to_have_count(0)  # no Cancel, no Retry
    expect(card.get_by_role("link", name="Edit & run again")).to_have_count(0)

    # The server refuses too, not just the page.
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"/p/{project.pk}/jobs",
        headers={"X-CSRFToken": token},
        form={"prompt": "sneaky", "model": "gpt-image-2", "size": "square", "n": "1"},
    )
    assert response.status == 403
    assert Job.objects.filter(project=project).count() == 1

    # Images stay reachable: the image page offers the download but not "Run again".
    card.locator("img").click()
    expect(page.get_by_role("link", name="Download PNG")).to_be_visible(timeout=NOW)
    expect(page.get_by_role("link", name="Run again")).to_have_count(0)


def test_the_form_works_from_the_keyboard(page, make_user, standin):
    maya = make_user("maya")
    project = project_for(maya)
    log_in(page, "maya")
    page.goto(project.get_absolute_url())
    mark_page(page)

    prompt = page.get_by_label("Prompt", exact=True)
    prompt.click()
    page.keyboard.type("A lemon on a blue tiled table, typed")
    expect(page.locator('[data-counter-for="id_prompt"]')).to_have_text("36")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Model")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(prompt).to_be_focused()
    # Plain Enter is a new line; Ctrl+Enter submits.
    page.keyboard.press("Enter")
    expect(prompt).to_have_value("A lemon on a blue tiled table, typed\n")
    expect(page.locator("#job-feed .job-card")).to_have_count(0)
    page.keyboard.press("Control+Enter")

    card = page.locator("#job-feed .job-card").first
    expect(card).to_be_visible(timeout=NOW)
    expect(card.locator("img")).to_have_count(1, timeout=ASYNC)
    assert_not_reloaded(page)
    job = wait_until_finished(Job.objects.get(project=project).pk)
    assert job.status == Job.Status.SUCCEEDED
    assert job.prompt == "A lemon on a blue tiled table, typed"


def test_the_estimate_follows_the_form_and_the_badge_moves_after_a_job(page, make_user, standin):
    user = make_user("olga")
    project = project_for(user, "Budgets")
    Budget.objects.create(user=user, monthly_limit=Decimal(20))
    log_in(page, "olga")
    page.goto(f"/p/{project.pk}/")
    mark_page(page)

    estimate = page.locator("#estimate")
    expect(estimate).to_contain_text("Estimated cost $0.211")  # auto quality is budgeted as high
    page.get_by_label("Quality").select_option("low")
    expect(estimate).to_contain_text("Estimated cost $0.006")
    page.get_by_label("Number of images").fill("4")
    expect(estimate).to_contain_text("Estimated cost $0.024")

    badge = page.locator("#spend-badge")
    expect(badge).to_contain_text("$0.00 of $20")
    page.get_by_label("Prompt", exact=True).fill("Four lemons in a row, flat lay")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#job-feed .job-card img")).to_have_count(4)
    charged = LedgerEntry.objects.get(user=user).cost
    expect(badge).to_contain_text(f"${charged.quantize(Decimal('0.001'))} of $20")
    assert charged > 0
    assert_not_reloaded(page)


def _png_file(tmp_path, name: str, colour: tuple[int, int, int]) -> str:
    path = tmp_path / name
    PILImage.new("RGB", (640, 480), colour).save(path, format="PNG")
    return str(path)


def _wait_for_done_card(page) -> None:
    expect(page.locator("#job-feed .job-card").first.locator(".status-pill")).to_have_text(
        "Done", timeout=ASYNC
    )


def test_upload_edit_with_a_painted_mask_branch_twice_and_see_the_family(page, make_user, standin, tmp_path):
    user = make_user("ines")
    project = project_for(user, "Lookbook")
    log_in(page, "ines")

    # Two references into the library.
    page.goto(f"/p/{project.pk}/references")
    page.get_by_label("Drop product photos and brand assets here").set_input_files(
        [_png_file(tmp_path, "jacket.png", (200, 60, 40)), _png_file(tmp_path, "studio.png", (40, 120, 200))]
    )
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_text("Added 2 images")).to_be_visible(timeout=ASYNC)
    assert sorted(Reference.objects.values_list("name", flat=True)) == ["jacket.png", "studio.png"]

    # Edit both, painting the area to change over the first.
    page.get_by_label("Use jacket.png in an edit").check()
    page.get_by_label("Use studio.png in an edit").check()
    page.get_by_role("button", name="Edit the selected images").click()
    expect(page.get_by_role("heading", name="Edit images")).to_be_visible(timeout=NOW)
    page.get_by_label("Prompt", exact=True).fill("Put the jacket on a model in this studio")
    canvas = page.locator("[data-mask-painter] canvas").first
    expect(canvas).to_be_visible(timeout=NOW)
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.6, steps=8)
    page.mouse.up()
    expect(page.locator("[data-mask-status]")).to_contain_text("Painted area", timeout=NOW)
    page.wait_for_function("document.querySelector('[data-mask-input]').files.length === 1")
    page.get_by_role("button", name="Edit with 2 images").click()
    _wait_for_done_card(page)
    first_edit = Job.objects.get(kind="edit")
    assert first_edit.mask and first_edit.inputs.count() == 2
    result = first_edit.images.get()
    assert result.composite  # pasted back onto the original

    # Branch the result twice.
    for prompt in ("Same look, vertical crop", "Same look, evening light"):
        page.goto(f"/p/{project.pk}/images/{result.pk}/")
        page.get_by_role("link", name="Branch from here").click()
        page.get_by_label("Prompt", exact=True).fill(prompt)
        page.get_by_role("button", name="Edit image").click()
        _wait_for_done_card(page)
    branches = Image.objects.filter(job__inputs__image=result)
    assert branches.count() == 2

    # The family, from any member: uploads, the edit, the two branches.
    page.goto(f"/p/{project.pk}/images/{branches.first().pk}/")
    page.get_by_role("link", name="Family").click()
    expect(page.get_by_text("2 uploads and 3 images over 3 generations.")).to_be_visible(timeout=NOW)
    expect(page.locator(".tree-node")).to_have_count(3)
    page.locator(".tree-card").first.click()
    expect(page.get_by_role("heading", name="Made from this")).to_be_visible(timeout=NOW)


def test_find_review_and_hand_off_in_the_gallery(page, make_user, tmp_path, standin):
    from tests.test_gallery import make_images

    lead = make_user("gina")
    other = make_user("hugo")
    project = project_for(lead, "Catalogue")
    MembershipFactory(project=project, user=other, role=Role.EDITOR)
    make_images(project, other, 5, prompt="a teapot on linen")
    make_images(
        project, lead, 60, prompt="a lemon on a blue table", start=timezone.now() - timedelta(hours=2)
    )
    make_images(
        project, lead, 3, prompt="a striped umbrella by the sea", start=timezone.now() - timedelta(hours=1)
    )
    real = [run(create_job(project=project, author=lead, prompt=f"a lemon still life {i}")) for i in range(3)]
    log_in(page, "gina")
    page.goto(f"/p/{project.pk}/gallery")
    mark_page(page)
    tiles = page.locator(".gallery-grid .tile")
    expect(tiles).to_have_count(48, timeout=NOW)

    # Filter by author: only Hugo's five.
    page.get_by_label("Author").select_option(label="hugo")
    expect(tiles).to_have_count(5)
    assert f"author={other.pk}" in page.url
    # Search a word, for anyone.
    page.get_by_label("Author").select_option(label="Anyone")
    page.get_by_label("Search prompts").fill("umbrella")
    page.wait_for_url(re.compile(r"q=umbrella"))
    expect(tiles).to_have_count(3)
    page.get_by_label("Search prompts").fill("lemon")
    page.wait_for_url(re.compile(r"q=lemon"))
    expect(tiles).to_have_count(48)
    # Scroll to load the second page (60 + 3 lemons).
    page.locator(".gallery-grid .more").scroll_into_view_if_needed()
    expect(tiles).to_have_count(63)
    assert_not_reloaded(page)

    # Select three (the real images, newest first), Shift-clicking the third.
    page.get_by_label("Search prompts").fill("still life")
    page.wait_for_url(re.compile(r"q=still(\+|%20)life"))
    expect(tiles).to_have_count(3)
    checks = page.locator(".tile-check")
    checks.nth(0).click()
    checks.nth(2).click(modifiers=["Shift"])
    expect(page.locator("[data-selected-count]")).to_have_text("3 selected")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_text("Marked 3 images approved.")).to_be_visible(timeout=NOW)
    assert Image.objects.filter(review_state="approved").count() == 3

    # Download them as a ZIP.
    page.locator(".tile-check").nth(0).click()
    page.locator(".tile-check").nth(2).click(modifiers=["Shift"])
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download ZIP").click()
    path = tmp_path / "selection.zip"
    download_info.value.save_as(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        metadata = json.loads(archive.read("metadata.json"))
    assert len(names) == 4
    assert sorted(item["id"] for item in metadata["images"]) == sorted(job.images.get().pk for job in real)

    # Open an image and move through the filtered view with the arrow keys.
    page.locator(".tile-link").nth(1).click()
    expect(page.get_by_role("heading", name="Review")).to_be_visible(timeout=NOW)
    here = page.url
    page.keyboard.press("ArrowRight")
    page.wait_for_url(lambda url: url != here)
    older_url = page.url
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(lambda url: url != older_url)
    assert page.url.split("?")[0] == here.split("?")[0]
    assert re.search(r"q=still(\+|%20)life", page.url)


def test_no_page_breaks_the_content_security_policy(page, make_user, standin, tmp_path):
    """Every kind of page, with htmx and the mask painter at work, and not one policy violation."""
    violations: list[str] = []
    console: list[str] = []
    page.context.expose_binding("reportViolation", lambda _source, text: violations.append(text))
    page.context.add_init_script(
        "document.addEventListener('securitypolicyviolation', function (e) {"
        " window.reportViolation(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile"
        " + ':' + e.lineNumber); });"
    )
    page.on("console", lambda message: console.append(f"{message.type}: {message.text} ({message.location})"))
    lead = make_user("gina", is_staff=True, is_superuser=True)
    project = project_for(lead, "Policy")
    first = run(create_job(project=project, author=lead, prompt="A lemon on a blue table")).images.get()
    second = run(create_job(project=project, author=lead, prompt="A lime on a red table")).images.get()
    Budget.objects.create(user=lead, monthly_limit=Decimal(20))

    # The listener hears a violation when there is one, so silence below means something.
    page.goto("/accounts/login/")
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">inline</p>')")
    for _ in range(50):
        if violations:
            break
        page.wait_for_timeout(100)
    assert violations and violations[0].startswith("style-src"), violations
    violations.clear()
    console.clear()

    response = page.goto("/accounts/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    log_in(page, "gina")

    # The project page: the estimate follows the form, a generation's card appears and fills in.
    page.goto(f"/p/{project.pk}/")
    mark_page(page)
    estimate = page.locator("#estimate")
    page.get_by_label("Quality").select_option("low")
    expect(estimate).to_contain_text("Estimated cost $0.006")
    page.get_by_label("Prompt", exact=True).fill("A pear under the policy")
    page.get_by_role("button", name="Generate").click()
    card = page.locator("#job-feed .job-card").first
    expect(card).to_contain_text("A pear under the policy", timeout=NOW)
    expect(card.locator("img")).to_have_count(1, timeout=ASYNC)
    assert_not_reloaded(page)

    # The image page, its family, and an edit with a painted mask.
    page.goto(f"/p/{project.pk}/images/{first.pk}/")
    expect(page.get_by_role("link", name="Download PNG")).to_be_visible(timeout=NOW)
    page.goto(f"/p/{project.pk}/images/{first.pk}/family")
    expect(page.locator(".tree-node")).to_have_count(1, timeout=NOW)
    page.goto(f"/p/{project.pk}/edit?inputs=img:{first.pk}")
    canvas = page.locator("[data-mask-painter] canvas").first
    expect(canvas).to_be_visible(timeout=NOW)
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6, steps=6)
    page.mouse.up()
    expect(page.locator("[data-mask-status]")).to_contain_text("Painted area", timeout=NOW)
    page.wait_for_function("document.querySelector('[data-mask-input]').files.length === 1")

    # The gallery: a filter change still asks htmx for results (a named event, not an eval'd filter).
    page.goto(f"/p/{project.pk}/gallery")
    mark_page(page)
    tiles = page.locator(".gallery-grid .tile")
    expect(tiles).to_have_count(3, timeout=NOW)
    page.get_by_label("Made by").select_option("edit")
    page.wait_for_url(re.compile(r"kind=edit"))
    expect(tiles).to_have_count(0)
    assert_not_reloaded(page)

    # The comparison's columns, set from app.js, and the spend pages' bars.
    page.goto(f"/p/{project.pk}/compare?ids={first.pk}&ids={second.pk}")
    columns = page.locator(".compare-grid").evaluate("grid => getComputedStyle(grid).gridTemplateColumns")
    assert len(columns.split()) == 2, columns
    page.goto("/spend/")
    expect(page.locator(".meter rect")).to_have_count(1, timeout=NOW)
    page.goto("/spend/dashboard")
    expect(page.locator(".bar rect").first).to_be_attached(timeout=NOW)

    # The admin, where locked-out sign-ins are unlocked.
    page.goto("/admin/")
    expect(page.get_by_role("link", name="Access attempts")).to_be_visible(timeout=NOW)
    page.goto("/admin/axes/accessattempt/")
    expect(page.locator("#content h1")).to_be_visible(timeout=NOW)

    assert not violations, violations
    # The admin's pages name no icon, so Chromium asks for /favicon.ico: not ours to answer.
    assert not [line for line in console if "/favicon.ico'" not in line], console
