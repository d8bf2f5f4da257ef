"""Every page carries a Content-Security-Policy that runs only the app's own scripts and styles; stored
files keep their own stricter one; and no template needs an exception (the browser side of this is
test_browser.py::test_no_page_breaks_the_content_security_policy)."""

import re

import pytest
from django.urls import reverse

from tests.helpers import ROOT, create_job, run

pytestmark = pytest.mark.django_db


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def test_pages_allow_only_the_apps_own_scripts_and_styles(client, cast, project):
    pages = [client.get(reverse("login"))]
    client.force_login(cast.alice)
    pages += [client.get(reverse("home")), client.get(reverse("project", args=[project.pk]))]
    for response in pages:
        assert response.status_code == 200
        policy = directives(response)
        assert policy["default-src"] == ["'self'"]
        assert policy["script-src"] == ["'self'"]
        assert policy["style-src"] == ["'self'"]
        assert policy["img-src"] == ["'self'", "data:", "blob:"]
        assert policy["object-src"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert "unsafe" not in response["Content-Security-Policy"]


def test_the_lockout_page_has_the_policy_too(client, cast, settings):
    settings.AXES_FAILURE_LIMIT = 1
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 429
    assert directives(response)["script-src"] == ["'self'"]


def test_stored_files_keep_their_own_stricter_policy(client, cast, project):
    job = run(create_job(project=project, author=cast.alice))
    image = job.images.get()
    client.force_login(cast.alice)
    for name in ("image_file", "image_thumb", "image_download"):
        response = client.get(reverse(name, args=[project.pk, image.pk]))
        assert response.status_code == 200, name
        assert response["Content-Security-Policy"] == "default-src 'none'; sandbox", name


TEMPLATE_FILES = [*sorted((ROOT / "templates").rglob("*.html")), ROOT / "workspace/templatetags/atelier.py"]


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_template_needs_an_exception_to_the_policy(path):
    text = path.read_text()
    # <script> only with src= or as JSON data (json_script), which is never run.
    for tag in re.findall(r"<script\b[^>]*>", text):
        assert "src=" in tag or 'type="application/json"' in tag, f"inline script: {tag}"
    assert not re.search(r"\sstyle\s*=", text), "a style attribute (use a class, or set it from app.js)"
    assert "<style" not in text, "an inline <style> element"
    assert not re.search(r"\son[a-z]+\s*=", text), "an inline event handler (listen from app.js)"
    assert not re.search(r"\shx-on", text), "hx-on needs eval"
    assert not re.search(r'hx-trigger="[^"]*\[', text), "an htmx trigger filter needs eval"
    assert "js:" not in text and "javascript:" not in text, "hx-vals/hx-vars js: or a javascript: URL"
