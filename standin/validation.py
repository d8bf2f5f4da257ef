"""Checking a request the way the real endpoints do, and resolving it into an ``ImageJob``."""

import io
import math
import re
from dataclasses import dataclass
from typing import Any

from PIL import Image

from standin.capabilities import (
    ACCEPTED_IMAGE_TYPES,
    BASE_QUALITIES,
    DEFAULT_EDIT_MODEL,
    EDIT_PARAMS,
    GENERATION_PARAMS,
    HOSTILE_SVG_MARKER,
    MAX_CUSTOM_EDGE,
    MAX_CUSTOM_PIXELS,
    MAX_IMAGE_BYTES,
    MAX_INPUT_IMAGES,
    MAX_MASK_BYTES,
    MAX_PROMPT_CHARS,
    MIN_CUSTOM_PIXELS,
    MODELS,
    RETIRED_MODELS,
    SVG_EFFORTS,
    ModelCapabilities,
)
from standin.errors import ApiError
from standin.requests import FilePart


@dataclass
class ImageJob:
    model: str
    prompt: str
    n: int
    width: int
    height: int
    quality: str
    background: str
    output_format: str
    compression: int
    stream: bool = False
    partial_images: int = 0
    safety_identifier: str | None = None
    source: Image.Image | None = None  # first input image of an edit, decoded
    mask_alpha: Image.Image | None = None
    markup: Image.Image | None = None
    input_image_tokens: int = 0
    frame_count: int = 0  # GIF only
    frame_duration_ms: int = 0
    svg_model: str = ""  # SVG only
    svg_effort: str = ""
    hostile_svg: bool = False

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def _quoted(values: tuple[str, ...] | list[str]) -> str:
    quoted = [f"'{value}'" for value in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def _string(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(f"Invalid type for '{name}': expected a string.", name, "invalid_type")
    return value


def _choice(fields: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = _string(fields, name)
    if value is not None and value not in allowed:
        message = f"Invalid value: '{value}'. Supported values are: {_quoted(allowed)}."
        raise ApiError(message, name, "invalid_value")
    return default if value is None else value


def _integer(fields: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = fields.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(f"Invalid type for '{name}': expected an integer.", name, "invalid_type")
    if not low <= value <= high:
        if value < low:
            side, bound, code = "below minimum", f">= {low}", "integer_below_min_value"
        else:
            side, bound, code = "above maximum", f"<= {high}", "integer_above_max_value"
        message = (
            f"Invalid '{name}': integer {side} value. Expected a value {bound}, but got {value} instead."
        )
        raise ApiError(message, name, code)
    return value


def _resolve_model(
    fields: dict[str, Any], is_edit: bool, models: dict, retired: dict
) -> tuple[str, ModelCapabilities]:
    model = _string(fields, "model") or (DEFAULT_EDIT_MODEL if is_edit else None)
    if model is None:
        message = (
            "No model was specified, and this endpoint's default (dall-e-2) was retired on May 12, 2026. "
            "Specify a GPT image model such as 'gpt-image-2'."
        )
        raise ApiError(message, "model", "model_not_found")
    if model in retired:
        raise ApiError(f"The model '{model}' {retired[model]}", "model", "model_not_found")
    if model not in models:
        message = f"The model '{model}' does not exist or you do not have access to it."
        raise ApiError(message, "model", "model_not_found")
    return model, models[model]


def _resolve_size(value: str | None, model: str, capabilities: ModelCapabilities) -> tuple[int, int] | None:
    """Returns (width, height), or None for ``auto``."""
    if value is None or value == "auto":
        return None
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", value)
    if value not in capabilities.sizes and not capabilities.custom_sizes:
        supported = _quoted([*capabilities.sizes, "auto"])
        message = f"Invalid size '{value}'. Supported sizes for {model} are {supported}."
        raise ApiError(message, "size", "invalid_value")
    if not match:
        message = f"Invalid size '{value}'. Use 'auto' or WIDTHxHEIGHT, for example '1536x864'."
        raise ApiError(message, "size", "invalid_value")
    width, height = int(match.group(1)), int(match.group(2))
    problem = None
    if width % 16 or height % 16:
        problem = "width and height must both be multiples of 16"
    elif max(width, height) > MAX_CUSTOM_EDGE:
        problem = f"no edge may be longer than {MAX_CUSTOM_EDGE} pixels"
    elif max(width, height) > 3 * min(width, height):
        problem = "the aspect ratio must be between 1:3 and 3:1"
    elif not MIN_CUSTOM_PIXELS <= width * height <= MAX_CUSTOM_PIXELS:
        problem = (
            f"the total pixel count must be between {MIN_CUSTOM_PIXELS:,} and {MAX_CUSTOM_PIXELS:,} "
            f"(got {width * height:,})"
        )
    if problem:
        raise ApiError(f"Invalid size '{value}': {problem}.", "size", "invalid_value")
    return width, height


def _closest_standard_size(width: int, height: int) -> tuple[int, int]:
    ratio = width / height
    return (1536, 1024) if ratio > 1.25 else (1024, 1536) if ratio < 0.8 else (1024, 1024)


def input_image_tokens(width: int, height: int) -> int:
    """Deterministic vision-style count: fit in 2048², shortest side to 768, 65 + 129 per 512 px tile."""
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    return 65 + 129 * math.ceil(width * scale / 512) * math.ceil(height * scale / 512)


def _open_image(content_type: str, data: bytes, param: str, label: str) -> Image.Image:
    if content_type not in ACCEPTED_IMAGE_TYPES:
        message = (
            f"Invalid file '{param}': unsupported mimetype ('{content_type}'). Supported file formats are "
            "'image/jpeg', 'image/png', and 'image/webp'."
        )
        raise ApiError(message, param, "invalid_image_format")
    try:
        image = Image.open(io.BytesIO(data))
    except Exception:
        image = None
    if image is None or image.format not in ACCEPTED_IMAGE_TYPES.values():
        message = f"Invalid image file or mode for {label}, please check your image file."
        raise ApiError(message, param, "invalid_image_file")
    return image


def _validate_inputs(job: ImageJob, files: list[FilePart], capabilities: ModelCapabilities) -> None:
    image_parts = [part for part in files if part[0] in ("image", "image[]", "images")]
    overlays = {part[0]: part for part in files if part[0] in ("mask", "markup")}
    if not image_parts:
        raise ApiError("Missing required parameter: 'image'.", "image", "missing_required_parameter")
    if len(image_parts) > MAX_INPUT_IMAGES:
        message = f"Too many images: got {len(image_parts)}, at most {MAX_INPUT_IMAGES} are allowed."
        raise ApiError(message, "image", "invalid_value")
    for index, (_name, _filename, content_type, data) in enumerate(image_parts):
        if len(data) >= MAX_IMAGE_BYTES:
            raise ApiError(f"Image {index + 1} is larger than 50 MB.", "image", "image_too_large")
        image = _open_image(content_type, data, "image", f"image {index + 1}")
        job.input_image_tokens += input_image_tokens(*image.size)
        if index == 0:
            image.load()
            job.source = image
    assert job.source is not None
    if "mask" in overlays and "markup" in overlays:
        raise ApiError("'markup' cannot be combined with 'mask'.", "markup", "invalid_value")
    for name, (_field, _filename, content_type, data) in overlays.items():
        if name == "markup" and not capabilities.markup:
            message = f"The model '{job.model}' does not support the 'markup' parameter."
            raise ApiError(message, name, "invalid_value")
        if name == "mask" and len(data) >= MAX_MASK_BYTES:
            raise ApiError("The mask must be smaller than 4 MB.", name, "image_too_large")
        overlay = _open_image(content_type, data, name, name)
        if overlay.format != "PNG":
            raise ApiError(f"The {name} must be a PNG file.", name, "invalid_image_format")
        if overlay.mode not in ("RGBA", "LA", "PA") and "transparency" not in overlay.info:
            message = f"Invalid {name} image: it must have an alpha channel (got mode {overlay.mode})."
            raise ApiError(message, name, "invalid_image_format")
        if overlay.size != job.source.size:
            message = (
                f"The {name} and the image must have the same dimensions: image is "
                f"{job.source.width}x{job.source.height}, {name} is {overlay.width}x{overlay.height}."
            )
            raise ApiError(message, name, "invalid_value")
        if name == "mask":
            job.mask_alpha = overlay.convert("RGBA").getchannel("A")
        else:
            job.markup = overlay.convert("RGBA")


def _svg_settings(fields: dict[str, Any]) -> tuple[str, str] | None:
    """(author, effort) from JSON's ``svg`` object or multipart's ``svg[model]`` fields; None if absent."""
    svg = fields.get("svg")
    flat = {name: value for name, value in fields.items() if name.startswith("svg[")}
    if svg is None and not flat:
        return None
    if svg is None:
        svg = {"model": flat.get("svg[model]"), "reasoning": {"effort": flat.get("svg[reasoning][effort]")}}
    if not isinstance(svg, dict):
        raise ApiError("Invalid type for 'svg': expected an object.", "svg", "invalid_type")
    author = svg.get("model")
    if not isinstance(author, str) or not author:
        raise ApiError("Missing required parameter: 'svg.model'.", "svg.model", "missing_required_parameter")
    reasoning = svg.get("reasoning") or {}
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if effort is not None and effort not in SVG_EFFORTS:
        message = f"Invalid value: '{effort}'. Supported values are: {_quoted(SVG_EFFORTS)}."
        raise ApiError(message, "svg.reasoning.effort", "invalid_value")
    return author, effort or ""


def _check_animated_and_vector(
    fields: dict[str, Any], files: list[FilePart], model: str, capabilities: ModelCapabilities, job_n: int
) -> tuple[int, int, tuple[str, str] | None]:
    """GIF and SVG rules (image_generate_params: frame_count, frame_duration_ms, svg): model support,
    no streaming, partial images, masks or compression. Returns (frames, frame ms, svg settings)."""
    output_format = fields.get("output_format")
    svg = _svg_settings(fields)
    if output_format not in ("gif", "svg"):
        for gif_only in ("frame_count", "frame_duration_ms"):
            if fields.get(gif_only) is not None:
                raise ApiError(
                    f"'{gif_only}' is only supported with output_format=gif.", gif_only, "invalid_value"
                )
        if svg is not None:
            raise ApiError("'svg' is only supported with output_format=svg.", "svg", "invalid_value")
        return 0, 0, None
    name = output_format.upper()
    if not getattr(capabilities, output_format):
        message = f"The model '{model}' does not support output_format '{output_format}'."
        raise ApiError(message, "output_format", "unsupported_value")
    if fields.get("stream") or fields.get("partial_images"):
        raise ApiError(
            f"{name} output does not support streaming or partial images.", "stream", "invalid_value"
        )
    if fields.get("output_compression") is not None:
        message = f"{name} output does not support output_compression."
        raise ApiError(message, "output_compression", "invalid_value")
    if output_format == "gif":
        if any(part[0] == "mask" for part in files):
            raise ApiError("GIF output does not support masks.", "mask", "invalid_value")
        if svg is not None:
            raise ApiError("'svg' is only supported with output_format=svg.", "svg", "invalid_value")
        frames = _integer(fields, "frame_count", 9, 2, 16)
        duration = _integer(fields, "frame_duration_ms", 200, 1, 10**9)
        # "GIF output rounds to the nearest 10 ms and caps the encoded delay at 655,350 ms per frame."
        return frames, min(655_350, max(10, round(duration / 10) * 10)), None
    for gif_only in ("frame_count", "frame_duration_ms"):
        if fields.get(gif_only) is not None:
            raise ApiError(
                f"'{gif_only}' is only supported with output_format=gif.", gif_only, "invalid_value"
            )
    if job_n != 1:
        raise ApiError("SVG output requires n=1.", "n", "invalid_value")
    return 0, 0, svg


def resolve_job(
    endpoint: str,
    fields: dict[str, Any],
    files: list[FilePart],
    models: dict[str, ModelCapabilities] | None = None,
    retired: dict[str, str] | None = None,
) -> ImageJob:
    """Checks a request the way the real endpoint does and resolves every ``auto``; raises ApiError.

    `models` and `retired`: what the server was started with; the built-in tables otherwise."""
    is_edit = endpoint == "edits"
    allowed = EDIT_PARAMS if is_edit else GENERATION_PARAMS
    for name in [*fields, *(part[0] for part in files)]:
        if name not in allowed and not name.startswith("svg["):
            raise ApiError(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    models = MODELS if models is None else models
    retired = RETIRED_MODELS if retired is None else retired
    model, capabilities = _resolve_model(fields, is_edit, models, retired)

    prompt = _string(fields, "prompt")
    if prompt is None:
        raise ApiError("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    if not prompt or len(prompt) > MAX_PROMPT_CHARS:
        message = (
            f"Invalid 'prompt': string too long. Expected a string with maximum length {MAX_PROMPT_CHARS}, "
            f"but got a string with length {len(prompt)} instead."
            if prompt
            else "Invalid 'prompt': string too short. Expected a string with minimum length 1, "
            "but got an empty string instead."
        )
        raise ApiError(message, "prompt", "string_above_max_length" if prompt else "string_below_min_length")
    n = _integer(fields, "n", 1, 1, 10)
    stream = fields.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ApiError("Invalid type for 'stream': expected a boolean.", "stream", "invalid_type")
    if stream and not capabilities.streaming:
        raise ApiError(f"The model '{model}' does not support streaming.", "stream", "unsupported_value")
    if stream and n != 1:
        raise ApiError("Streaming is only supported with n=1.", "n", "invalid_value")
    for legacy in ("response_format", "style"):
        if fields.get(legacy) is not None:
            message = f"The '{legacy}' parameter is not supported for GPT image models, which return base64."
            raise ApiError(message, legacy, "unsupported_parameter")

    size = _resolve_size(_string(fields, "size"), model, capabilities)
    requested_quality = _string(fields, "quality")
    gated_qualities = ("standard", "hd", "xhigh", "max")
    if requested_quality in gated_qualities and requested_quality not in capabilities.extra_qualities:
        owners = "retired DALL·E models" if requested_quality in ("standard", "hd") else "GPT Image 2.5"
        message = f"The model '{model}' does not support quality '{requested_quality}' (only {owners} does)."
        raise ApiError(message, "quality", "unsupported_value")
    quality = _choice(fields, "quality", (*BASE_QUALITIES, *capabilities.extra_qualities), "auto")
    output_format = _choice(fields, "output_format", ("png", "jpeg", "webp", "gif", "svg"), "png")
    frames, frame_ms, svg = _check_animated_and_vector(fields, files, model, capabilities, n)
    background = _choice(fields, "background", ("transparent", "opaque", "auto"), "auto")
    if background == "transparent" and not capabilities.transparent_background:
        raise ApiError(
            "Transparent background is not supported for this model.", "background", "invalid_value"
        )
    if background == "transparent" and output_format not in ("png", "webp"):
        message = f"Transparent background requires output_format 'png' or 'webp' (got '{output_format}')."
        raise ApiError(message, "background", "invalid_value")
    compression = _integer(fields, "output_compression", 100, 0, 100)
    if fields.get("output_compression") is not None and output_format == "png":
        message = "output_compression is only supported with output_format 'jpeg' or 'webp'."
        raise ApiError(message, "output_compression", "invalid_value")
    _choice(fields, "moderation", ("auto", "low"), "auto")
    if fields.get("complexity") is not None and not capabilities.complexity:
        message = f"The model '{model}' does not support the 'complexity' parameter."
        raise ApiError(message, "complexity", "unsupported_parameter")
    _choice(fields, "complexity", ("low", "medium", "high"), "medium")
    if is_edit and "input_fidelity" in fields:
        # Even a null counts: the real service rejects the key itself on models without the option.
        if not capabilities.input_fidelities:
            message = f"The model '{model}' does not support the 'input_fidelity' parameter."
            error_type = "image_generation_user_error"
            raise ApiError(message, "input_fidelity", "invalid_input_fidelity_model", type=error_type)
        _choice(fields, "input_fidelity", capabilities.input_fidelities, "low")
    partial_images = _integer(fields, "partial_images", 0, 0, 3)

    job = ImageJob(
        model=model,
        prompt=prompt,
        n=n,
        width=size[0] if size else 1024,
        height=size[1] if size else 1024,
        quality="medium" if quality == "auto" else quality,
        background="transparent" if background == "transparent" else "opaque",
        output_format=output_format,
        compression=compression,
        stream=bool(stream),
        partial_images=partial_images,
        safety_identifier=_string(fields, "safety_identifier") or _string(fields, "user") or None,
        frame_count=frames,
        frame_duration_ms=frame_ms,
        svg_model=svg[0] if svg else "",
        svg_effort=svg[1] if svg else "",
        hostile_svg=output_format == "svg" and HOSTILE_SVG_MARKER in prompt,
    )
    if is_edit:
        _validate_inputs(job, files, capabilities)
        if size is None and job.source is not None:
            job.width, job.height = _closest_standard_size(*job.source.size)
    return job
