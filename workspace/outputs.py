"""Turning the API's bytes into stored images: verify, store through the storage API, thumbnail, delete.

Pure storage helpers: they take names and bytes, never jobs. Where a job's files go is the job's to say
(`Job.folder`, `Job.attempt_prefix`).
"""

import hashlib
import io
import logging
import os
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils.http import content_disposition_header
from PIL import Image as PILImage

from workspace import formats, limits, svgsafe, uploads

logger = logging.getLogger(__name__)


class UnreadableImage(ValueError):
    pass


@dataclass
class StoredFile:
    index: int
    name: str
    thumbnail_name: str
    width: int
    height: int
    format: str
    bytes: int
    sha256: str
    composite_name: str = ""
    composite_thumbnail_name: str = ""


def paste_back(*, original: bytes, mask: bytes, output: PILImage.Image) -> PILImage.Image:
    """The output inside the mask's transparent area, the original everywhere else, pixel for pixel.

    The model redraws the whole frame, so even "kept" areas drift; this puts the original back.
    """
    with PILImage.open(io.BytesIO(original)) as source:
        base = source.convert("RGBA")
    with PILImage.open(io.BytesIO(mask)) as mask_image:
        edit_here = mask_image.convert("RGBA").getchannel("A").point(lambda alpha: 255 if alpha == 0 else 0)
    result = output.convert("RGBA")
    if result.size != base.size:
        result = result.resize(base.size, PILImage.Resampling.LANCZOS)
    base.paste(result, (0, 0), edit_here)
    return base


def sniff_format(data: bytes) -> str | None:
    """png, jpeg or webp from the first bytes, without decoding: for previews shown once and thrown away."""
    return formats.BY_PILLOW.get(uploads.sniff(data) or "")


def make_thumbnail(image: PILImage.Image) -> bytes:
    # reducing_gap shrinks by whole factors first and WebP method 0 encodes fast: about 5 ms instead of
    # 25 ms for a 1024 px image, for thumbnails a little larger and barely softer (41 vs 44 dB PSNR).
    edge = settings.THUMBNAIL_MAX_EDGE
    scale = min(1.0, edge / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    thumb = image.resize(size, PILImage.Resampling.LANCZOS, reducing_gap=1.0) if scale < 1 else image
    if thumb.mode not in ("RGB", "RGBA"):
        thumb = thumb.convert("RGBA" if "A" in thumb.getbands() else "RGB")
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=80, method=0)
    return out.getvalue()


def inspect(data: bytes) -> tuple[PILImage.Image, str]:
    """Open bytes as an image of an allowed format, fully decoded, or raise UnreadableImage."""
    try:
        # A full decode finds truncated or corrupt data; a separate verify() pass would read it all again.
        image = PILImage.open(io.BytesIO(data), formats=list(formats.BY_PILLOW))
        image.load()
    except Exception as error:  # Pillow raises many types for bad data
        raise UnreadableImage(f"not a readable image: {error}") from error
    image_format = formats.BY_PILLOW.get(image.format or "")
    if image_format is None:
        raise UnreadableImage(f"unexpected image format {image.format}")
    return image, image_format


@dataclass
class Output:
    """One answered image made ready to store: the bytes kept as the original, and a still to thumbnail."""

    data: bytes
    still: PILImage.Image
    format: str
    width: int
    height: int


def _looks_like_svg(data: bytes) -> bool:
    head = data[:1024].lstrip().lower()
    return head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head)


def prepare(data: bytes) -> Output:
    """Check an answered image and say what to keep: png/jpeg/webp and GIF byte for byte (a GIF's still is
    its first frame), an SVG sanitised (svgsafe) and rasterised for its thumbnail. Raises UnreadableImage."""
    if data.startswith((b"GIF87a", b"GIF89a")):
        try:
            image = PILImage.open(io.BytesIO(data), formats=["GIF"])
            image.seek(0)
            still = image.convert("RGBA")
        except Exception as error:  # Pillow raises many types for bad data
            raise UnreadableImage(f"not a readable GIF: {error}") from error
        return Output(data=data, still=still, format="gif", width=image.width, height=image.height)
    if _looks_like_svg(data):
        try:
            clean = svgsafe.sanitise(data)
        except svgsafe.UnsafeSvg as error:
            raise UnreadableImage(f"not a readable SVG: {error}") from error
        width, height = svgsafe.dimensions(clean)
        still = rasterise_svg(clean, width=width, height=height, max_edge=settings.THUMBNAIL_MAX_EDGE * 2)
        return Output(data=clean, still=still, format="svg", width=width, height=height)
    image, image_format = inspect(data)
    return Output(data=data, still=image, format=image_format, width=image.width, height=image.height)


def rasterise_svg(clean: bytes, *, width: int, height: int, max_edge: int) -> PILImage.Image:
    """A sanitised SVG drawn at most `max_edge` pixels on its longer side.

    cairosvg draws it (through libcairo, which Debian and our image ship); it is given only sanitised
    bytes, and its own `unsafe` switch stays off, so it never reads files or the network. Without libcairo
    the still is a plain tile saying SVG, so storing never fails for want of a preview.
    """
    scale = min(1.0, max_edge / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    try:
        import cairosvg  # imported here: loading libcairo costs ~50 ms, needed only for SVG answers
    except OSError:
        logger.warning("libcairo is missing: SVG thumbnails are plain tiles")
        return _svg_tile(size)
    try:
        png = cairosvg.svg2png(bytestring=clean, output_width=size[0], output_height=size[1])
        with PILImage.open(io.BytesIO(png)) as drawn:
            return drawn.convert("RGBA")
    except Exception as error:  # cairosvg raises many types for odd drawings
        logger.warning("could not draw an SVG (%r): a plain tile instead", error)
        return _svg_tile(size)


def _svg_tile(size: tuple[int, int]) -> PILImage.Image:
    from PIL import ImageDraw

    tile = PILImage.new("RGBA", size, (236, 234, 228, 255))
    ImageDraw.Draw(tile).text((size[0] // 2, size[1] // 2), "SVG", fill=(80, 80, 90, 255), anchor="mm")
    return tile


def store_outputs(
    *,
    prefix: str,
    images: list[tuple[int, bytes]],
    paste_onto: tuple[bytes, bytes] | None = None,
) -> list[StoredFile]:
    """Store originals and thumbnails (and, after a masked edit, the pasted-back composite), each named
    `prefix` + index + suffix. On any failure remove what this call stored and re-raise.
    """
    stored: list[StoredFile] = []
    written: list[str] = []
    try:
        for index, answered in images:
            output = prepare(answered)
            data, image = output.data, output.still
            name = f"{prefix}{index}.{formats.extension(output.format)}"
            thumbnail_name = f"{prefix}{index}.thumb.webp"
            written.append(default_storage.save(name, ContentFile(data)))
            written.append(default_storage.save(thumbnail_name, ContentFile(make_thumbnail(image))))
            item = StoredFile(
                index=index,
                name=written[-2],
                thumbnail_name=written[-1],
                width=output.width,
                height=output.height,
                format=output.format,
                bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
            if paste_onto is not None:
                composite = paste_back(original=paste_onto[0], mask=paste_onto[1], output=image)
                encoded = io.BytesIO()
                composite.save(encoded, format="PNG", compress_level=3)
                written.append(
                    default_storage.save(f"{prefix}{index}.composite.png", ContentFile(encoded.getvalue()))
                )
                item.composite_name = written[-1]
                thumb = ContentFile(make_thumbnail(composite))
                written.append(default_storage.save(f"{prefix}{index}.composite.thumb.webp", thumb))
                item.composite_thumbnail_name = written[-1]
            stored.append(item)
    except BaseException:
        delete_files(written)
        raise
    return stored


def delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete %s", name)


def stored_names(item: StoredFile) -> list[str]:
    """Every file one stored image wrote."""
    names = (item.name, item.thumbnail_name, item.composite_name, item.composite_thumbnail_name)
    return [name for name in names if name]


def delete_prefixed(*, prefix: str) -> None:
    """Remove every file whose name starts with `prefix` (whatever a killed attempt wrote before it died).

    Lists the prefix's folder: for files whose names nobody kept.
    """
    folder, _, start = prefix.rpartition("/")
    try:
        _, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotImplementedError):
        return
    delete_files([f"{folder}/{name}" for name in files if name.startswith(start)])


def signed_url(name: str, *, content_type: str, download_name: str | None = None) -> str:
    """A short-lived URL that fetches `name` straight from the bucket (S3 storage only), answered with
    our content type, and as a download when `download_name` is given.

    The bucket's answer cannot carry our nosniff or sandbox headers; it comes from the bucket's origin,
    with the content type we name, so a file can never run as one of our pages.
    """
    parameters = {
        "ResponseContentType": content_type,
        "ResponseCacheControl": "private, max-age=86400",
        "ResponseContentDisposition": content_disposition_header(
            as_attachment=download_name is not None, filename=download_name or ""
        )
        or "inline",
    }
    return default_storage.url(name, parameters=parameters)


def converted_name(*, name: str, sha256: str, target: str) -> str:
    """Where the conversion of an original is kept: next to it, keyed by its checksum and the target.

    "projects/1/jobs/2/a1-0.png" -> "projects/1/jobs/2/a1-0.as-<first 16 of sha256>.webp". A replaced
    original has another checksum, so it never meets an old conversion; the attempt's prefix ("a1-")
    means whatever removes an attempt's files removes its conversions too.
    """
    stem = name.rsplit(".", 1)[0]
    return f"{stem}.as-{sha256[:16]}.{formats.extension(target)}"


def convert_cached(*, name: str, sha256: str, target: str) -> str:
    """The stored name of the original converted to `target`: converted once, then only served.

    The conversion itself takes a decode slot (limits.DECODES; raises limits.Busy when none is free).
    """
    cached = converted_name(name=name, sha256=sha256, target=target)
    if default_storage.exists(cached):
        return cached
    with limits.DECODES.hold():
        if default_storage.exists(cached):  # converted by another thread while this one waited
            return cached
        data = convert(name=name, target=target)
    _save_whole(cached, data)
    return cached


def _save_whole(name: str, data: bytes) -> None:
    """Store `data` at exactly `name`, so that no reader ever sees part of it.

    On local disk, write under a temporary name and rename (atomic); remote storages write an object in
    one request. If someone else stored it first, theirs is kept: both are the same conversion.
    """
    try:
        final = default_storage.path(name)
    except NotImplementedError:
        saved = default_storage.save(name, ContentFile(data))
        if saved != name:
            default_storage.delete(saved)
        return
    partial = default_storage.save(f"{name}.partial", ContentFile(data))
    os.replace(default_storage.path(partial), final)


def convert(*, name: str, target: str) -> bytes:
    """An original re-encoded as png, jpeg or webp for download (JPEG loses transparency to white).

    A GIF gives its first frame; an SVG is drawn at its own size."""
    if name.endswith(".svg"):
        with default_storage.open(name, "rb") as handle:
            clean = handle.read()  # stored sanitised
        width, height = svgsafe.dimensions(clean)
        image = rasterise_svg(clean, width=width, height=height, max_edge=4096)
    else:
        with default_storage.open(name, "rb") as handle, PILImage.open(handle) as source:
            source.seek(0)
            image = source.convert("RGBA")
    out = io.BytesIO()
    if target == "jpeg":
        flat = PILImage.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        flat.save(out, format="JPEG", quality=92)
    elif target == "webp":
        image.save(out, format="WEBP", quality=92)
    else:
        image.save(out, format="PNG", compress_level=6)
    return out.getvalue()
