"""Uploaded reference images and masks: checked, stripped of metadata, re-encoded before anything is stored.

Nothing about an upload is trusted. The byte cap is enforced while reading; the format comes from the magic
bytes, never the name; the dimensions, and the memory they need at the file's bit depth, are checked from
the header before a single pixel is decoded; the pixels are then decoded in full, one image at a time or
two per process (limits.DECODES), (so a damaged file is refused here, not later) and copied into a new image,
which is what gets encoded: EXIF (GPS), XMP, ICC profiles, comments, text chunks and anything appended after
the image data cannot survive, because none of it is ever handed to the encoder.

Pillow's global settings (MAX_IMAGE_PIXELS, LOAD_TRUNCATED_IMAGES) are read, never changed: other code in
the process shares them.
"""

import contextlib
import hashlib
import io
import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

from workspace import formats, limits

MB = 1024 * 1024
DEFAULT_REFERENCE_MAX_BYTES = 50 * MB  # the API's own limit for an input image
MASK_MAX_BYTES = 4 * MB  # the API's limit for a mask
# Far above anything the API can use (its largest output is 8.3 MP), yet a 40 MP RGBA image is 160 MB of
# memory per copy: the ceiling that keeps a worker alive whatever is uploaded.
MAX_PIXELS = 40_000_000
MAX_EDGE = 16_384
# Everything ends up 8-bit RGB or RGBA, so 40 MP at 4 bytes a pixel is the memory any upload may take. A
# 16-bit file is counted at its own depth (8 bytes a pixel for RGBA): 36 MP of it would need 288 MB. Pillow
# narrows 16-bit colour row by row today, but the budget does not depend on how a decoder does it.
MAX_DECODED_BYTES = MAX_PIXELS * 4
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # IHDR colour type: grey, RGB, palette, grey+alpha, RGBA
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3}
_BYTES_PER_PIXEL |= {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4, "RGBA": 4, "CMYK": 4}
# A progressive JPEG re-reads every block once per scan; real files have about ten scans, while a crafted
# file can hold a million tiny ones and keep a worker busy for hours (libjpeg-turbo has no default limit).
MAX_JPEG_SCANS = 100
READ_CHUNK = 256 * 1024
NAME_MAX_CHARS = 120

NOT_AN_IMAGE = "this is not a PNG, JPEG or WebP image."
GIF_NOT_SUPPORTED = "GIF is not supported; use PNG, JPEG or WebP."
SVG_NOT_SUPPORTED = "SVG is not supported; export it as PNG."
EMPTY = "this file is empty."
DAMAGED = "this image is damaged or incomplete."
JPEG_TOO_MANY_SCANS = "this JPEG is built in an unusual way that is slow to open; save it again and retry."
MASK_NOT_PNG = "a mask must be a PNG with transparency."
PNG_TRAILING_DATA = (
    "this PNG carries other data after the image (another file hidden inside it); export it again as a "
    "plain PNG."
)
MASK_NOT_TRANSPARENT = "this mask has no transparent area: paint or erase where the image should change."
MARKUP_NOT_PNG = "a markup must be a PNG with transparency."
MARKUP_NOT_TRANSPARENT = "this markup has no transparent area: it is laid over the image, so leave it clear."
MARKUP_EMPTY = "this markup is empty: draw a circle, an arrow or a label first."

_SIGNATURES = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}
# Pillow's own header parsers, called directly. Image.open() runs Pillow's global decompression-bomb check
# first, which above ~179 MP raises without telling us the dimensions; these read the header only.
_HEADER_READERS = {
    "PNG": PngImagePlugin.PngImageFile,
    "JPEG": JpegImagePlugin.JpegImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
}
_SIXTEEN_BIT_GREY = ("I", "I;16", "I;16B", "I;16L", "I;16N")


class Upload(Protocol):
    name: str | None

    def read(self, size: int = -1, /) -> bytes: ...


class UploadRejected(ValueError):
    """A refused upload; the message names the file and says, in plain words, why and what to do."""

    def __init__(self, filename: str, reason: str):
        super().__init__(f"{filename}: {reason}")
        self.filename = filename
        self.reason = reason

    def __reduce__(self):  # so the exception survives pickling (e.g. across a process pool)
        return (type(self), (self.filename, self.reason))


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    format: str
    width: int
    height: int
    thumbnail: bytes
    sha256: str
    original_name: str
    original_bytes: int


def clean_reference(upload: Upload, *, max_bytes: int | None = None) -> CleanImage:
    """Check and re-encode a reference image; PNG, JPEG and WebP each stay in their own format."""
    limit = max_bytes if max_bytes is not None else _reference_limit()
    name, data = _receive(upload, limit)
    fmt = sniff(data)
    if fmt is None:
        raise UploadRejected(name, _why_not_an_image(data))
    _check_header(name, data, fmt)
    with limits.DECODES.hold():  # raises limits.Busy when the process is decoding enough already
        image = _pixels_only(_normalised(_decode(name, data, fmt)))
        encoded = _encode(image, fmt)
        if len(encoded) > limit:  # e.g. 40 MP of noise: what is stored and sent on must fit the same limit
            raise UploadRejected(
                name, f"once cleaned, this image is {_size(len(encoded))}; the limit is {_limit(limit)}."
            )
        return _result(name, data, image, encoded, formats.BY_PILLOW[fmt])


def clean_mask(upload: Upload, *, width: int, height: int, max_bytes: int = MASK_MAX_BYTES) -> CleanImage:
    """Check and re-encode an edit mask: a PNG of exactly width by height with some fully transparent pixels.

    max_bytes bounds the re-encoded mask (the API's limit); the upload itself may be as large as a reference,
    since a mask saved without compression shrinks a lot when re-encoded.
    """
    name, data = _receive(upload, _reference_limit())
    if sniff(data) != "PNG":
        raise UploadRejected(name, MASK_NOT_PNG)
    _check_header(name, data, "PNG")
    with limits.DECODES.hold():
        return _clean_mask_pixels(name, data, width=width, height=height, max_bytes=max_bytes)


def clean_markup(upload: Upload, *, width: int, height: int) -> CleanImage:
    """Check and re-encode an edit's markup: a PNG of exactly the first input's size, transparent where
    nothing is drawn and with something drawn (circles, arrows, labels guiding the edit)."""
    name, data = _receive(upload, _reference_limit())
    if sniff(data) != "PNG":
        raise UploadRejected(name, MARKUP_NOT_PNG)
    _check_header(name, data, "PNG")
    with limits.DECODES.hold():
        return _clean_mask_pixels(
            name, data, width=width, height=height, max_bytes=_reference_limit(), what="markup"
        )


def _clean_mask_pixels(
    name: str, data: bytes, *, width: int, height: int, max_bytes: int, what: str = "mask"
) -> CleanImage:
    image = _normalised(_decode(name, data, "PNG"))
    if image.size != (width, height):
        raise UploadRejected(
            name,
            f"this {what} is {image.width} × {image.height} pixels but the image being edited is "
            f"{width} × {height}; they must match.",
        )
    # Only alpha 0 tells the API where to paint; an opaque or merely translucent mask changes nothing.
    # A markup must be see-through too: it is laid over the image.
    if image.mode != "RGBA" or image.getchannel("A").getextrema()[0] != 0:
        raise UploadRejected(name, MASK_NOT_TRANSPARENT if what == "mask" else MARKUP_NOT_TRANSPARENT)
    if what == "markup" and image.getchannel("A").getextrema()[1] == 0:
        raise UploadRejected(name, MARKUP_EMPTY)
    image = _pixels_only(image)
    encoded = _encode(image, "PNG", optimize=True)
    if len(encoded) >= max_bytes:  # the API wants "less than 4 MB"
        raise UploadRejected(
            name,
            f"this {what} is {_size(len(encoded))} even when compressed; the limit is {_limit(max_bytes)}.",
        )
    return _result(name, data, image, encoded, "png")


def clean_name(raw: object) -> str:
    """A display name: the last path component, no control or invisible characters, at most 120 chars."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw if isinstance(raw, str) else ""
    # Category C covers control, format (e.g. right-to-left override, used to fake extensions) and
    # unassigned characters; line and paragraph separators break logs and some JavaScript contexts.
    text = "".join(ch for ch in unicodedata.normalize("NFC", text) if unicodedata.category(ch)[0] != "C")
    text = re.split(r"[/\\\u2028\u2029]", text)[-1].strip()
    # A name that starts like a spreadsheet formula ("=cmd|' /C calc'!A0") runs as one when an export is
    # opened in a spreadsheet: those leading characters go.
    text = text.lstrip("=+-@ ")
    if text in ("", ".", ".."):
        return "upload"
    if len(text) > NAME_MAX_CHARS:
        stem, dot, ext = text.rpartition(".")
        keep_ext = bool(stem and dot) and 0 < len(ext) <= 10
        text = f"{stem[: NAME_MAX_CHARS - len(ext) - 1]}.{ext}" if keep_ext else text[:NAME_MAX_CHARS]
    return text


def _reference_limit() -> int:
    return getattr(settings, "REFERENCE_MAX_BYTES", DEFAULT_REFERENCE_MAX_BYTES)


def _receive(upload: Upload, limit: int) -> tuple[str, bytes]:
    """Read the upload, refusing as soon as it is known to be over the limit: at most one chunk past it."""
    name = clean_name(getattr(upload, "name", None))
    declared = getattr(upload, "size", None)
    if isinstance(declared, int) and declared > limit:
        raise UploadRejected(name, f"this file is {_size(declared)}; the limit is {_limit(limit)}.")
    buffer = io.BytesIO()
    for chunk in _chunks(upload):
        buffer.write(chunk)
        if buffer.tell() > limit:  # the declared size was missing or wrong; stop reading now
            cap = _limit(limit)
            raise UploadRejected(name, f"this file is more than {cap}; the limit is {cap}.")
    data = buffer.getvalue()  # hands over BytesIO's buffer without a copy
    if not data:
        raise UploadRejected(name, EMPTY)
    return name, data


def _chunks(upload: Upload) -> Iterator[bytes]:
    if callable(getattr(upload, "chunks", None)):  # Django's UploadedFile: rewinds, reads from memory or disk
        yield from upload.chunks(READ_CHUNK)  # type: ignore[attr-defined]
        return
    while chunk := upload.read(READ_CHUNK):
        yield chunk


def sniff(data: bytes) -> str | None:
    """PNG, JPEG or WEBP from the magic bytes, without decoding; None for anything else."""
    for fmt, signature in _SIGNATURES.items():
        if data.startswith(signature):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _why_not_an_image(data: bytes) -> str:
    if data.startswith((b"GIF87a", b"GIF89a")):
        return GIF_NOT_SUPPORTED
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<?xml", b"<svg", b"<!doctype svg", b"<!--")) and b"<svg" in head:
        return SVG_NOT_SUPPORTED
    return NOT_AN_IMAGE


def decoded_bytes(fmt: str, data: bytes, mode: str, width: int, height: int) -> int:
    """Memory the pixels take once opened (for 16-bit grey, while narrowed to 8 bits), from the header."""
    if fmt == "PNG" and len(data) >= 26:  # IHDR's bit depth and colour type, at fixed offsets
        depth, colour = data[24], data[25]
        per_pixel = _PNG_CHANNELS.get(colour, 4) * (2 if depth == 16 else 1)
    else:
        per_pixel = _BYTES_PER_PIXEL.get(mode, 4)
    if mode in _SIXTEEN_BIT_GREY:
        per_pixel += 4  # _normalised widens it to 32-bit "I" to scale it down
    return width * height * per_pixel


def _check_header(name: str, data: bytes, fmt: str) -> None:
    """Refuse from the header alone: damaged, too many pixels, absurd edges, too much memory, slow JPEGs."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone switched Pillow to silently fill in missing data, process-wide; damaged files would pass.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; uploads cannot be checked safely")
    try:
        with _HEADER_READERS[fmt](io.BytesIO(data)) as header:
            width, height = header.size
            mode = header.mode
    except Exception as error:  # Pillow raises many types (SyntaxError, OSError, struct.error...) on bad data
        raise UploadRejected(name, DAMAGED) from error
    if width * height > MAX_PIXELS:
        megapixels = f"{MAX_PIXELS / 1_000_000:g} megapixels"
        raise UploadRejected(name, f"this image is {width} × {height} pixels; the limit is {megapixels}.")
    if max(width, height) > MAX_EDGE:
        raise UploadRejected(
            name, f"this image is {width} × {height} pixels; no side may be longer than {MAX_EDGE} pixels."
        )
    need = decoded_bytes(fmt, data, mode, width, height)
    if need > MAX_DECODED_BYTES:
        raise UploadRejected(
            name,
            f"this image would need {math.ceil(need / 1_000_000)} MB of memory to open; the limit is "
            f"{MAX_DECODED_BYTES // 1_000_000} MB. Save it as an 8-bit PNG or JPEG.",
        )
    if fmt == "JPEG" and data.count(b"\xff\xda") > MAX_JPEG_SCANS:  # each scan starts with an SOS marker
        raise UploadRejected(name, JPEG_TOO_MANY_SCANS)
    if fmt == "PNG" and (end := _png_end(data)) is not None and end < len(data):
        # A polyglot (a ZIP, a page, a script after IEND). Re-encoding would drop it, but nothing a PNG tool
        # writes ends like this, so it is refused. JPEGs are different: phones append data after the image.
        raise UploadRejected(name, PNG_TRAILING_DATA)


def _png_end(data: bytes) -> int | None:
    """Where the IEND chunk ends, walking the chunk lengths (no decoding); None if there is none."""
    position = len(_SIGNATURES["PNG"])
    while position + 12 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        position += 12 + length  # length, type, data, CRC
        if kind == b"IEND":
            return position
    return None


def _decode(name: str, data: bytes, fmt: str) -> Image.Image:
    """Verify, then decode every pixel, upright; _check_header has passed the header already."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; uploads cannot be checked safely")
    try:
        # verify() checks structure and checksums but leaves the image unusable: decode from a fresh handle.
        with Image.open(io.BytesIO(data), formats=[fmt]) as probe:
            probe.verify()
        image = Image.open(io.BytesIO(data), formats=[fmt])
        image.load()  # the first frame only, for an animated PNG or WebP
    except Exception as error:
        raise UploadRejected(name, DAMAGED) from error
    # A phone photo stands the right way up. A broken EXIF block only costs the rotation: the pixels are fine.
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(image, in_place=True)
    return image


def _normalised(image: Image.Image) -> Image.Image:
    """8-bit RGB, or RGBA if the image has any transparency (alpha channel, palette or tRNS)."""
    if image.mode in _SIXTEEN_BIT_GREY:
        # convert("L") clips 16-bit values at 255 (almost everything turns white), and drops a transparent
        # grey level: scale through a table instead, and turn that level into an alpha channel.
        wide = image.convert("I")
        grey = wide.point([value >> 8 for value in range(65536)], "L")
        transparent = image.info.get("transparency")
        if not isinstance(transparent, int):
            return grey.convert("RGB")
        alpha = wide.point([0 if value == transparent else 255 for value in range(65536)], "L")
        return Image.merge("LA", (grey, alpha)).convert("RGBA")
    target = "RGBA" if image.has_transparency_data else "RGB"
    return image if image.mode == target else image.convert(target)  # CMYK, P, L, LA, 1 and the rest


def _pixels_only(image: Image.Image) -> Image.Image:
    # A new image carries no info dict, so no EXIF, XMP, ICC profile, comment or text chunk can reach the
    # encoder (JPEG's save(), for one, copies a comment from info unless told otherwise).
    clean = Image.new(image.mode, image.size)
    clean.paste(image)
    return clean


def _encode(image: Image.Image, fmt: str, *, optimize: bool = False) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        image.save(out, format="JPEG", quality=92)
    elif fmt == "WEBP":
        image.save(out, format="WEBP", quality=90)
    elif optimize:
        image.save(out, format="PNG", optimize=True)  # masks: squeeze under the API's 4 MB
    else:
        # zlib level 3: about 3x faster than the default 6 for files 6-22 % larger; uploads are interactive.
        image.save(out, format="PNG", compress_level=3)
    return out.getvalue()


def _result(name: str, original: bytes, image: Image.Image, encoded: bytes, fmt: str) -> CleanImage:
    width, height = image.size
    # In place: the full-size image is not needed any more, and a copy of 12 MP costs more than the resize.
    image.thumbnail((settings.THUMBNAIL_MAX_EDGE, settings.THUMBNAIL_MAX_EDGE), Image.Resampling.LANCZOS)
    thumbnail = io.BytesIO()
    image.save(thumbnail, format="WEBP", quality=80, method=3)
    return CleanImage(
        data=encoded,
        format=fmt,
        width=width,
        height=height,
        thumbnail=thumbnail.getvalue(),
        sha256=hashlib.sha256(encoded).hexdigest(),
        original_name=name,
        original_bytes=len(original),
    )


def _size(n: int) -> str:
    return f"{math.ceil(n * 10 / MB) / 10:.1f} MB"  # rounded up, so 50 MB and a byte never reads "50.0 MB"


def _limit(n: int) -> str:
    return f"{n / MB:g} MB"
