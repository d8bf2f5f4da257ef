"""Markup-guided edits: a transparent PNG of circles, arrows and labels at the first input's exact size,
sent as `markup` to models that take it, never with a mask, and kept in lineage like a mask."""

import io

import pytest
from django.urls import reverse
from PIL import Image as PILImage
from PIL import ImageDraw

from tests.helpers import last_image_call, run
from tests.test_edits import edit_post, jpeg, mask_png, png, upload
from workspace import library, lineage
from workspace.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def refs(project, cast):
    stored, rejected = library.references_upload(
        project=project,
        user=cast.bob,
        files=[upload("product.png", png()), upload("logo.jpg", jpeg(), "image/jpeg")],
    )
    assert rejected == []
    return stored


def markup_png(size=(640, 480)) -> bytes:
    """A red circle and an arrow on a transparent layer, as static/js/markup.js draws them."""
    layer = PILImage.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.ellipse((200, 150, 320, 270), outline=(235, 20, 60, 255), width=5)
    draw.line((60, 60, 190, 150), fill=(235, 20, 60, 255), width=5)
    out = io.BytesIO()
    layer.save(out, format="PNG")
    return out.getvalue()


def test_a_markup_is_sent_at_the_first_inputs_exact_size_and_kept_in_lineage(
    client, cast, project, refs, standin
):
    client.force_login(cast.bob)
    data = edit_post(
        [f"ref:{refs[0].pk}", f"ref:{refs[1].pk}"],
        markup=upload("markup.png", markup_png()),
        model="gpt-image-2.5-sunburst",
        prompt="Make the circled cup red",
    )
    response = client.post(reverse("edit", args=[project.pk]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    job = run(Job.objects.get(kind="edit"))
    assert job.status == Job.Status.SUCCEEDED, job.error_message
    assert job.markup.name == f"projects/{project.pk}/jobs/{job.pk}/markup.png" and not job.mask

    sent = last_image_call(standin)
    [(_field, _name, kind, data)] = [part for part in sent.files if part[0] == "markup"]
    assert kind == "image/png"
    with PILImage.open(io.BytesIO(data)) as markup:
        assert markup.size == (refs[0].width, refs[0].height) == (640, 480)
        assert markup.mode == "RGBA" and markup.getchannel("A").getextrema() == (0, 255)
    assert not [part for part in sent.files if part[0] == "mask"]

    image = job.images.get()
    page = client.get(image.get_absolute_url()).content.decode()
    markup_url = reverse("job_markup", args=[project.pk, job.pk])
    assert markup_url in page
    served = client.get(markup_url)
    assert (
        served["Content-Type"] == "image/png"
        and served["Content-Security-Policy"] == "default-src 'none'; sandbox"
    )
    assert [node.markup for node, _ in lineage.family(image).rows()] == [True]
    assert markup_url in client.get(reverse("image_family", args=[project.pk, image.pk])).content.decode()


def test_a_stranger_cannot_see_a_markup(client, cast, project, refs, standin):
    client.force_login(cast.bob)
    data = edit_post(
        [f"ref:{refs[0].pk}"], markup=upload("markup.png", markup_png()), model="gpt-image-2.6-flare"
    )
    assert client.post(reverse("edit", args=[project.pk]), data).status_code == 302
    job = Job.objects.get()
    client.force_login(cast.charlie)
    assert client.get(reverse("job_markup", args=[project.pk, job.pk])).status_code == 404


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        (
            {"markup": lambda: upload("m.png", markup_png()), "mask": lambda: upload("k.png", mask_png())},
            "markup_file",
            "Use a mask or a markup, not both",
        ),
        (
            {"markup": lambda: upload("m.png", markup_png()), "model": "gpt-image-2"},
            "markup_file",
            "GPT Image 2 does not take a markup; choose GPT Image 2.5 Sunburst",
        ),
        (
            {"markup": lambda: upload("small.png", markup_png(size=(320, 240)))},
            "markup_file",
            "this markup is 320 × 240 pixels but the image being edited is 640 × 480; they must match.",
        ),
        (
            {"markup": lambda: upload("blank.png", png(mode="RGBA", colour=(0, 0, 0, 0)))},
            "markup_file",
            "this markup is empty",
        ),
        (
            {"markup_file": lambda: upload("flat.png", png())},
            "markup_file",
            "this markup has no transparent area",
        ),
        (
            {
                "mask": lambda: upload("k.png", mask_png()),
                "output_format": "gif",
                "model": "gpt-image-2.6-flare",
            },
            "output_format",
            "A GIF cannot be made with a mask",
        ),
    ],
)
def test_a_bad_markup_is_refused_in_words_and_nothing_is_queued(
    client, cast, project, refs, standin, media_root, extra, field, words
):
    client.force_login(cast.bob)
    values = {name: value() if callable(value) else value for name, value in extra.items()}
    data = edit_post([f"ref:{refs[0].pk}"], **({"model": "gpt-image-2.5-sunburst"} | values))
    response = client.post(reverse("edit", args=[project.pk]), data)
    assert response.status_code == 400
    errors = " ".join(response.context["form"].errors.get(field, []))
    assert words in errors, response.context["form"].errors
    assert not Job.objects.exists() and not standin.requests
    assert not (media_root / f"projects/{project.pk}/jobs").exists()


def test_the_edit_page_offers_the_markup_painter_beside_the_mask_painter(client, cast, project, refs):
    client.force_login(cast.bob)
    page = client.get(reverse("edit", args=[project.pk]), {"inputs": [f"ref:{refs[0].pk}"]}).content.decode()
    assert "data-mask-painter" in page and "data-markup-painter" in page
    assert 'name="markup"' in page and "js/markup.js" in page


def test_a_gif_or_svg_cannot_be_an_edit_input(client, cast, project, standin):
    from tests.factories import ImageFactory

    gif = ImageFactory(job__project=project)
    gif.format = "gif"  # as a GIF job's image row says (the factory stores a PNG file)
    gif.save(update_fields=["format"])
    client.force_login(cast.bob)
    response = client.get(reverse("edit", args=[project.pk]), {"inputs": [f"img:{gif.pk}"]})
    assert response.status_code == 400
    assert "is GIF: only PNG, JPEG or WebP is editable" in response.content.decode()
