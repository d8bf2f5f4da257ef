"""Edits, references, masks and lineage, against the stand-in over real HTTP."""

import io

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image as PILImage

from tests.conftest import job_params
from tests.helpers import create_job, ladder, run, run_on_sqlite
from workspace import imageapi, jobs, library, lineage
from workspace.models import Image, Job, JobInput, Reference

pytestmark = pytest.mark.django_db


def png(size=(640, 480), colour=(200, 120, 40), mode="RGB") -> bytes:
    out = io.BytesIO()
    PILImage.new(mode, size, colour).save(out, format="PNG")
    return out.getvalue()


def jpeg(size=(800, 600), colour=(20, 140, 200)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, colour).save(out, format="JPEG")
    return out.getvalue()


def mask_png(size=(640, 480), hole=(100, 100, 300, 300)) -> bytes:
    """Opaque everywhere except a transparent rectangle: the area to change."""
    mask = PILImage.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), hole)
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return out.getvalue()


def upload(name: str, data: bytes, content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


@pytest.fixture
def refs(project, cast):
    stored, rejected = library.references_upload(
        project=project,
        user=cast.bob,
        files=[upload("product.png", png()), upload("logo.jpg", jpeg(), "image/jpeg")],
    )
    assert rejected == []
    return stored


def edit_params(**changes) -> dict:
    return job_params(size="auto", size_preset="auto", **changes)


# --- Sending edits -------------------------------------------------------------------------------------


def test_an_edit_sends_its_inputs_in_order_with_the_mask_and_only_allowed_fields(
    project, cast, refs, standin
):
    earlier = run(create_job(project=project, author=cast.bob)).images.get()
    inputs = [refs[1], earlier, refs[0]]
    job = jobs.edit_create(
        project=project,
        author=cast.bob,
        prompt="Put the logo on the cup",
        params=edit_params(),
        inputs=inputs,
        mask=None,
    )
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED, job.error_message
    sent = standin.requests[-1]
    assert sent.path.endswith("/images/edits")
    image_parts = [(field, name, kind) for field, name, kind, _ in sent.files if field.startswith("image")]
    assert image_parts == [
        ("image[]", "input-1.jpg", "image/jpeg"),
        ("image[]", "input-2.png", "image/png"),
        ("image[]", "input-3.png", "image/png"),
    ]
    first_sent = next(data for field, _, _, data in sent.files if field.startswith("image"))
    assert first_sent == refs[1].file.open("rb").read()
    assert sent.fields["model"] == "gpt-image-2"
    assert "input_fidelity" not in sent.fields
    assert "moderation" not in sent.fields
    assert not any(field == "mask" for field, *_ in sent.files)
    assert list(job.inputs.values_list("position", "reference_id", "image_id")) == [
        (0, refs[1].pk, None),
        (1, None, earlier.pk),
        (2, refs[0].pk, None),
    ]
    assert job.api_calls.get().endpoint == "images.edit"


def test_input_fidelity_goes_only_to_models_that_take_it(project, cast, refs, standin):
    job = jobs.edit_create(
        project=project,
        author=cast.bob,
        prompt="keep the face",
        params=edit_params(model="gpt-image-1.5", input_fidelity="high"),
        inputs=[refs[0]],
    )
    assert run(job).status == Job.Status.SUCCEEDED
    assert standin.requests[-1].fields["input_fidelity"] == "high"


def test_a_masked_edit_keeps_every_pixel_outside_the_mask_and_the_raw_output(project, cast, refs, standin):
    job = jobs.edit_create(
        project=project,
        author=cast.bob,
        prompt="a red balloon here",
        params=edit_params(n=2),
        inputs=[refs[0]],
        mask=mask_png(),
    )
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED, job.error_message
    sent = standin.requests[-1]
    assert [name for field, name, *_ in sent.files if field == "mask"] == ["mask.png"]
    original = PILImage.open(refs[0].file.open("rb")).convert("RGBA")
    for image in job.images.all():
        assert image.composite and image.file  # both kept
        pasted = PILImage.open(default_storage.open(image.composite.name)).convert("RGBA")
        raw = PILImage.open(default_storage.open(image.file.name)).convert("RGBA")
        assert pasted.size == original.size
        outside = [
            (x, y)
            for x in range(0, 640, 20)
            for y in range(0, 480, 20)
            if not (100 <= x < 300 and 100 <= y < 300)
        ]
        assert all(pasted.getpixel(point) == original.getpixel(point) for point in outside)
        inside = [(x, y) for x in range(110, 290, 30) for y in range(110, 290, 30)]
        raw_scaled = raw.resize(original.size)
        assert sum(pasted.getpixel(p) != original.getpixel(p) for p in inside) > len(inside) // 2
        assert all(pasted.getpixel(p) == raw_scaled.getpixel(p) for p in inside)


def test_a_single_image_job_streams_partial_previews(project, cast, standin):
    job = create_job(project=project, author=cast.bob)
    seen: list[int] = []
    result = imageapi.call(
        params=job.api_params(),
        edit=False,
        stream=job.streams_previews,
        timeout=10,
        on_partial=lambda index, data: seen.append(index),
    )
    assert seen == [0]
    assert standin.requests[-1].fields["stream"] in (True, "true")
    assert result.facts.usage["total_tokens"] > 0


def test_previews_are_cleared_when_the_job_ends(project, cast, standin, media_root):
    job = run(create_job(project=project, author=cast.bob))
    assert job.preview == ""
    assert job.preview_count == 1
    folder = media_root / f"projects/{project.pk}/jobs/{job.pk}"
    assert not [name for name in (p.name for p in folder.iterdir()) if "preview" in name]


def test_reproduce_queues_the_same_request_again(project, cast, refs, standin):
    job = run(
        jobs.edit_create(
            project=project,
            author=cast.bob,
            prompt="again",
            params=edit_params(),
            inputs=[refs[0]],
            mask=mask_png(),
        )
    )
    copy = run(jobs.job_reproduce(job=job, author=cast.alice))
    assert copy.pk != job.pk
    assert copy.status == Job.Status.SUCCEEDED
    assert (copy.prompt, copy.model, copy.size, copy.kind, copy.author) == (
        job.prompt,
        job.model,
        job.size,
        "edit",
        cast.alice,
    )
    assert list(copy.inputs.values_list("reference_id", flat=True)) == [refs[0].pk]
    assert default_storage.open(copy.mask.name).read() == default_storage.open(job.mask.name).read()


# --- The edit page ---------------------------------------------------------------------------------------


def edit_post(tokens, **extra):
    data = {
        "inputs": tokens,
        "prompt": "Make it autumn",
        "model": "gpt-image-2",
        "size": "auto",
        "quality": "low",
        "output_format": "png",
        "output_compression": "100",
        "background": "auto",
        "complexity": "",
        "input_fidelity": "",
        "n": "1",
    }
    data.update(extra)
    return data


def test_the_edit_page_queues_an_edit_with_a_painted_mask(
    client, cast, project, refs, django_capture_on_commit_callbacks
):
    client.force_login(cast.bob)
    data = edit_post([f"ref:{refs[0].pk}", f"ref:{refs[1].pk}"], mask=upload("mask.png", mask_png()))
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("edit", args=[project.pk]), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    job = Job.objects.get(kind="edit")
    assert len(callbacks) == 1
    assert job.mask.name == f"projects/{project.pk}/jobs/{job.pk}/mask.png"
    assert list(job.inputs.values_list("reference_id", flat=True)) == [refs[0].pk, refs[1].pk]
    page = client.get(reverse("edit", args=[project.pk]), {"inputs": [f"ref:{refs[0].pk}"]}).content.decode()
    assert "data-mask-painter" in page and 'data-width="640"' in page and 'data-height="480"' in page


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (lambda: upload("small.png", mask_png(size=(320, 240))), "must match"),
        (lambda: upload("flat.png", png()), "no transparent area"),
        (lambda: upload("mask.jpg", jpeg(size=(640, 480)), "image/jpeg"), "must be a PNG"),
        (lambda: upload("notes.png", b"<html>not an image</html>"), "notes.png"),
    ],
)
def test_a_bad_mask_is_refused_naming_the_file_and_nothing_is_queued(
    client, cast, project, refs, mask, message, media_root
):
    client.force_login(cast.bob)
    response = client.post(
        reverse("edit", args=[project.pk]), edit_post([f"ref:{refs[0].pk}"], mask_file=mask())
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Job.objects.count() == 0
    assert not (media_root / f"projects/{project.pk}/jobs").exists()


def test_seventeen_inputs_are_refused(client, cast, project, standin):
    client.force_login(cast.bob)
    images = [run(create_job(project=project, author=cast.bob, n=1)).images.get() for _ in range(2)]
    tokens = [f"img:{images[i % 2].pk}" for i in range(17)]
    response = client.post(reverse("edit", args=[project.pk]), edit_post(tokens))
    assert response.status_code == 400
    assert "Choose at most 16 inputs; you chose 17." in response.content.decode()
    assert Job.objects.filter(kind="edit").count() == 0


def test_an_input_from_another_project_is_refused(client, cast, project, other_project, standin):
    theirs = run(create_job(project=other_project, author=cast.charlie)).images.get()
    client.force_login(cast.bob)
    response = client.post(reverse("edit", args=[project.pk]), edit_post([f"img:{theirs.pk}"]))
    assert response.status_code == 400
    assert "One of the chosen inputs is not in this project" in response.content.decode()
    assert Job.objects.filter(kind="edit").count() == 0
    assert (
        client.post(reverse("edit", args=[other_project.pk]), edit_post([f"img:{theirs.pk}"])).status_code
        == 404
    )


def test_input_fidelity_on_gpt_image_2_is_refused_by_the_form(client, cast, project, refs):
    client.force_login(cast.bob)
    response = client.post(
        reverse("edit", args=[project.pk]), edit_post([f"ref:{refs[0].pk}"], input_fidelity="high")
    )
    assert response.status_code == 400
    assert "keeps inputs at high fidelity on its own" in response.content.decode()


def test_viewers_cannot_edit_or_upload(client, cast, project, refs):
    client.force_login(cast.vera)
    assert client.get(reverse("edit", args=[project.pk])).status_code == 403
    assert (
        client.post(reverse("references", args=[project.pk]), {"files": [upload("a.png", png())]}).status_code
        == 403
    )
    assert client.post(reverse("reference_remove", args=[project.pk, refs[0].pk])).status_code == 403
    assert client.get(reverse("reference_file", args=[project.pk, refs[0].pk, "thumb"])).status_code == 200
    client.force_login(cast.charlie)
    assert client.get(reverse("reference_file", args=[project.pk, refs[0].pk, "file"])).status_code == 404


# --- The library -----------------------------------------------------------------------------------------


def test_a_batch_upload_stores_the_good_files_and_reports_the_bad_ones(client, cast, project, media_root):
    client.force_login(cast.bob)
    files = [
        upload("good.png", png()),
        upload("fake.png", b"this is text, not a picture"),
        upload("photo.jpg", jpeg(), "image/jpeg"),
        upload("empty.png", b""),
        upload("vector.svg", b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "image/svg+xml"),
    ]
    response = client.post(reverse("references", args=[project.pk]), {"files": files}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Added 2 images" in html
    assert "fake.png: " in html and "empty.png: this file is empty." in html and "vector.svg: " in html
    names = sorted(Reference.objects.values_list("name", flat=True))
    assert names == ["good.png", "photo.jpg"]
    stored = sorted(p.name for p in (media_root / f"projects/{project.pk}/references").iterdir())
    # Two re-encoded files and two thumbnails, plus each upload as sent until its credential check has read
    # it (workspace/provenance.py); nothing for the bad files.
    assert sorted(name.split(".", 1)[1] for name in stored) == sorted(
        ["png", "thumb.webp", "as-sent", "jpg", "thumb.webp", "as-sent"]
    )
    ref = Reference.objects.get(name="photo.jpg")
    assert (ref.width, ref.height, ref.format, ref.uploaded_by) == (800, 600, "jpeg", cast.bob)


def test_a_removed_reference_leaves_the_library_but_not_the_lineage(client, cast, project, refs, standin):
    child = run(
        jobs.edit_create(project=project, author=cast.bob, prompt="x", params=edit_params(), inputs=[refs[0]])
    )
    client.force_login(cast.bob)
    client.post(reverse("reference_remove", args=[project.pk, refs[0].pk]))
    refs[0].refresh_from_db()
    assert refs[0].removed_at is not None
    library_page = client.get(reverse("references", args=[project.pk])).content.decode()
    assert f'value="ref:{refs[0].pk}"' not in library_page
    assert f'value="ref:{refs[1].pk}"' in library_page
    image = child.images.get()
    image_page = client.get(reverse("image_detail", args=[project.pk, image.pk])).content.decode()
    assert reverse("reference_file", args=[project.pk, refs[0].pk, "thumb"]) in image_page
    assert client.get(reverse("reference_file", args=[project.pk, refs[0].pk, "file"])).status_code == 200
    response = client.post(reverse("edit", args=[project.pk]), edit_post([f"ref:{refs[0].pk}"]))
    assert response.status_code == 400  # no longer offered for new edits


# --- Lineage ---------------------------------------------------------------------------------------------


def chain(project, author, depth: int, *, root_reference=None) -> list[Image]:
    """depth images, each an edit of the one before (rows only; lineage needs no files)."""
    images: list[Image] = []
    for level in range(depth):
        job = create_job(project=project, author=author, prompt=f"step {level}")
        if images or root_reference is not None:
            Job.objects.filter(pk=job.pk).update(kind="edit")
            JobInput.objects.create(
                job=job,
                position=0,
                image=images[-1] if images else None,
                reference=None if images else root_reference,
            )
        images.append(
            Image.objects.create(
                job=job, project=project, index=0, width=1024, height=1024, format="png", bytes=1, sha256="0"
            )
        )
    return images


@pytest.mark.parametrize("depth", [2, 50])
def test_ancestry_and_descendants_are_one_query_each_at_any_depth(
    project, cast, depth, django_assert_num_queries
):
    images = chain(project, cast.bob, depth + 1)
    with django_assert_num_queries(1):
        earlier = lineage.ancestors(images[-1])
    assert [image.pk for image in earlier] == [image.pk for image in reversed(images[:-1])]
    assert [image.depth for image in earlier] == list(range(1, depth + 1))
    with django_assert_num_queries(1):
        later = lineage.descendants(images[0])
    assert [image.pk for image in later] == [image.pk for image in images[1:]]


@pytest.mark.parametrize("depth", [2, 50])
def test_the_family_costs_a_fixed_number_of_queries(project, cast, refs, depth, django_assert_num_queries):
    images = chain(project, cast.bob, depth, root_reference=refs[0])
    branch = chain(project, cast.bob, 1)[0]
    Job.objects.filter(pk=branch.job_id).update(kind="edit")
    JobInput.objects.create(job_id=branch.job_id, position=0, image=images[0])
    with django_assert_num_queries(4):
        tree = lineage.family(images[depth // 2])
    assert tree.size == depth + 1
    assert tree.generations == depth + 1  # the upload is the first generation
    assert [ref.pk for ref in tree.references] == [refs[0].pk]
    assert [node.image.pk for node in tree.roots] == [images[0].pk]
    assert (
        {child.image.pk for child in tree.roots[0].children} == {images[1].pk, branch.pk}
        if depth > 1
        else True
    )
    rows = tree.rows()
    assert len(rows) == depth + 1
    assert max(level for _, level in rows) == depth - 1


def test_the_image_page_shows_parents_children_and_the_diff(client, cast, project, standin):
    parent = run(create_job(project=project, author=cast.bob, prompt="A lemon on a blue table")).images.get()
    child_job = jobs.edit_create(
        project=project,
        author=cast.bob,
        prompt="A lemon on a red table",
        params=edit_params(quality="high"),
        inputs=[parent],
    )
    child = run(child_job).images.get()
    client.force_login(cast.vera)
    child_page = client.get(reverse("image_detail", args=[project.pk, child.pk])).content.decode()
    assert reverse("image_detail", args=[project.pk, parent.pk]) in child_page
    assert (
        '<span class="diff-removed"><span class="visually-hidden">removed: </span>blue</span>' in child_page
    )
    assert '<span class="diff-added"><span class="visually-hidden">added: </span>red</span>' in child_page
    assert "<del>low</del>" in child_page and "<ins>high</ins>" in child_page
    parent_page = client.get(reverse("image_detail", args=[project.pk, parent.pk])).content.decode()
    assert "Made from this" in parent_page
    assert reverse("image_detail", args=[project.pk, child.pk]) in parent_page
    family_page = client.get(reverse("image_family", args=[project.pk, child.pk])).content.decode()
    assert "2 images over 2 generations" in family_page


def test_the_family_page_stays_readable_at_200_images(client, cast, project, django_assert_max_num_queries):
    roots = chain(project, cast.bob, 10)
    for image in roots:
        for _ in range(19):
            kid = chain(project, cast.bob, 1)[0]
            Job.objects.filter(pk=kid.job_id).update(kind="edit")
            JobInput.objects.create(job_id=kid.job_id, position=0, image=image)
    client.force_login(cast.bob)
    with django_assert_max_num_queries(12):
        response = client.get(reverse("image_family", args=[project.pk, roots[-1].pk]))
    html = response.content.decode()
    assert "200 images over 11 generations" in html
    assert html.count('class="tree-node') == 200


def test_the_edit_page_loads_the_mask_painter(client, cast, project, refs):
    client.force_login(cast.bob)
    page = client.get(reverse("edit", args=[project.pk]), {"inputs": [f"ref:{refs[0].pk}"]}).content.decode()
    assert "js/mask.js" in page
    assert "css/mask.css" in page


LADDER_STEPS = 2_000


def test_a_ladder_of_edits_visits_each_image_once(client, cast, project, django_assert_max_num_queries):
    """Each image made from the two before it: ancestry used to walk (image, depth) pairs, about
    steps²/4 of them (a million here); now each image is one row of the CTE."""
    import json

    from django.db import connection

    images = ladder(project=project, author=cast.bob, steps=LADDER_STEPS)
    last = images[-1]

    earlier = lineage.ancestors(last)
    assert len(earlier) == LADDER_STEPS - 1
    depth = {image.pk: image.depth for image in earlier}
    # Image k is at the nearest distance: two steps at a time.
    for k in (LADDER_STEPS - 2, LADDER_STEPS - 3, 1000, 0):
        assert depth[images[k].pk] == (LADDER_STEPS - 1 - k + 1) // 2, k
    later = lineage.descendants(images[0])
    assert len(later) == LADDER_STEPS - 1
    assert {image.pk: image.depth for image in later}[last.pk] == (LADDER_STEPS - 1 + 1) // 2

    for cte in (lineage.ANCESTORS_CTE, lineage.DESCENDANTS_CTE):
        seed = last.pk if cte is lineage.ANCESTORS_CTE else images[0].pk
        with connection.cursor() as cursor:
            # The module's own SQL with one seed placeholder; the value is a parameter.
            cursor.execute(cte.format(seeds="%s") + " SELECT COUNT(*) FROM walk", [seed])  # noqa: S608
            assert cursor.fetchone()[0] == LADDER_STEPS
            cursor.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + cte.format(seeds="%s") + lineage.WALKED_IMAGES, [seed]
            )
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        nodes, produced = [plan[0]["Plan"]], None
        while nodes:
            node = nodes.pop()
            if node["Node Type"] == "Recursive Union":
                produced = node["Actual Rows"]
            nodes.extend(node.get("Plans", []))
        assert produced == LADDER_STEPS  # each image once, not once per path length

    client.force_login(cast.bob)
    with django_assert_max_num_queries(12):
        response = client.get(reverse("image_family", args=[project.pk, images[LADDER_STEPS // 2].pk]))
    assert response.status_code == 200
    assert f"{LADDER_STEPS:,} images".replace(",", "") in response.content.decode().replace(",", "")


SQLITE_LADDER = """
from django.contrib.auth import get_user_model
from tests.helpers import ladder
from workspace import lineage
from workspace.models import Project

user = get_user_model().objects.create_user("ana", password="x")
project = Project.objects.create(name="Laptop", created_by=user)
images = ladder(project=project, author=user, steps=300)
earlier = lineage.ancestors(images[-1])
later = lineage.descendants(images[0])
tree = lineage.family(images[150])
print(json.dumps({
    "ancestors": len(earlier),
    "nearest": [image.depth for image in earlier[:4]],
    "farthest": earlier[-1].depth,
    "descendants": len(later),
    "family": tree.size,
}))
"""


def test_the_ladder_walks_the_same_on_sqlite(tmp_path):
    assert run_on_sqlite(SQLITE_LADDER, tmp_path) == {
        "ancestors": 299,
        "nearest": [1, 1, 2, 2],
        "farthest": 150,
        "descendants": 299,
        "family": 300,
    }
