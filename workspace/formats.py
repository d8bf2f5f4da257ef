"""The image formats the workspace stores and serves: the one table every module reads.

The API returns png, jpeg or webp; uploads are accepted in the same three; downloads convert between them.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageFormat:
    name: str  # what the API and our rows call it (Job.output_format, Image.format)
    label: str
    extension: str  # for file names: jpeg is .jpg
    content_type: str
    pillow: str  # Image.format as Pillow reports it
    compressible: bool  # takes output_compression
    transparent: bool  # can carry an alpha channel (background=transparent)


FORMATS: dict[str, ImageFormat] = {
    item.name: item
    for item in (
        ImageFormat("png", "PNG", "png", "image/png", "PNG", compressible=False, transparent=True),
        ImageFormat("jpeg", "JPEG", "jpg", "image/jpeg", "JPEG", compressible=True, transparent=False),
        ImageFormat("webp", "WebP", "webp", "image/webp", "WEBP", compressible=True, transparent=True),
    )
}
NAMES = tuple(FORMATS)
TRANSPARENT = tuple(name for name, item in FORMATS.items() if item.transparent)
COMPRESSIBLE = tuple(name for name, item in FORMATS.items() if item.compressible)
BY_PILLOW = {item.pillow: name for name, item in FORMATS.items()}
BY_EXTENSION = {item.extension: name for name, item in FORMATS.items()} | {name: name for name in FORMATS}
CHOICES = [(name, item.label) for name, item in FORMATS.items()]


def content_type(name: str) -> str:
    return FORMATS[name].content_type


def extension(name: str) -> str:
    return FORMATS[name].extension
