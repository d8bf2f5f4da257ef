"""Bulk download: a selection of images as one ZIP of originals plus metadata.json, streamed.

The archive is written by the standard library's `zipfile` into a tiny write-only buffer that is
drained after every write, so the response starts at once and memory stays at about one chunk however
large the selection: a 2 GB download never sits in memory. Because the buffer cannot seek, zipfile
writes each entry's sizes and CRC in a data descriptor after its data, and every entry is ZIP64 so
members over 4 GB and archives over 4 GB work.

Images are stored, not deflated (PNG, JPEG and WebP are already compressed; deflating them again costs
CPU and saves nothing); metadata.json is deflated and comes last, so it can list the files that turned
out to be missing from storage. A missing file is skipped rather than breaking the download half-way.

Wiring (for a view): take a slot from `limits.ZIP_STREAMS`, fetch the selection with
`prefetch_for_export(queryset)`, then return
`StreamingHttpResponse(SlotStream(zip_stream(images), release=...), content_type="application/zip")` with
a Content-Disposition naming `export_filename(project, len(images))`. The stream runs no query and holds
no decode slot; SlotStream gives the ZIP slot back when the response is closed.
"""

import json
import zipfile
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime

from django.core.files.storage import default_storage
from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from django.utils.text import slugify

from workspace import formats
from workspace.models import ApiCall, Image, JobInput

METADATA_NAME = "metadata.json"
# ZIP timestamps cannot go before 1980.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def prefetch_for_export(queryset: QuerySet) -> list[Image]:
    """The images with everything the metadata needs, in a fixed number of queries however many.

    Keeps the queryset's order and filters; the caller chooses which images (visible ones, this project).
    """
    return list(
        queryset.select_related(
            "job",
            "job__author",
            "author",
            "reviewed_by",
            "job__template_version__template",
            "job__brand_kit_version__kit",
            "job__campaign",
            "content_credential",
        ).prefetch_related(
            Prefetch(
                "job__inputs", queryset=JobInput.objects.select_related("reference").order_by("position")
            ),
            Prefetch("job__api_calls", queryset=ApiCall.objects.order_by("attempt", "id")),
        )
    )


def entry_name(position: int, image: Image) -> str:
    """The image's name inside the archive; `position` counts from 1 over the whole selection."""
    extension = formats.extension(image.format) if image.format in formats.FORMATS else "bin"
    return f"{position:03d}-image-{image.pk}.{extension}"


def export_filename(project, count: int) -> str:
    """E.g. "atelier-spring-campaign-12-images-2026-11-20.zip" (today in the site's time zone)."""
    slug = slugify(project.name)[:60].strip("-") or f"project-{project.pk}"
    noun = "image" if count == 1 else "images"
    return f"atelier-{slug}-{count}-{noun}-{timezone.localdate().isoformat()}.zip"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _request_id(job) -> str | None:
    """The request id of the job's successful call (the last one, should there ever be several)."""
    ok = [call for call in job.api_calls.all() if call.outcome == ApiCall.Outcome.OK]
    return (ok[-1].request_id or None) if ok else None


def _unused(name: str, value) -> bool:
    """GIF and SVG settings a job did not send (they are null or empty on every other job)."""
    return name in ("frame_count", "frame_duration_ms", "svg_model", "svg_effort") and value in (None, "")


def _record(image: Image, file: str | None) -> dict:
    job = image.job
    author = image.author or job.author
    return {
        "id": image.pk,
        "file": file,
        "prompt": job.prompt,
        "model": image.model or job.model,
        "kind": image.kind or job.kind,
        "size_requested": job.size,
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "bytes": image.bytes,
        "sha256": image.sha256,
        # Model and size have keys of their own above.
        "parameters": {
            name: value
            for name, value in job.request_fields().items()
            if name not in ("model", "size", "size_preset") and not _unused(name, value)
        },
        "author": author.get_username() if author is not None else None,
        "created_at": _iso(image.created_at),
        "job_id": job.pk,
        "request_id": _request_id(job),
        "review": {
            "state": image.review_state,
            "by": image.reviewed_by.get_username() if image.reviewed_by is not None else None,
            "at": _iso(image.reviewed_at),
        },
        "lineage": {
            "inputs": [
                {
                    "position": item.position,
                    "image_id": item.image_id,
                    "reference_id": item.reference_id,
                    "reference_name": item.reference.name if item.reference is not None else None,
                }
                for item in sorted(job.inputs.all(), key=lambda item: item.position)
            ],
            "mask": bool(job.mask),
            "markup": bool(job.markup),
        },
        "pasted_back": bool(image.composite),
        # The credential is the original's (the file in this archive, byte for byte as OpenAI sent it).
        "content_credentials": image.credential.as_metadata() if image.credential else {"verdict": "pending"},
        # Re-encoded files carry no credential: each says it is derived from the checked original.
        "derived_files": [
            {"kind": kind, "derived_from": "file", "carries_credential": False}
            for kind, present in (
                ("thumbnail", bool(image.thumbnail)),
                ("pasted_back_png", bool(image.composite)),
                ("format_conversions", True),
            )
            if present
        ],
        "made_with": made_with(job),
    }


def made_with(job) -> dict:
    """The template and kit versions, the variable values and the campaign a job was made from: read
    from the immutable versions it points at, so an edited template never changes what this says."""
    template, kit, campaign = job.template_version, job.brand_kit_version, job.campaign
    return {
        "template": None
        if template is None
        else {
            "id": template.template_id,
            "name": template.template.name,
            "version": template.number,
            "text": template.text,
        },
        "variables": dict(job.variable_items()),
        "brand_kit": None if kit is None else {"id": kit.kit_id, "name": kit.kit.name, "version": kit.number},
        "campaign": None
        if campaign is None
        else {
            "id": campaign.pk,
            "name": campaign.name,
            "kind": campaign.kind,
            "row": job.campaign_row,
            "cell": dict(job.cell or {}),
        },
    }


def export_metadata(
    images: list[Image], *, missing_ids: Collection[int] = (), names: dict[int, str] | None = None
) -> dict:
    """What metadata.json says about `images` (the whole selection, in order), JSON-ready.

    Images whose id is in `missing_ids` were not in the archive: they are listed under "missing", with
    "file" null, instead of "images". No queries when the images come from `prefetch_for_export`.
    """
    included, missing = [], []
    for position, image in enumerate(images, start=1):
        if image.pk in missing_ids:
            missing.append(_record(image, None))
        else:
            included.append(_record(image, _name(position, image, names)))
    return {
        "exported_at": timezone.now().isoformat(),
        "count": len(included),
        "images": included,
        "missing": missing,
    }


class _Pipe:
    """A write-only, unseekable sink for zipfile: it keeps what was written until it is drained.

    No tell() or seek(), so zipfile streams (data descriptors, no going back to patch headers).
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        if data:
            self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _zip_time(image: Image) -> tuple[int, int, int, int, int, int]:
    moment = timezone.localtime(image.created_at) if image.created_at else None
    if moment is None or moment.year < 1980:
        return _ZIP_EPOCH
    return moment.timetuple()[:6]


def _name(position: int, image: Image, names: dict[int, str] | None) -> str:
    return names[image.pk] if names and image.pk in names else entry_name(position, image)


def zip_stream(
    images: list[Image], *, chunk_size: int = 64 * 1024, names: dict[int, str] | None = None
) -> Iterator[bytes]:
    """The bytes of a ZIP of each image's original file, in order, then metadata.json; streamed.

    `names`: {image id: name in the archive} chosen by the caller (a campaign's, by a CSV column;
    unique and safe), instead of entry_name's.

    Memory stays at about `chunk_size` whatever the file sizes. A file missing from storage is skipped
    and listed under "missing" in metadata.json. Any other storage error ends the stream with the error,
    so the client sees a broken download rather than a quietly truncated file.
    """
    images = list(images)
    pipe = _Pipe()
    missing: set[int] = set()
    with zipfile.ZipFile(pipe, mode="w", allowZip64=True) as archive:
        for position, image in enumerate(images, start=1):
            yield from _entry(archive, pipe, _name(position, image, names), image, chunk_size, missing)
        metadata = export_metadata(images, missing_ids=missing, names=names)
        info = zipfile.ZipInfo(METADATA_NAME, date_time=timezone.localtime().timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        with archive.open(info, "w", force_zip64=True) as member:
            member.write(json.dumps(metadata, indent=2, ensure_ascii=False).encode("utf-8"))
    # Closing wrote the last descriptor, the central directory and the end records.
    if tail := pipe.drain():
        yield tail


def _entry(
    archive: zipfile.ZipFile, pipe: _Pipe, name: str, image: Image, chunk_size: int, missing: set[int]
) -> Iterable[bytes]:
    try:
        source = default_storage.open(image.file.name, "rb")
    except FileNotFoundError:
        missing.add(image.pk)
        return
    with source:
        info = zipfile.ZipInfo(name, date_time=_zip_time(image))
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        with archive.open(info, "w", force_zip64=True) as member:
            while chunk := source.read(chunk_size):
                member.write(chunk)
                # The local header goes out with the first chunk; each chunk leaves as soon as it is read.
                yield pipe.drain()
    # The data descriptor; it goes out with the next entry's first chunk or the end of the archive.


class SlotStream:
    """A response body that gives back its slot (limits.ZIP_STREAMS) when the download ends, however it ends.

    The WSGI server calls close() when the response is done, finished or not (a dropped connection
    included), and also when the body was never read; a generator's `finally` would not run in that last
    case.
    """

    def __init__(self, chunks: Iterator[bytes], *, release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release = release

    def __iter__(self) -> "SlotStream":
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            self._release()
