"""GIF and SVG output on GPT Image 2.6, end to end: the form, a real Celery worker over Redis, the SDK over
HTTP to the stand-in, storage, the image page, conversions, the ZIP, the ledger; and what is refused."""

import hashlib
import io
import zipfile
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.urls import reverse
from PIL import Image as PILImage

from config.celery import app
from tests.conftest import GENERATION_POST
from tests.helpers import create_job, last_image_call, purge_queue, run, status_of, wait_for
from workspace import imagemodels, jobs, outputs, svgsafe
from workspace.models import Job, LedgerEntry, Membership, Project, Role

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

GIF_POST = GENERATION_POST | {
    "model": "gpt-image-2.6-sunburst",
    "output_format": "gif",
    "frame_count": "5",
    "frame_duration_ms": "120",
    "quality": "low",
}
SVG_POST = GENERATION_POST | {
    "model": "gpt-image-2.6-flare",
    "output_format": "svg",
    "svg_model": "gpt-5.4-mini",
    "svg_effort": "low",
}


@pytest.fixture
def team(django_user_model, seeded_prices):
    user = django_user_model.objects.create_user("wendy", password="pass-for-tests-1")
    project = Project.objects.create(name="Motion", created_by=user)
    Membership.objects.create(project=project, user=user, role=Role.OWNER)
    return user, project


@pytest.fixture
def thread_worker():
    purge_queue()
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        yield


def submit(client, project, post: dict) -> Job:
    response = client.post(reverse("job_create", args=[project.pk]), post)
    assert response.status_code == 302, response.content.decode()[:3000]
    job = Job.objects.latest("id")
    wait_for(lambda: status_of(job.pk) in ("succeeded", "failed"), timeout=30, what="the job to end")
    job.refresh_from_db()
    return job


def test_a_gif_is_made_stored_byte_for_byte_plays_and_converts(client, team, standin, thread_worker):
    user, project = team
    client.force_login(user)
    job = submit(client, project, GIF_POST | {"n": "2"})
    assert job.status == Job.Status.SUCCEEDED, job.error_message

    sent = last_image_call(standin)
    assert sent.fields["frame_count"] == 5 and sent.fields["frame_duration_ms"] == 120
    assert "stream" not in sent.fields and "partial_images" not in sent.fields  # GIFs are never streamed
    assert "output_compression" not in sent.fields

    image, other = job.images.order_by("index")
    assert image.format == other.format == "gif"
    assert [image.sha256, other.sha256] == sent.sent_sha256  # the animated original, byte for byte
    response = client.get(reverse("image_file", args=[project.pk, image.pk]))
    assert response["Content-Type"] == "image/gif"
    data = b"".join(response.streaming_content)
    with PILImage.open(io.BytesIO(data)) as gif:
        assert gif.is_animated and gif.n_frames == 5
        assert gif.info["duration"] == 120
    thumb = b"".join(client.get(reverse("image_thumb", args=[project.pk, image.pk])).streaming_content)
    with PILImage.open(io.BytesIO(thumb)) as still:
        assert still.format == "WEBP" and not getattr(still, "is_animated", False)

    page = client.get(image.get_absolute_url()).content.decode()
    assert f'src="{reverse("image_file", args=[project.pk, image.pk])}"' in page  # the page shows the GIF
    assert "animated, 5 frames of 120 ms" in page
    assert "Branch from here" not in page  # a GIF is not an edit input
    compare = client.get(
        reverse("compare", args=[project.pk]), {"ids": [image.pk, other.pk]}
    ).content.decode()
    assert reverse("image_file", args=[project.pk, other.pk]) in compare  # compare shows the GIFs too

    png = client.get(reverse("image_convert", args=[project.pk, image.pk, "png"]))
    assert png["Content-Type"] == "image/png"
    assert client.get(reverse("image_convert", args=[project.pk, image.pk, "gif"])).status_code == 404

    export = client.post(
        reverse("bulk", args=[project.pk]), {"action": "download", "ids": [image.pk, other.pk]}
    )
    archive = zipfile.ZipFile(io.BytesIO(b"".join(export.streaming_content)))
    gifs = sorted(
        hashlib.sha256(archive.read(n)).hexdigest() for n in archive.namelist() if n.endswith(".gif")
    )
    assert gifs == sorted([image.sha256, other.sha256])


def test_an_svg_is_sanitised_served_as_a_sandboxed_image_and_its_author_is_a_ledger_line(
    client, team, standin, thread_worker
):
    user, project = team
    client.force_login(user)
    job = submit(client, project, SVG_POST | {"prompt": "A lemon logo [standin:svgscript]"})
    assert job.status == Job.Status.SUCCEEDED, job.error_message
    sent = last_image_call(standin)
    assert sent.fields["svg"] == {"model": "gpt-5.4-mini", "reasoning": {"effort": "low"}}
    assert "stream" not in sent.fields

    image = job.images.get()
    assert image.format == "svg"
    response = client.get(reverse("image_file", args=[project.pk, image.pk]))
    assert response["Content-Type"] == "image/svg+xml"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response["X-Content-Type-Options"] == "nosniff"
    served = b"".join(response.streaming_content).decode()
    # The stand-in's answer carried all of these; none reaches anyone.
    for hostile in (
        "<script",
        "onload",
        "onclick",
        "foreignObject",
        "iframe",
        "attacker.example",
        "javascript:",
    ):
        assert hostile not in served, hostile
    assert "<style" not in served and "@import" not in served
    assert "Atelier demo SVG" in served and 'fill="url(#bg)"' in served  # the drawing itself survives
    thumb = b"".join(client.get(reverse("image_thumb", args=[project.pk, image.pk])).streaming_content)
    with PILImage.open(io.BytesIO(thumb)) as still:
        assert still.format == "WEBP" and still.size[0] > 0
    download = client.get(reverse("image_download", args=[project.pk, image.pk]))
    assert download["Content-Disposition"].startswith("attachment") and download[
        "Content-Disposition"
    ].endswith('.svg"')
    webp = client.get(reverse("image_convert", args=[project.pk, image.pk, "webp"]))
    assert webp["Content-Type"] == "image/webp"

    lines = {entry.part: entry for entry in LedgerEntry.objects.filter(job=job)}
    assert set(lines) == {"image", "svg_author"}
    author = lines["svg_author"]
    usage = job.api_calls.get().usage["svg_usage"]
    assert author.model == "gpt-5.4-mini" == usage["model"]
    assert (author.text_input_tokens, author.text_output_tokens) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert author.image_output_tokens == 0 and author.cost > 0
    assert author.priced and author.price.model == "gpt-5.4-mini"  # at its own rates, not the image model's
    assert lines["image"].model == "gpt-image-2.6-flare"
    detail = client.get(reverse("job_detail", args=[project.pk, job.pk])).content.decode()
    assert "gpt-5.4-mini (svg author)" in detail  # its own line under the call, beside the image model's


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("nogif", "Your OpenAI organisation does not have access to GIF output yet"),
        ("nosvg", "Your OpenAI organisation does not have access to SVG output yet"),
    ],
)
def test_a_preview_the_organisation_lacks_fails_the_job_in_words(
    client, team, standin, thread_worker, fault, words
):
    user, project = team
    client.force_login(user)
    standin.inject(fault)
    job = submit(client, project, GIF_POST if fault == "nogif" else SVG_POST)
    assert job.status == Job.Status.FAILED
    assert job.error_message.startswith(words)
    assert job.attempts == 1  # permanent: not retried


@pytest.mark.parametrize(
    ("post", "field", "words"),
    [
        (GIF_POST | {"model": "gpt-image-2"}, "output_format", "GPT Image 2 cannot make GIF images; choose"),
        (GIF_POST | {"frame_count": "1"}, "frame_count", "A GIF has at least 2 frames."),
        (GIF_POST | {"frame_count": "17"}, "frame_count", "A GIF has at most 16 frames."),
        (SVG_POST | {"n": "2"}, "n", "An SVG is made one at a time"),
        (SVG_POST | {"model": "gpt-image-2.5-sunburst"}, "output_format", "cannot make SVG images"),
        (SVG_POST | {"svg_model": "gpt-4o"}, "svg_model", ""),
    ],
)
def test_bad_gif_and_svg_requests_are_refused_before_the_api(client, team, standin, post, field, words):
    user, project = team
    client.force_login(user)
    response = client.post(reverse("job_create", args=[project.pk]), post)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert words in " ".join(response.context["form"].errors[field])
    assert not Job.objects.exists() and not standin.requests


def test_frame_settings_are_not_sent_for_a_png(client, team, standin):
    user, project = team
    client.force_login(user)
    response = client.post(
        reverse("job_create", args=[project.pk]), GIF_POST | {"output_format": "png", "frame_count": "99"}
    )
    assert response.status_code == 302
    job = Job.objects.get()
    assert job.frame_count is None and "frame_count" not in job.api_params()


# --- The sanitiser on its own ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="1" height="1"/></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><div xmlns="http://www.w3.org/1999/xhtml">'
        b"x</div></foreignObject></svg>",
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
        b'<use xlink:href="https://evil.example/s.svg#a"/></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><rect style="fill:url(https://evil.example/p)"/></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/svg+xml;base64,PHN2Zz4="/></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><a href="javascript:alert(1)"><rect/></a></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><animate attributeName="href" to="javascript:x()"/></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><set attributeName="onmouseover" to="alert(1)"/></svg>',
    ],
)
def test_the_sanitiser_drops_what_could_run_or_fetch(hostile):
    clean = svgsafe.sanitise(hostile).decode()
    for word in (
        "script",
        "onload",
        "onmouseover",
        "foreignObject",
        "evil.example",
        "javascript",
        "data:",
        "animate",
    ):
        assert word not in clean, (word, clean)


@pytest.mark.parametrize(
    "value",
    [
        "fill:\\75 rl(https://evil.example/p)",  # a CSS escape spells url( without the letters
        "fill:u\\72l(https://evil.example/p)",
        "mask:image-set('https://evil.example/m.png' 1x)",  # CSS images load from a bare string
        "mask:-webkit-image-set('https://evil.example/m.png' 1x)",
        "mask:cross-fade(url(#a), 'https://evil.example/m.png', 50%)",
    ],
)
def test_the_sanitiser_drops_css_that_fetches_without_spelling_url(value):
    """CSS reads escapes in a style attribute and in presentation attributes alike, and a mask can be
    any CSS image; a downloaded SVG opened on its own (no sandbox CSP) would fetch these."""
    as_style = f'<svg xmlns="http://www.w3.org/2000/svg"><rect style="{value}"/></svg>'
    name, _, css = value.partition(":")
    as_attribute = f'<svg xmlns="http://www.w3.org/2000/svg"><rect {name}="{css}"/></svg>'
    for hostile in (as_style, as_attribute):
        clean = svgsafe.sanitise(hostile.encode()).decode()
        assert "evil" not in clean and "\\" not in clean, clean


def test_the_sanitiser_refuses_entities_and_what_is_not_svg():
    billion = b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaa">]><svg xmlns="http://www.w3.org/2000/svg">&a;</svg>'
    for bad in (billion, b"<html><body/></html>", b"not xml at all"):
        with pytest.raises(svgsafe.UnsafeSvg):
            svgsafe.sanitise(bad)


def test_the_sanitiser_keeps_a_drawing_and_its_local_references():
    drawing = (
        b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 300 200"><defs><linearGradient id="g">'
        b'<stop offset="0" stop-color="#f00"/></linearGradient></defs>'
        b'<rect width="300" height="200" fill="url(#g)" style="stroke:#000;stroke-width:2"/>'
        b'<text x="10" y="20">Hi <tspan>there</tspan></text></svg>'
    )
    clean = svgsafe.sanitise(drawing).decode()
    assert 'fill="url(#g)"' in clean and "stroke:#000" in clean and "there</tspan>" in clean
    assert svgsafe.dimensions(svgsafe.sanitise(drawing)) == (300, 200)


@pytest.mark.parametrize("quality", ["low", "high"])
def test_a_gif_estimate_covers_what_each_frame_count_is_charged_within_a_sensible_factor(
    team, standin, quality
):
    """The SDK documents no per-frame usage for GIF output (image_generate_params says only 2-16 frames,
    default 9), so each frame is estimated as a whole image. Charged from the stand-in's usage, every
    allowed frame count must stay under the estimate the budget held back, and not far under it."""
    user, project = team
    for frames in range(imagemodels.MIN_FRAMES, imagemodels.MAX_FRAMES + 1):
        params = {"model": "gpt-image-2.6-sunburst", "quality": quality, "output_format": "gif"}
        job = run(
            create_job(project=project, author=user, prompt="A paper rocket", **params, frame_count=frames)
        )
        assert job.status == Job.Status.SUCCEEDED, job.error_message
        charged = sum(entry.cost for entry in LedgerEntry.objects.filter(job=job))
        held = jobs.job_estimate(prompt=job.prompt, params=job.api_params() | {"frame_count": frames}).cost
        assert charged > 0
        # The stand-in bills a frame as half an image (rounded down), so an odd count is a little over 2x.
        assert charged <= held <= Decimal("2.5") * charged, (frames, charged, held)


@pytest.mark.parametrize(
    "root",
    [
        '<svg xmlns="http://www.w3.org/2000/svg" width="1.2.3" height="40">',
        '<svg xmlns="http://www.w3.org/2000/svg" width="..." height="...">',
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 nan nan">',
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1e999 1e999">',
    ],
)
def test_an_svg_with_odd_lengths_is_stored_at_the_default_size_not_a_crash(root):
    """The sanitiser keeps width, height and viewBox as written; reading a size from them must not raise
    (a ValueError there escaped the worker's unreadable-image handling and the image convert view)."""
    prepared = outputs.prepare(f'{root}<rect width="10" height="10"/></svg>'.encode())
    assert prepared.format == "svg" and (prepared.width, prepared.height) == (1024, 1024)


def _use_bomb(depth: int, fan: int = 10) -> bytes:
    levels = ['<g id="l0"><rect width="1" height="1"/></g>']
    for level in range(1, depth + 1):
        uses = "".join(f'<use href="#l{level - 1}"/>' for _ in range(fan))
        levels.append(f'<g id="l{level}">{uses}</g>')
    body = f'<defs>{"".join(levels)}</defs><use href="#l{depth}"/>'
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">{body}</svg>'.encode()


def test_the_sanitiser_refuses_use_references_that_would_draw_too_much():
    """The SVG form of billion laughs: 1 KB of <use> elements, each drawing the group before ten times,
    is 100,000 drawn elements; cairosvg spent ~20 s of a worker (or of a web thread converting it) on
    it before giving up. Counted as drawn, with self-reference refused, before anything is stored."""
    chain = "".join(f'<g id="c{i}"><use href="#c{i + 1}"/></g>' for i in range(3000))
    for hostile in (
        _use_bomb(5),
        b'<svg xmlns="http://www.w3.org/2000/svg"><g id="a"><use href="#a"/></g></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><g id="a"><use href="#b"/></g>'
        b'<g id="b"><use href="#a"/></g></svg>',
        f'<svg xmlns="http://www.w3.org/2000/svg">{chain}<rect id="c3000"/></svg>'.encode(),
    ):
        with pytest.raises(svgsafe.UnsafeSvg):
            svgsafe.sanitise(hostile)
    modest = svgsafe.sanitise(_use_bomb(3)).decode()  # 1,000 drawn: a pattern of repeats is fine
    assert modest.count('href="#l') == 31


def test_an_svg_nested_too_deep_is_refused_as_unreadable_not_a_recursion_error():
    """5,000 nested groups overflowed the copy's recursion: a RecursionError, which the worker does not
    treat as an unreadable answer. It is refused like any unreadable SVG."""
    deep = b'<svg xmlns="http://www.w3.org/2000/svg">' + b"<g>" * 5000 + b"</g>" * 5000 + b"</svg>"
    with pytest.raises(outputs.UnreadableImage):
        outputs.prepare(deep)
    nested = b"<g>" * 100 + b"<rect/>" + b"</g>" * 100
    nested = b'<svg xmlns="http://www.w3.org/2000/svg">' + nested + b"</svg>"
    assert svgsafe.sanitise(nested).count(b"<g>") == 100


@pytest.mark.parametrize("author", ["gpt-5.5", "gpt-5.4-mini"])
@pytest.mark.parametrize("effort", ["low", "max"])
def test_an_svg_estimate_covers_its_author_at_the_authors_price_and_effort(team, standin, author, effort):
    """The author's tokens are charged at the author's price (svg_usage), growing with its reasoning
    effort; the estimate the budget held must cover both ledger lines, at any effort."""
    user, project = team
    params = {"model": "gpt-image-2.6-flare", "quality": "low", "output_format": "svg"}
    job = run(create_job(project=project, author=user, **params, svg_model=author, svg_effort=effort))
    assert job.status == Job.Status.SUCCEEDED, job.error_message
    lines = {entry.part: entry.cost for entry in LedgerEntry.objects.filter(job=job)}
    assert set(lines) == {"image", "svg_author"}
    held = jobs.job_estimate(prompt=job.prompt, params=job.request_fields()).cost
    assert sum(lines.values()) <= held <= 3 * sum(lines.values()), (lines, held)
