"""Uploads: every image is checked, stripped of metadata and re-encoded; a refused file is named, with why.

Every file here is made on the spot with Pillow or by hand; none is committed.
"""

import functools
import hashlib
import io
import os
import struct
import zlib

import pytest
from django.core.files.uploadedfile import InMemoryUploadedFile, SimpleUploadedFile
from PIL import ExifTags, Image, ImageCms, ImageDraw, ImageFile, PngImagePlugin

from workspace import uploads
from workspace.uploads import UploadRejected, clean_mask, clean_name, clean_reference

SECRET = "SECRET-GPS"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MB = 1024 * 1024
SCRIPT = b"<html><script>alert(1)</script></html>"


# --- making files -------------------------------------------------------------------------------------------


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def picture(size=(64, 48), mode="RGB") -> Image.Image:
    """Left half red, right half blue (half transparent if there is alpha): tells a rotation from a flip."""
    image = Image.new(mode, size, "red")
    blue = (0, 0, 255, 128) if mode == "RGBA" else "blue"
    ImageDraw.Draw(image).rectangle((size[0] // 2, 0, size[0], size[1]), fill=blue)
    return image


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * len(mode)))


def crafted_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of any size, built row by row: neither this test nor Pillow holds its pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte, then the packed bits
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@functools.cache
def bomb() -> bytes:
    return crafted_png(20_000, 20_000)


def exif_with_secrets() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = f"{SECRET} description"
    exif[ExifTags.Base.Artist] = f"{SECRET} artist"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (51.0, 30.0, 12.5)
    gps[ExifTags.GPS.GPSAreaInformation] = SECRET
    return exif


def icc_with_secret() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() + SECRET.encode()


XMP = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description>{SECRET}</rdf:Description></x:xmpmeta>'


def with_all_metadata(fmt: str) -> bytes:
    image = picture()
    if fmt == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_text("Comment", f"{SECRET} comment")
        text.add_itxt("XML:com.adobe.xmp", XMP)
        return encode(image, "PNG", pnginfo=text, exif=exif_with_secrets(), icc_profile=icc_with_secret())
    params = {"exif": exif_with_secrets(), "icc_profile": icc_with_secret(), "xmp": XMP.encode()}
    if fmt == "JPEG":
        params["comment"] = f"{SECRET} comment"
    return encode(image, fmt, **params)


def rejection(call, *args, **kwargs) -> str:
    with pytest.raises(UploadRejected) as caught:
        call(*args, **kwargs)
    assert str(caught.value) == f"{caught.value.filename}: {caught.value.reason}"
    return str(caught.value)


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- good images --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mode", "expected_format", "expected_mode"),
    [
        ("PNG", "RGB", "png", "RGB"),
        ("PNG", "RGBA", "png", "RGBA"),
        ("JPEG", "RGB", "jpeg", "RGB"),
        ("WEBP", "RGB", "webp", "RGB"),
        ("WEBP", "RGBA", "webp", "RGBA"),
    ],
)
def test_it_passes_good_images_in_their_own_format(fmt, mode, expected_format, expected_mode):
    original = encode(picture((300, 200), mode), fmt)
    clean = clean_reference(upload(f"photo.{expected_format}", original))
    assert (clean.format, clean.width, clean.height) == (expected_format, 300, 200)
    out = opened(clean.data)
    assert (out.format, out.size, out.mode) == (fmt, (300, 200), expected_mode)
    if mode == "RGBA":
        assert out.getpixel((250, 100))[3] == 128
    assert clean.sha256 == hashlib.sha256(clean.data).hexdigest()
    assert clean.original_bytes == len(original)
    assert clean.original_name == f"photo.{expected_format}"


def test_it_makes_a_webp_thumbnail_no_longer_than_512_that_keeps_alpha():
    clean = clean_reference(upload("wide.png", encode(picture((2048, 1024), "RGBA"), "PNG")))
    thumb = opened(clean.thumbnail)
    assert (thumb.format, thumb.size, thumb.mode) == ("WEBP", (512, 256), "RGBA")
    assert thumb.getpixel((400, 128))[3] == 128
    small = opened(clean_reference(upload("small.png", encode(picture((40, 30)), "PNG"))).thumbnail)
    assert small.size == (40, 30)  # never enlarged


@pytest.mark.parametrize(
    ("mode", "fmt", "params", "expected_mode"),
    [
        ("P", "PNG", {}, "RGB"),
        ("P", "PNG", {"transparency": 0}, "RGBA"),
        ("LA", "PNG", {}, "RGBA"),
        ("L", "PNG", {}, "RGB"),
        ("L", "PNG", {"transparency": 0}, "RGBA"),
        ("1", "PNG", {}, "RGB"),
        ("CMYK", "JPEG", {}, "RGB"),
        ("L", "JPEG", {}, "RGB"),
    ],
)
def test_it_converts_every_colour_mode_to_rgb_or_rgba(mode, fmt, params, expected_mode):
    clean = clean_reference(upload(f"{mode}.img", encode(picture(mode=mode), fmt, **params)))
    assert opened(clean.data).mode == expected_mode


def test_it_scales_16_bit_grey_down_to_8_bits_instead_of_clipping_it():
    grey = Image.new("I;16", (4, 1))
    grey.putdata([0, 256, 32768, 65535])
    out = opened(clean_reference(upload("scan.png", encode(grey, "PNG"))).data)
    assert [out.getpixel((x, 0))[0] for x in range(4)] == [0, 1, 128, 255]
    out = opened(clean_reference(upload("scan.png", encode(grey, "PNG", transparency=256))).data)
    assert [out.getpixel((x, 0))[3] for x in range(4)] == [255, 0, 255, 255]  # its transparent grey stays so


def test_it_stands_a_phone_photo_the_right_way_up():
    # Orientation 6: the stored pixels must be turned 90° clockwise to be seen as taken.
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    original = encode(picture((60, 40)), "JPEG", exif=exif)
    clean = clean_reference(upload("phone.jpg", original))
    assert (clean.width, clean.height) == (40, 60)
    out = opened(clean.data)
    assert out.getpixel((20, 5))[0] > 200 > out.getpixel((20, 5))[2]  # the red left half is now on top
    assert out.getpixel((20, 55))[2] > 200 > out.getpixel((20, 55))[0]
    assert ExifTags.Base.Orientation not in out.getexif()  # or a viewer would turn it a second time


@pytest.mark.parametrize(
    ("fmt", "name"), [("MPO", "portrait.jpg"), ("PNG", "moving.png"), ("WEBP", "moving.webp")]
)
def test_it_keeps_only_the_first_picture_of_a_multi_picture_or_animated_file(fmt, name):
    red, blue = Image.new("RGB", (64, 48), "red"), Image.new("RGB", (64, 48), "blue")
    original = encode(red, fmt, save_all=True, append_images=[blue])
    clean = clean_reference(upload(name, original))
    out = opened(clean.data)
    assert getattr(out, "n_frames", 1) == 1
    assert out.getpixel((5, 5))[0] > 200 > out.getpixel((5, 5))[2]
    assert out.format == {"MPO": "JPEG"}.get(fmt, fmt)  # a plain JPEG: the second picture is gone


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_it_strips_exif_gps_xmp_icc_comments_and_text_chunks(fmt):
    original = with_all_metadata(fmt)
    assert original.count(SECRET.encode()) >= 3  # the test file really carries them
    carried = {"PNG": {"Comment", "XML:com.adobe.xmp"}, "JPEG": {"comment", "xmp"}, "WEBP": {"xmp"}}[fmt]
    with Image.open(io.BytesIO(original)) as source:
        assert {"icc_profile", "exif", *carried} <= set(source.info)
        assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    clean = clean_reference(upload(f"secret.{fmt.lower()}", original))
    assert SECRET.encode() not in clean.data
    assert SECRET.encode() not in clean.thumbnail
    out = opened(clean.data)
    for key in ("exif", "icc_profile", "xmp", "comment", "Comment", "XML:com.adobe.xmp"):
        assert key not in out.info
    assert len(out.getexif()) == 0
    assert not out.getexif().get_ifd(ExifTags.IFD.GPSInfo)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_it_drops_html_appended_after_the_image_data(fmt):
    original = encode(picture(), fmt) + SCRIPT
    with Image.open(io.BytesIO(original)) as source:
        source.verify()  # Pillow alone is happy with it
    clean = clean_reference(upload(f"polyglot.{fmt.lower()}", original))
    assert b"<script" not in clean.data
    assert opened(clean.data).size == (64, 48)


@pytest.mark.parametrize("payload", [SCRIPT, b"PK\x03\x04" + bytes(40), b"\0"])
def test_it_refuses_a_png_with_anything_after_its_last_chunk(payload):
    original = encode(picture(), "PNG") + payload
    with Image.open(io.BytesIO(original)) as source:
        source.verify()  # Pillow alone is happy with it
    expected = f"polyglot.png: {uploads.PNG_TRAILING_DATA}"
    assert rejection(clean_reference, upload("polyglot.png", original)) == expected
    assert rejection(clean_mask, upload("polyglot.png", original), width=64, height=48) == expected


def test_it_takes_a_size_limit_from_settings_or_the_caller(settings):
    settings.REFERENCE_MAX_BYTES = MB
    big = encode(noise((1024, 1024)), "PNG")  # about 3 MB of noise
    assert rejection(clean_reference, upload("big.png", big)).startswith("big.png: this file is 3.")
    assert rejection(clean_reference, upload("big.png", big)).endswith("; the limit is 1 MB.")
    assert clean_reference(upload("big.png", big), max_bytes=4 * MB).width == 1024


# --- refused files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("notes.png", b"Shopping list: lemons, a blue table\n", uploads.NOT_AN_IMAGE),
        (
            "page.png",
            b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
            uploads.NOT_AN_IMAGE,
        ),
        ("brief.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n", uploads.NOT_AN_IMAGE),
        ("archive.png", b"PK\x03\x04" + bytes(100), uploads.NOT_AN_IMAGE),
        ("bitmap.bmp", encode(picture(), "BMP"), uploads.NOT_AN_IMAGE),
        ("scan.tiff", encode(picture(), "TIFF"), uploads.NOT_AN_IMAGE),
        ("spinner.gif", encode(picture(), "GIF"), uploads.GIF_NOT_SUPPORTED),
        (
            "logo.svg",
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            uploads.SVG_NOT_SUPPORTED,
        ),
        (
            "logo.png",
            b'\xef\xbb\xbf  <svg xmlns="http://www.w3.org/2000/svg" width="10"/>',
            uploads.SVG_NOT_SUPPORTED,
        ),
    ],
)
def test_it_refuses_what_is_not_a_png_jpeg_or_webp(name, data, reason):
    assert rejection(clean_reference, upload(name, data)) == f"{name}: {reason}"


def test_it_refuses_an_empty_file():
    assert rejection(clean_reference, upload("empty.png", b"")) == "empty.png: this file is empty."


def truncated(fmt: str) -> bytes:
    data = encode(noise((128, 128)), fmt)
    return data[: len(data) // 2]


def corrupted_png() -> bytes:
    data = bytearray(encode(noise((128, 128)), "PNG"))
    data[len(data) // 2] ^= 0xFF  # inside the image data: its checksum no longer matches
    return bytes(data)


def bad_checksum_png() -> bytes:
    data = bytearray(encode(noise((64, 64)), "PNG"))
    data[data.rindex(b"IEND") - 5] ^= 0xFF  # the image data's checksum: decoding alone would not notice
    return bytes(data)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("half.png", lambda: truncated("PNG")),
        ("checksum.png", bad_checksum_png),
        ("half.jpg", lambda: truncated("JPEG")),
        ("half.webp", lambda: truncated("WEBP")),
        ("flipped.png", corrupted_png),
        ("signature-only.png", lambda: PNG_SIGNATURE),
        ("header-only.jpg", lambda: b"\xff\xd8\xff\xe0" + bytes(20)),
    ],
)
def test_it_refuses_damaged_and_truncated_images(name, make):
    expected = f"{name}: this image is damaged or incomplete."
    assert rejection(clean_reference, upload(name, make())) == expected


def test_it_refuses_to_run_if_pillow_was_told_to_accept_truncated_images(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        clean_reference(upload("half.png", truncated("PNG")))


def test_it_refuses_a_decompression_bomb_from_its_header_alone(monkeypatch):
    data = bomb()
    assert len(data) < 100_000  # 400 megapixels in a few KB
    with pytest.raises(Image.DecompressionBombError):  # Pillow's own check raises without the size
        Image.open(io.BytesIO(data))
    limit = Image.MAX_IMAGE_PIXELS

    def no_decoding(*args, **kwargs):
        raise AssertionError("the bomb was handed to the decoder")

    monkeypatch.setattr(Image, "open", no_decoding)
    message = rejection(clean_reference, upload("bomb.png", data))
    assert message == "bomb.png: this image is 20000 × 20000 pixels; the limit is 40 megapixels."
    assert limit == Image.MAX_IMAGE_PIXELS  # Pillow's global setting is left alone


@pytest.mark.parametrize(
    ("width", "height", "reason"),
    [
        (8000, 8000, "this image is 8000 × 8000 pixels; the limit is 40 megapixels."),  # under Pillow's limit
        (16_385, 16, "this image is 16385 × 16 pixels; no side may be longer than 16384 pixels."),
    ],
)
def test_it_refuses_too_many_pixels_and_absurd_edges(width, height, reason):
    assert rejection(clean_reference, upload("big.png", crafted_png(width, height))) == f"big.png: {reason}"


def png_header_only(width: int, height: int, depth: int, colour: int) -> bytes:
    """A PNG header promising width x height at `depth` bits, a tiny IDAT: a bomb that allocates nothing."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("width", "height", "depth", "colour", "megabytes"),
    [
        (6000, 6000, 16, 6, 288),  # 16-bit RGBA, 36 MP: under the pixel cap, twice the memory
        (6000, 5000, 16, 2, 180),  # 16-bit RGB
        (6000, 6000, 16, 0, 216),  # 16-bit grey: 2 bytes, then 4 more while it is narrowed to 8 bits
    ],
)
def test_it_refuses_what_would_need_more_than_160_mb_to_open_from_the_header_alone(
    monkeypatch, width, height, depth, colour, megabytes
):
    data = png_header_only(width, height, depth, colour)
    assert len(data) < 200
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: pytest.fail("handed to Pillow"))
    expected = (
        f"deep.png: this image would need {megabytes} MB of memory to open; the limit is 160 MB. "
        "Save it as an 8-bit PNG or JPEG."
    )
    assert rejection(clean_reference, upload("deep.png", data)) == expected
    assert rejection(clean_mask, upload("deep.png", data), width=width, height=height) == expected


def test_the_memory_budget_counts_bands_and_bit_depth():
    budget = uploads.MAX_DECODED_BYTES
    assert budget == 160_000_000
    # 40 MP of 8-bit RGBA is exactly the budget; 20 MP at 16 bits is too; one more pixel row is over.
    assert uploads.decoded_bytes("PNG", png_header_only(8000, 5000, 8, 6), "RGBA", 8000, 5000) == budget
    assert uploads.decoded_bytes("PNG", png_header_only(5000, 4000, 16, 6), "RGBA", 5000, 4000) == budget
    assert uploads.decoded_bytes("PNG", png_header_only(5000, 4001, 16, 6), "RGBA", 5000, 4001) > budget
    assert uploads.decoded_bytes("PNG", png_header_only(10, 10, 16, 4), "LA", 10, 10) == 400  # grey + alpha
    assert uploads.decoded_bytes("PNG", png_header_only(10, 10, 8, 3), "P", 10, 10) == 100  # palette
    assert uploads.decoded_bytes("JPEG", b"", "CMYK", 10, 10) == 400
    assert uploads.decoded_bytes("JPEG", b"", "L", 10, 10) == 100
    assert uploads.decoded_bytes("WEBP", b"", "RGB", 10, 10) == 300


def test_it_refuses_a_jpeg_with_hundreds_of_progressive_scans():
    progressive = encode(noise((64, 64)), "JPEG", progressive=True)
    assert clean_reference(upload("ordinary.jpg", progressive)).format == "jpeg"  # ten scans or so is normal
    last_scan = progressive[progressive.rindex(b"\xff\xda") : -2]
    slow = progressive[:-2] + last_scan * 150 + b"\xff\xd9"
    expected = f"slow.jpg: {uploads.JPEG_TOO_MANY_SCANS}"
    assert rejection(clean_reference, upload("slow.jpg", slow)) == expected


class Stream:
    """An upload without a trustworthy size that would go on for ever: counts what is read from it."""

    name = "stream.png"

    def __init__(self, size=None):
        self.size = size
        self.read_bytes = 0
        self.chunk = PNG_SIGNATURE + bytes(uploads.READ_CHUNK - len(PNG_SIGNATURE))

    def read(self, size=-1):
        assert 0 < size <= len(self.chunk), "read everything at once"
        assert self.read_bytes < 60 * MB, "kept reading far past the limit"
        self.read_bytes += size
        return self.chunk[:size]


def test_it_refuses_a_60_mb_file_from_its_size_without_reading_it(monkeypatch):
    buffer = io.BytesIO()
    buffer.write(PNG_SIGNATURE)
    buffer.seek(60 * MB - 1)
    buffer.write(b"\0")  # 60 MB, allocated once
    buffer.seek(0)
    huge = InMemoryUploadedFile(buffer, "reference", "huge.png", "image/png", 60 * MB, None)
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: pytest.fail("handed to Pillow"))
    message = rejection(clean_reference, huge)
    assert message == "huge.png: this file is 60.0 MB; the limit is 50 MB."
    assert buffer.tell() == 0


@pytest.mark.parametrize("declared_size", [None, 1000])
def test_it_stops_reading_an_endless_upload_just_past_the_limit(monkeypatch, declared_size):
    stream = Stream(size=declared_size)
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: pytest.fail("handed to Pillow"))
    message = rejection(clean_reference, stream)
    assert message == "stream.png: this file is more than 50 MB; the limit is 50 MB."
    assert 50 * MB < stream.read_bytes <= 50 * MB + uploads.READ_CHUNK


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("logo.png", "logo.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ann\\Desktop\\logo final.png", "logo final.png"),
        ("bad\x00name\r\n.png", "badname.png"),
        ("invoice\u202egnp.exe", "invoicegnp.exe"),  # the right-to-left override that fakes an extension
        ("  spaced.png  ", "spaced.png"),
        ("=cmd|' /C calc'!A0.png", "C calc'!A0.png"),  # a slash: the rest was a folder
        ("=1+2.png", "1+2.png"),  # no formula when an export reaches a spreadsheet
        ("+-@= =SUM(A1).png", "SUM(A1).png"),
        ("=", "upload"),
        ("", "upload"),
        (None, "upload"),
        ("..", "upload"),
        ("dir/", "upload"),
        (b"caf\xc3\xa9.png", "café.png"),
        ("a" * 300 + ".jpeg", "a" * 115 + ".jpeg"),
        ("b" * 300, "b" * 120),
    ],
)
def test_it_sanitises_the_display_name(raw, expected):
    assert clean_name(raw) == expected


def test_the_display_name_in_results_and_messages_is_the_sanitised_one():
    class Named:
        name = "C:\\fakepath\\evil\x1b[31m.png"

        def read(self, size=-1):
            return b""

    assert rejection(clean_reference, Named()) == "evil[31m.png: this file is empty."


def test_a_rejection_survives_pickling():
    import pickle

    pickled = pickle.dumps(UploadRejected("logo.png", uploads.NOT_AN_IMAGE))
    error = pickle.loads(pickled)  # noqa: S301 - our own bytes
    assert (error.filename, error.reason, str(error)) == (
        "logo.png",
        uploads.NOT_AN_IMAGE,
        f"logo.png: {uploads.NOT_AN_IMAGE}",
    )


# --- masks --------------------------------------------------------------------------------------------------


def mask(size=(64, 48), hole_alpha=0, mode="RGBA") -> Image.Image:
    image = Image.new(mode, size, (0, 0, 0, 255) if mode == "RGBA" else 0)
    ImageDraw.Draw(image).rectangle((10, 10, 30, 30), fill=(0, 0, 0, hole_alpha) if mode == "RGBA" else 0)
    return image


def test_it_passes_a_good_mask_as_an_rgba_png():
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", SECRET)
    clean = clean_mask(upload("mask.png", encode(mask(), "PNG", pnginfo=text)), width=64, height=48)
    out = opened(clean.data)
    assert (clean.format, clean.width, clean.height) == ("png", 64, 48)
    assert (out.format, out.mode) == ("PNG", "RGBA")
    assert out.getpixel((20, 20))[3] == 0 and out.getpixel((50, 40))[3] == 255
    assert SECRET.encode() not in clean.data


def test_it_turns_a_palette_mask_with_transparency_into_rgba():
    clean = clean_mask(upload("mask.png", encode(mask(mode="P"), "PNG", transparency=0)), width=64, height=48)
    assert opened(clean.data).mode == "RGBA"


def test_it_refuses_a_mask_of_the_wrong_size():
    message = rejection(
        clean_mask, upload("mask.png", encode(mask((512, 512)), "PNG")), width=1024, height=1536
    )
    assert message == (
        "mask.png: this mask is 512 × 512 pixels but the image being edited is 1024 × 1536; they must match."
    )


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("opaque.png", encode(picture(), "PNG")),  # no alpha channel at all
        ("translucent.png", encode(mask(hole_alpha=128), "PNG")),  # alpha, but nothing fully transparent
    ],
)
def test_it_refuses_a_mask_with_nothing_transparent(name, data):
    expected = f"{name}: this mask has no transparent area: paint or erase where the image should change."
    assert rejection(clean_mask, upload(name, data), width=64, height=48) == expected


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("mask.jpg", encode(picture(), "JPEG")),
        ("mask.webp", encode(mask(), "WEBP")),
        ("mask.gif", encode(picture(), "GIF")),
        ("mask.png", b"not an image at all"),
    ],
)
def test_it_refuses_a_mask_that_is_not_a_png(name, data):
    expected = f"{name}: a mask must be a PNG with transparency."
    assert rejection(clean_mask, upload(name, data), width=64, height=48) == expected


def test_it_refuses_a_mask_that_stays_too_big_once_compressed():
    busy = noise((512, 512), "RGBA")
    busy.putpixel((0, 0), (0, 0, 0, 0))
    message = rejection(
        clean_mask, upload("busy.png", encode(busy, "PNG")), width=512, height=512, max_bytes=MB // 4
    )
    assert message.startswith("busy.png: this mask is 1.")
    assert message.endswith(" MB even when compressed; the limit is 0.25 MB.")


def test_it_refuses_mask_bombs_and_damage_like_references():
    message = rejection(clean_mask, upload("bomb.png", bomb()), width=1024, height=1024)
    assert message == "bomb.png: this image is 20000 × 20000 pixels; the limit is 40 megapixels."
    message = rejection(clean_mask, upload("half.png", truncated("PNG")), width=128, height=128)
    assert message == "half.png: this image is damaged or incomplete."
