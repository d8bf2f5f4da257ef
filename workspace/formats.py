"""The image formats the workspace stores and serves: the one table every module reads.

The API returns png, jpeg or webp, and on models that allow it an animated gif or an svg; uploads are
accepted only in the three still raster formats, and downloads convert to those three.
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
    # Output only (gif, svg): never an upload, an edit input or a conversion target, never streamed.
    output_only: bool = False


FORMATS: dict[str, ImageFormat] = {
    item.name: item
    for item in (
        ImageFormat("png", "PNG", "png", "image/png", "PNG", compressible=False, transparent=True),
        ImageFormat("jpeg", "JPEG", "jpg", "image/jpeg", "JPEG", compressible=True, transparent=False),
        ImageFormat("webp", "WebP", "webp", "image/webp", "WEBP", compressible=True, transparent=True),
        ImageFormat(
            "gif",
            "GIF (animated)",
            "gif",
            "image/gif",
            "GIF",
            compressible=False,
            transparent=False,
            output_only=True,
        ),
        ImageFormat(
            "svg",
            "SVG (vector)",
            "svg",
            "image/svg+xml",
            "SVG",
            compressible=False,
            transparent=False,
            output_only=True,
        ),
    )
}
NAMES = tuple(FORMATS)
# The still raster formats: what uploads, edit inputs and conversions are.
RASTER = tuple(name for name, item in FORMATS.items() if not item.output_only)
UNSTREAMABLE = tuple(name for name, item in FORMATS.items() if item.output_only)
TRANSPARENT = tuple(name for name, item in FORMATS.items() if item.transparent)
COMPRESSIBLE = tuple(name for name, item in FORMATS.items() if item.compressible)
# Pillow decodes these (uploads and stills); GIF only as an output, SVG not at all.
BY_PILLOW = {item.pillow: name for name, item in FORMATS.items() if not item.output_only}
BY_EXTENSION = {item.extension: name for name, item in FORMATS.items()} | {name: name for name in FORMATS}
CHOICES = [(name, item.label) for name, item in FORMATS.items()]


def content_type(name: str) -> str:
    return FORMATS[name].content_type


def extension(name: str) -> str:
    return FORMATS[name].extension
