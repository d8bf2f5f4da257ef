"""Bulk download: a streamed ZIP of the originals plus metadata.json, with real images from the stand-in."""

import hashlib
import io
import json
import random
import time
import tracemalloc
import zipfile
import zlib
from datetime import datetime

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image as PILImage

from tests.conftest import job_params
from tests.helpers import create_job, run
from workspace import jobs, library
from workspace.export import (
    METADATA_NAME,
    export_filename,
    export_metadata,
    prefetch_for_export,
    zip_stream,
)
from workspace.models import ApiCall, Image, Job

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


def png(size=(640, 480), colour=(200, 120, 40)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def mask_png(size=(640, 480), hole=(100, 100, 300, 300)) -> bytes:
    mask = PILImage.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), hole)
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def reference(project, cast):
    stored, rejected = library.references_upload(
        project=project,
        user=cast.bob,
        files=[SimpleUploadedFile("product shot.png", png(), content_type="image/png")],
    )
    assert rejected == []
    return stored[0]


def generated(project, author, prompt: str, n: int = 1, **params) -> list[Image]:
    job = run(create_job(project=project, author=author, prompt=prompt, n=n, **params))
    assert job.status == Job.Status.SUCCEEDED, job.error_message
    return list(job.images.order_by("index"))


def edited(project, author, prompt: str, inputs: list, mask: bytes | None = None, n: int = 1) -> list[Image]:
    job = jobs.edit_create(
        project=project,
        author=author,
        prompt=prompt,
        params=job_params(size="auto", size_preset="auto", n=n),
        inputs=inputs,
        mask=mask,
    )
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED, job.error_message
    return list(job.images.order_by("index"))


def approve(image: Image, user) -> Image:
    image.review_state = Image.Review.APPROVED
    image.reviewed_by = user
    image.reviewed_at = timezone.now()
    image.save(update_fields=["review_state", "reviewed_by", "reviewed_at"])
    return image


def selection(*images: Image) -> list[Image]:
    """The images, in the order given, as the download view fetches them."""
    order = {image.pk: position for position, image in enumerate(images)}
    fetched = prefetch_for_export(Image.objects.filter(pk__in=order))
    return sorted(fetched, key=lambda image: order[image.pk])


def unzip(data: bytes) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    return archive


def extension(image: Image) -> str:
    return {"jpeg": "jpg"}.get(image.format, image.format)


# --- Contents ------------------------------------------------------------------------------------------


def test_it_zips_exactly_the_selected_originals_byte_for_byte_then_metadata(project, cast, reference):
    first, second = generated(project, cast.bob, "A lemon on a blue tiled table", n=2)
    (jpeg,) = generated(project, cast.alice, "A pear on slate", output_format="jpeg", output_compression=80)
    (masked,) = edited(
        project, cast.alice, "Put the lemon beside the product", [reference, first], mask=mask_png()
    )
    generated(project, cast.bob, "Not selected")  # in the project, not in the download
    approve(second, cast.vera)
    chosen = [masked, second, jpeg, first]

    chunks = list(zip_stream(selection(*chosen)))
    archive = unzip(b"".join(chunks))

    names = [
        f"{position:03d}-image-{image.pk}.{extension(image)}" for position, image in enumerate(chosen, 1)
    ]
    assert names[2].endswith(".jpg")
    assert archive.namelist() == [*names, METADATA_NAME]
    for name, image in zip(names, chosen, strict=True):
        data = archive.read(name)
        assert hashlib.sha256(data).hexdigest() == image.sha256
        with default_storage.open(image.file.name, "rb") as original:
            assert data == original.read()  # the raw output, not the pasted-back composite
    infos = {info.filename: info for info in archive.infolist()}
    assert {infos[name].compress_type for name in names} == {zipfile.ZIP_STORED}
    assert infos[METADATA_NAME].compress_type == zipfile.ZIP_DEFLATED
    assert all(info.flag_bits & 0x08 for info in infos.values())  # streamed: sizes in data descriptors

    metadata = json.loads(archive.read(METADATA_NAME))
    assert metadata["count"] == 4
    assert metadata["missing"] == []
    assert abs(timezone.now() - datetime.fromisoformat(metadata["exported_at"])).total_seconds() < 60
    records = metadata["images"]
    assert [record["id"] for record in records] == [image.pk for image in chosen]
    assert [record["file"] for record in records] == names
    assert [record["prompt"] for record in records] == [
        "Put the lemon beside the product",
        "A lemon on a blue tiled table",
        "A pear on slate",
        "A lemon on a blue tiled table",
    ]
    for record, image in zip(records, chosen, strict=True):
        call = ApiCall.objects.get(job=image.job_id, outcome=ApiCall.Outcome.OK)
        assert call.request_id
        assert record["request_id"] == call.request_id
        assert record["job_id"] == image.job_id
        assert record["sha256"] == image.sha256
        assert (record["bytes"], record["width"], record["height"]) == (
            image.bytes,
            image.width,
            image.height,
        )
        assert record["created_at"] == image.created_at.isoformat()

    edit, approved, pear, plain = records
    assert edit["kind"] == "edit" and plain["kind"] == "generate"
    assert edit["author"] == "alice" and plain["author"] == "bob"
    assert edit["model"] == "gpt-image-2"
    assert edit["size_requested"] == "auto" and plain["size_requested"] == "1024x1024"
    assert edit["lineage"] == {
        "inputs": [
            {
                "position": 0,
                "image_id": None,
                "reference_id": reference.pk,
                "reference_name": reference.name,
            },
            {"position": 1, "image_id": first.pk, "reference_id": None, "reference_name": None},
        ],
        "mask": True,
        "markup": False,
    }
    assert edit["pasted_back"] is True
    assert plain["lineage"] == {"inputs": [], "mask": False, "markup": False}
    assert plain["pasted_back"] is False
    assert pear["format"] == "jpeg"
    assert pear["parameters"] == {
        "quality": "low",
        "output_format": "jpeg",
        "output_compression": 80,
        "background": "auto",
        "moderation": "auto",
        "complexity": "",
        "n": 1,
        "input_fidelity": "",
    }
    assert plain["parameters"]["n"] == 2
    second.refresh_from_db()
    assert approved["review"] == {"state": "approved", "by": "vera", "at": second.reviewed_at.isoformat()}
    assert plain["review"] == {"state": "draft", "by": None, "at": None}


def test_it_names_the_download_after_the_project_and_the_day(project):
    today = timezone.localdate().isoformat()
    assert export_filename(project, 12) == f"atelier-spring-campaign-12-images-{today}.zip"
    assert export_filename(project, 1) == f"atelier-spring-campaign-1-image-{today}.zip"
    project.name = "Été / Q3: 'launch' ✨"
    assert export_filename(project, 3) == f"atelier-ete-q3-launch-3-images-{today}.zip"
    project.name = "✨✨"
    assert export_filename(project, 3) == f"atelier-project-{project.pk}-3-images-{today}.zip"


def test_it_skips_a_file_missing_from_storage_and_lists_it_in_the_metadata(project, cast):
    first, gone, last = generated(project, cast.bob, "Three lemons", n=3)
    default_storage.delete(gone.file.name)

    archive = unzip(b"".join(zip_stream(selection(first, gone, last))))

    kept = [f"001-image-{first.pk}.png", f"003-image-{last.pk}.png"]
    assert archive.namelist() == [*kept, METADATA_NAME]
    assert hashlib.sha256(archive.read(kept[1])).hexdigest() == last.sha256
    metadata = json.loads(archive.read(METADATA_NAME))
    assert metadata["count"] == 2
    assert [record["id"] for record in metadata["images"]] == [first.pk, last.pk]
    assert [(record["id"], record["file"], record["prompt"]) for record in metadata["missing"]] == [
        (gone.pk, None, "Three lemons")
    ]


def test_it_can_describe_a_selection_without_zipping_it(project, cast):
    images = selection(*generated(project, cast.bob, "Two lemons", n=2))
    metadata = export_metadata(images)
    assert metadata["count"] == 2
    assert [record["file"] for record in metadata["images"]] == [
        f"001-image-{images[0].pk}.png",
        f"002-image-{images[1].pk}.png",
    ]
    json.dumps(metadata)  # JSON-ready as it is


# --- Streaming -----------------------------------------------------------------------------------------


class LazyRandomFile(io.RawIOBase):
    """`size` pseudo-random bytes, made only as they are read; remembers how many and their CRC-32."""

    def __init__(self, size: int, seed: int = 7) -> None:
        self.size = size
        self.produced = 0
        self.crc = 0
        self._random = random.Random(seed)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.size - self.produced)
        if count <= 0:
            return 0
        data = self._random.randbytes(count)
        buffer[:count] = data
        self.crc = zlib.crc32(data, self.crc)
        self.produced += count
        return count


def test_it_streams_a_huge_file_in_bounded_memory(project, cast, monkeypatch, tmp_path):
    before, huge, after = generated(project, cast.bob, "Three lemons", n=3)
    size = 200 * MB
    source = LazyRandomFile(size)
    real_open = default_storage.open

    def open_(name, mode="rb"):
        return source if name == huge.file.name else real_open(name, mode)

    monkeypatch.setattr(default_storage, "open", open_)
    images = selection(before, huge, after)
    chunk_size = 64 * 1024
    target = tmp_path / "download.zip"

    started = time.perf_counter()
    tracemalloc.start()
    try:
        yielded = chunks = largest = 0
        with target.open("wb") as out:
            for chunk in zip_stream(images, chunk_size=chunk_size):
                # Nothing piles up: every byte read from storage has left by the next chunk.
                assert source.produced <= yielded + len(chunk)
                yielded += len(chunk)
                chunks += 1
                largest = max(largest, len(chunk))
                out.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    print(f"\nstreamed {yielded / MB:.1f} MB in {chunks} chunks, {elapsed:.1f} s, peak {peak / 1024:.0f} KiB")

    assert source.produced == size
    assert peak < 2 * MB, f"peak traced memory {peak} bytes"
    assert largest <= chunk_size + 4096  # a chunk, plus at most a header or descriptor
    assert chunks >= size // chunk_size
    assert target.stat().st_size == yielded > size

    with zipfile.ZipFile(target) as archive:  # read from disk, never whole in memory
        infos = archive.infolist()
        assert [info.filename for info in infos] == [
            f"001-image-{before.pk}.png",
            f"002-image-{huge.pk}.png",
            f"003-image-{after.pk}.png",
            METADATA_NAME,
        ]
        assert infos[1].file_size == infos[1].compress_size == size
        assert source.crc == infos[1].CRC
        assert hashlib.sha256(archive.read(infos[2])).hexdigest() == after.sha256
        assert json.loads(archive.read(METADATA_NAME))["count"] == 3


# --- Queries -------------------------------------------------------------------------------------------


def test_it_costs_the_same_queries_for_2_images_as_for_20(
    project, cast, reference, django_assert_max_num_queries, django_assert_num_queries
):
    images = generated(project, cast.bob, "A lemon", n=4)
    images += generated(project, cast.alice, "A pear", n=4, output_format="webp", output_compression=70)
    images += edited(project, cast.alice, "Lemon by the product", [reference, images[0]], mask_png(), n=4)
    images += edited(project, cast.bob, "Pear by the product", [images[5], reference], n=4)
    images += generated(project, cast.bob, "A lime", n=4)
    assert len(images) == 20
    for image, reviewer in zip(images[::3], [cast.alice, cast.vera, cast.sam] * 3, strict=False):
        approve(image, reviewer)

    counts = []
    for picked in (images[:2], images):
        ids = [image.pk for image in picked]
        with django_assert_max_num_queries(3) as captured:
            fetched = prefetch_for_export(Image.objects.filter(pk__in=ids).order_by("-created_at", "-id"))
            metadata = export_metadata(fetched)
            data = b"".join(zip_stream(fetched))
        counts.append(len(captured))
        assert metadata["count"] == len(picked)
        assert sorted(record["id"] for record in metadata["images"]) == sorted(ids)
        assert all(record["request_id"] for record in metadata["images"])
        assert len(unzip(data).namelist()) == len(picked) + 1
    assert counts[0] == counts[1]

    # The response body is made after the view has returned: it must not touch the database at all.
    fetched = prefetch_for_export(Image.objects.filter(pk__in=[image.pk for image in images]))
    with django_assert_num_queries(0):
        assert b"".join(zip_stream(fetched)).startswith(b"PK\x03\x04")
