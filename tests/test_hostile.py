"""Hostile input against every form and upload: each is refused with a 4xx and a reason, stores nothing
(no new rows, no new files under MEDIA_ROOT), and none is a 500.

The forms: log in, generate, edit (with a mask upload), upload references, comment, add a member, the
gallery's filters, the project's settings. The inputs: bodies over the caps (signed out and signed in,
with and without a Content-Length), image files built to hurt (16-bit bombs, huge dimensions, truncated,
polyglots, formula-leading names), non-ASCII digits where numbers or ids go, other projects' ids.
"""

import io
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpRequest
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import reverse
from PIL import Image as PILImage

from tests import test_access
from tests.conftest import GENERATION_POST
from tests.factories import picture
from tests.test_access import World
from workspace.models import Comment, Image, Job, LedgerEntry, Membership, Project, Reference

pytestmark = pytest.mark.django_db

world = test_access.world  # the access matrix's fixture: my project and charlie's, with an edit in each

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KB = 1024


# --- Files built to hurt ------------------------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int, *, depth: int = 16, colour: int = 6) -> bytes:
    """A PNG whose header promises width x height at `depth` bits, with a tiny IDAT: nothing allocates."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def zip_bytes() -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.txt", "calc.exe")
    return out.getvalue()


HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"


def gif_html_polyglot() -> bytes:
    # Starts as a GIF (GIF89a, a valid screen descriptor) and carries a page a browser would run.
    return b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=1;" + HTML


def mask_sized(width: int = 64, height: int = 48) -> bytes:
    mask = PILImage.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (5, 5, 20, 20))
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return out.getvalue()


HOSTILE_FILES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    # case: (file name, bytes, what the reason says)
    "16-bit RGBA at 36 MP": (
        "bomb16.png",
        lambda: png_header_only(6000, 6000),
        "this image would need 288 MB of memory to open; the limit is 160 MB. "
        "Save it as an 8-bit PNG or JPEG.",
    ),
    "16-bit RGB at 30 MP": (
        "bomb16rgb.png",
        lambda: png_header_only(6000, 5000, colour=2),
        "this image would need 180 MB of memory to open",
    ),
    "400 MP of 1-bit": (
        "huge.png",
        lambda: png_header_only(20_000, 20_000, depth=1, colour=0),
        "this image is 20000 × 20000 pixels; the limit is 40 megapixels.",
    ),
    "an edge too long": (
        "long.png",
        lambda: png_header_only(16_385, 16, depth=8, colour=6),
        "no side may be longer than 16384 pixels.",
    ),
    "truncated": (
        "half.png",
        lambda: mask_sized()[: len(mask_sized()) // 2],
        "this image is damaged or incomplete.",
    ),
    "a PNG with a ZIP appended": (
        "photo.png",
        lambda: mask_sized() + zip_bytes(),
        "this PNG carries other data after the image",
    ),
    "a PNG with HTML appended": (
        "photo.png",
        lambda: mask_sized() + HTML,
        "this PNG carries other data after the image",
    ),
    "a GIF/HTML polyglot": ("page.gif", gif_html_polyglot, ""),
    "HTML named .png": ("page.png", lambda: HTML, ""),
    "a formula-leading name on a broken file": ("=cmd|' /C calc'!A0.png", lambda: b"=1+1", ""),
}


# --- The world and what it holds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    rows: dict[str, int]
    files: frozenset[str]


def held(media_root: Path) -> Held:
    models = {
        "jobs": Job,
        "images": Image,
        "references": Reference,
        "comments": Comment,
        "memberships": Membership,
        "projects": Project,
        "ledger": LedgerEntry,
    }
    rows = {name: model.objects.count() for name, model in models.items()}
    names = [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []
    files = frozenset(str(p.relative_to(media_root)) for p in names)
    project_names = frozenset(Project.objects.values_list("name", flat=True))
    return Held(rows | {"project names": hash(project_names)}, files)


@pytest.fixture
def unchanged(media_root):
    """Call it once the world is built; it checks, after the test, that nothing was added or changed."""
    snapshots = []

    def take() -> None:
        snapshots.append(held(media_root))

    yield take
    assert snapshots, "the test forgot to take the snapshot"
    after = held(media_root)
    assert after.rows == snapshots[0].rows
    assert after.files == snapshots[0].files, sorted(after.files ^ snapshots[0].files)


def form_data(endpoint: str, w: World) -> dict:
    """A valid submission of each form, to be spoiled by the case."""
    return {
        "login": {"username": "alice", "password": "wrong password"},
        "generate": dict(GENERATION_POST),
        "edit": dict(GENERATION_POST, size="auto", inputs=[f"img:{w.source.pk}"]),
        "references": {},
        "comment": {"body": "Looks good"},
        "members": {"who": "dana2", "role": "viewer"},
        "gallery": {"q": "lemon"},
        "settings": {"name": "Renamed"},
    }[endpoint]


def url(endpoint: str, w: World) -> str:
    p = w.project.pk
    return {
        "login": reverse("login"),
        "generate": reverse("job_create", args=[p]),
        "edit": reverse("edit", args=[p]),
        "references": reverse("references", args=[p]),
        "comment": reverse("image_comment", args=[p, w.image.pk]),
        "members": reverse("members", args=[p]),
        "gallery": reverse("gallery", args=[p]),
        "settings": reverse("project_settings", args=[p]),
    }[endpoint]


ENDPOINTS = ["login", "generate", "edit", "references", "comment", "members", "gallery", "settings"]
SIGNED_IN = [e for e in ENDPOINTS if e != "login"]


def text(response) -> str:
    return response.content.decode()


def no_parsing(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the body was parsed")

    monkeypatch.setattr(HttpRequest, "_load_post_and_files", refuse)


# --- Bodies over the caps -----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_it_refuses_a_signed_out_body_over_64_kb_before_parsing_it(
    client, world, endpoint, unchanged, monkeypatch
):
    unchanged()
    no_parsing(monkeypatch)
    body = encode_multipart(BOUNDARY, form_data(endpoint, world) | {"padding": "x" * (65 * KB)})
    response = client.generic("POST", url(endpoint, world), body, content_type=MULTIPART_CONTENT)
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/plain")
    # 65 KB of padding plus the form, rounded up to the next KB.
    assert re.fullmatch(r"This request is 6[5-9] KB; the limit is 64 KB: sign in first\.", text(response))


@pytest.mark.parametrize("endpoint", SIGNED_IN)
def test_it_refuses_a_signed_in_body_over_the_cap_before_parsing_it(
    client, cast, world, endpoint, settings, unchanged, monkeypatch
):
    settings.MAX_REQUEST_BYTES = 256 * KB
    client.force_login(cast.alice)
    unchanged()
    no_parsing(monkeypatch)
    data = form_data(endpoint, world) | {"files": SimpleUploadedFile("big.png", bytes(300 * KB))}
    response = client.post(url(endpoint, world), data)
    assert response.status_code == 413
    expected = r"This request is 30[0-9] KB; the limit is 256 KB: upload fewer or smaller files at a time\."
    assert re.fullmatch(expected, text(response))


@pytest.mark.parametrize("signed_in", [False, True])
def test_it_refuses_a_body_without_a_length_as_soon_as_it_passes_the_cap(
    client, cast, world, settings, signed_in, unchanged
):
    settings.MAX_REQUEST_BYTES = 128 * KB
    if signed_in:
        client.force_login(cast.bob)
    unchanged()

    class Endless(io.RawIOBase):
        read_bytes = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            assert self.read_bytes < 10 * 1024 * KB, "kept reading far past the cap"
            buffer[: len(buffer)] = b"x" * len(buffer)
            self.read_bytes += len(buffer)
            return len(buffer)

    endless = Endless()
    response = client.generic(
        "POST",
        url("references", world),
        b"",
        content_type=MULTIPART_CONTENT,
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": endless},
    )
    cap = 128 if signed_in else 64
    assert response.status_code == 413
    assert text(response).startswith(f"This request is more than {cap} KB; the limit is {cap} KB")
    assert cap * KB < endless.read_bytes <= cap * KB + 64 * KB


def test_a_body_without_a_length_under_the_cap_still_uploads(client, cast, world):
    client.force_login(cast.bob)
    body = encode_multipart(BOUNDARY, {"files": SimpleUploadedFile("small.png", picture())})
    before = Reference.objects.count()
    response = client.generic(
        "POST",
        url("references", world),
        b"",
        content_type=MULTIPART_CONTENT,
        CONTENT_LENGTH="",
        CONTENT_TYPE=MULTIPART_CONTENT,
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": io.BytesIO(body)},
    )
    assert response.status_code == 302, text(response)
    assert Reference.objects.count() == before + 1


@pytest.mark.parametrize("endpoint", ["login", "references"])
def test_it_refuses_a_content_length_that_is_not_a_number(client, world, endpoint):
    response = client.generic("POST", url(endpoint, world), b"", CONTENT_LENGTH="1e9")
    assert (response.status_code, text(response)) == (400, "This request's Content-Length is not a number.")


def test_it_refuses_more_files_than_one_upload_may_carry(client, cast, world, unchanged):
    client.force_login(cast.bob)
    unchanged()
    files = [SimpleUploadedFile(f"{n}.png", picture()) for n in range(settings.MAX_UPLOAD_FILES + 1)]
    response = client.post(url("references", world), {"files": files})
    assert response.status_code == 400
    assert f"at most {settings.MAX_UPLOAD_FILES} files" in text(response)


def test_it_refuses_form_fields_over_a_megabyte(client, cast, world, unchanged):
    client.force_login(cast.bob)
    unchanged()
    response = client.post(url("generate", world), dict(GENERATION_POST, prompt="lemon " * 200_000))
    assert response.status_code == 400
    assert "too large" in text(response)


# --- Files built to hurt, on every upload -------------------------------------------------------------------


def upload_post(client, w: World, endpoint: str, name: str, data: bytes):
    if endpoint == "references":
        return client.post(url("references", w), {"files": SimpleUploadedFile(name, data)})
    post = form_data("edit", w) | {"mask_file": SimpleUploadedFile(name, data)}
    return client.post(url("edit", w), post)


@pytest.mark.parametrize("endpoint", ["references", "edit"])
@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_it_refuses_hostile_files_on_every_upload(
    client, cast, world, endpoint, case, unchanged, monkeypatch
):
    name, make, reason = HOSTILE_FILES[case]
    data = make()
    assert len(data) < 64 * KB  # built cheaply: no test allocates what the header promises
    client.force_login(cast.bob)
    unchanged()
    response = upload_post(client, world, endpoint, name, data)
    assert response.status_code == 400, text(response)[:500]
    body = text(response)
    known = ("damaged", "not supported", "not a PNG", "limit", "other data", "must be a PNG", "no side")
    assert any(words in body for words in known)
    if reason:
        assert reason.replace("'", "&#x27;") in body or reason in body


def test_a_formula_leading_name_is_stored_without_its_formula(client, cast, world):
    client.force_login(cast.bob)
    response = upload_post(client, world, "references", "=cmd|' /C calc'!A0.png", picture())
    assert response.status_code == 302
    stored = Reference.objects.latest("id")
    assert stored.name == "C calc'!A0.png"  # the slash made the rest a folder; the formula is gone
    for leading in "=+-@\t\r":
        assert not stored.name.startswith(leading)


# --- Non-ASCII digits where numbers and ids go --------------------------------------------------------------

NON_ASCII_DIGITS = ["²", "٣", "\uff11"]  # superscript two, Arabic-Indic three, fullwidth one


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
@pytest.mark.parametrize(
    ("endpoint", "field"),
    [
        ("generate", "n"),
        ("generate", "output_compression"),
        ("generate", "width"),
        ("edit", "n"),
        ("edit", "inputs"),
        ("gallery", "author"),
    ],
)
def test_it_refuses_non_ascii_digits_in_numbers(client, cast, world, endpoint, field, digit, unchanged):
    client.force_login(cast.alice)
    unchanged()
    data = form_data(endpoint, world)
    if field == "width":
        data |= {"size": "custom", "width": digit * 4, "height": "1024"}
    elif field == "inputs":
        data[field] = [f"img:{digit}"]
    else:
        data[field] = digit
    send = client.get if endpoint == "gallery" else client.post
    response = send(url(endpoint, world), data)
    assert response.status_code == 400, text(response)[:300]


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
@pytest.mark.parametrize(
    ("route", "query"),
    [
        ("project", "again={}"),
        ("project", "before={}"),
        ("edit", "again={}"),
        ("edit", "inputs=img:{}"),
        ("image_detail", "from=gallery&author={}"),
        ("gallery", "author={}"),
        ("compare", "ids={}&ids={}"),
    ],
)
def test_non_ascii_digits_in_query_string_ids_are_never_a_500(client, cast, world, route, query, digit):
    client.force_login(cast.alice)
    args = [world.project.pk, world.image.pk] if route == "image_detail" else [world.project.pk]
    response = client.get(f"{reverse(route, args=args)}?{query.format(digit, digit)}")
    # One bad id among the detail page's filters is skipped; a value that is the whole request (a job to
    # run again, a page to start before, the inputs, the filters, the images to compare) is a 400.
    expected = 200 if query.startswith("from") else 400
    assert response.status_code == expected
    if expected == 400:
        assert response.content.strip(), "a 400 says why"


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
def test_non_ascii_digits_in_bulk_ids_select_nothing(client, cast, world, digit, unchanged):
    client.force_login(cast.alice)
    unchanged()
    response = client.post(reverse("bulk", args=[world.project.pk]), {"ids": [digit], "action": "approved"})
    assert response.status_code == 302
    assert Image.objects.filter(review_state=Image.Review.APPROVED).count() == 0


# --- Other projects' ids ------------------------------------------------------------------------------------


def test_an_edit_of_another_projects_image_is_refused(client, cast, world, unchanged):
    client.force_login(cast.bob)
    unchanged()
    response = client.post(
        url("edit", world), form_data("edit", world) | {"inputs": [f"img:{world.their_image.pk}"]}
    )
    assert response.status_code == 400
    assert "not in this project" in text(response)


def test_a_gallery_filtered_by_someone_outside_the_project_is_refused(client, cast, world):
    client.force_login(cast.alice)
    response = client.get(url("gallery", world), {"author": cast.charlie.pk})
    assert response.status_code == 400
    assert "Select a valid choice" in text(response)


def test_comparing_another_projects_images_shows_nothing_of_them(client, cast, world):
    client.force_login(cast.alice)
    their = world.their_image.pk
    response = client.get(reverse("compare", args=[world.project.pk]), {"ids": [their, world.image.pk]})
    assert response.status_code == 400
    assert f"/images/{their}/" not in text(response)


def test_bulk_actions_on_another_projects_images_change_nothing(client, cast, world, unchanged):
    client.force_login(cast.alice)
    unchanged()
    response = client.post(
        reverse("bulk", args=[world.project.pk]), {"ids": [world.their_image.pk], "action": "approved"}
    )
    assert response.status_code == 302
    world.their_image.refresh_from_db()
    assert world.their_image.review_state == Image.Review.DRAFT


@pytest.mark.parametrize("endpoint", ["comment", "settings", "members"])
def test_forms_of_another_project_are_not_found(client, cast, world, endpoint, unchanged):
    client.force_login(cast.alice)
    unchanged()
    their = {
        "comment": reverse("image_comment", args=[world.project.pk, world.their_image.pk]),
        "settings": reverse("project_settings", args=[world.other_project.pk]),
        "members": reverse("members", args=[world.other_project.pk]),
    }[endpoint]
    assert client.post(their, form_data(endpoint, world)).status_code == 404
