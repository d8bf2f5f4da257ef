"""A stand-in for the OpenAI Images API (``/v1/images/generations`` and ``/v1/images/edits``).

It validates requests the way the real service documents them, answers with real images made by
Pillow, streams SSE events in the shape the ``openai`` SDK parses, and can be told to fail on purpose
(rate limits, outages, dropped connections, moderation...) so the app's error handling can be tested
without spending money. Standard library + Pillow only, so it runs without Django settings::

    python -m workspace.standin --port 8765 --latency 0.5

Faults are consumed by image requests in order (``inject``, ``POST /_standin/faults``) or triggered by a
``[standin:FAULT]`` marker inside a prompt. A fault decides the answer whatever the request contains.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import colorsys
import contextlib
import dataclasses
import email.parser
import email.policy
import functools
import hashlib
import io
import json
import math
import random
import re
import secrets
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps

# --------------------------------------------------------------------------------------------------
# Model capabilities, written from the SDK docstrings (openai 3.52) and the team's API reference.

STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536")
BASE_QUALITIES = ("low", "medium", "high", "auto")
MIN_CUSTOM_PIXELS, MAX_CUSTOM_PIXELS, MAX_CUSTOM_EDGE = 655_360, 8_294_400, 3840
MAX_PROMPT_CHARS = 32_000
MAX_INPUT_IMAGES, MAX_IMAGE_BYTES, MAX_MASK_BYTES = 16, 50 * 1024 * 1024, 4 * 1024 * 1024
MAX_BODY_BYTES = 900 * 1024 * 1024
ACCEPTED_IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


@dataclass(frozen=True)
class ModelCapabilities:
    custom_sizes: bool = False
    extra_qualities: tuple[str, ...] = ()
    transparent_background: bool = True
    complexity: bool = False
    input_fidelities: tuple[str, ...] = ()  # empty: the parameter must be omitted entirely
    markup: bool = False


_GPT_IMAGE_2 = ModelCapabilities(custom_sizes=True, complexity=True)
_GPT_IMAGE_2_5 = ModelCapabilities(
    custom_sizes=True, extra_qualities=("xhigh", "max"), complexity=True, markup=True
)
MODELS: dict[str, ModelCapabilities] = {
    "gpt-image-2": _GPT_IMAGE_2,
    "gpt-image-2-2026-04-21": _GPT_IMAGE_2,
    "gpt-image-2.5-sunburst": _GPT_IMAGE_2_5,
    "gpt-image-2.5-sunburst-2026-09-08": _GPT_IMAGE_2_5,
    "gpt-image-2.5-flare": _GPT_IMAGE_2_5,
    "gpt-image-2.5-flare-2026-09-08": _GPT_IMAGE_2_5,
    # The SDK lists the 2.6 family, but no docstring grants it any 2.x extra, so only the shared basics.
    "gpt-image-2.6-sunburst": ModelCapabilities(),
    "gpt-image-2.6-flare": ModelCapabilities(),
    "gpt-image-1.5": ModelCapabilities(input_fidelities=("high", "low")),
    "gpt-image-1-mini": ModelCapabilities(input_fidelities=("low",)),
    "chatgpt-image-latest": ModelCapabilities(transparent_background=False),
}
RETIRED_MODELS = {
    "gpt-image-1": "was shut down on October 23, 2026. Use gpt-image-2.5-sunburst or gpt-image-2.5-flare.",
    "dall-e-2": "was retired on May 12, 2026. Use a GPT image model instead.",
    "dall-e-3": "was retired on May 12, 2026. Use a GPT image model instead.",
}
DEFAULT_EDIT_MODEL = "gpt-image-1.5"  # the generations endpoint defaults to the retired dall-e-2

# Output image tokens for one 1024x1024 image; other sizes scale with their pixel count.
OUTPUT_TOKENS_AT_1024 = {"low": 196, "medium": 1756, "high": 7024, "xhigh": 10536, "max": 14048}

COMMON_PARAMS = frozenset(
    {
        *("prompt", "model", "n", "size", "quality", "background", "moderation", "stream", "partial_images"),
        *(
            "output_format",
            "output_compression",
            "user",
            "safety_identifier",
            "complexity",
            "response_format",
        ),
        *("frame_count", "frame_duration_ms", "svg"),
    }
)
GENERATION_PARAMS = COMMON_PARAMS | {"style"}
EDIT_PARAMS = COMMON_PARAMS | {"input_fidelity", "image", "image[]", "images", "mask", "markup"}
INTEGER_PARAMS = frozenset({"n", "output_compression", "partial_images", "frame_count", "frame_duration_ms"})

FilePart = tuple[str, str, str, bytes]  # (form field name, filename, content type, bytes)

# --------------------------------------------------------------------------------------------------
# Errors and faults


class ApiError(Exception):
    """An error answered in OpenAI's ``{"error": {...}}`` shape."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        code: str | None = None,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.status, self.type = message, param, code, status, type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


FAULT_PATTERN = re.compile(
    r"^(ok|429(:\d+(\.\d+)?)?|quota|500|503|slow(:\d+(\.\d+)?)?|drop|garbage|moderation|401|403)$"
)
PROMPT_FAULT_PATTERN = re.compile(r"\[standin:([a-z0-9:.]+)\]")
# Faults imitating a failure after the model started working pay the configured latency first.
LATE_FAULTS = frozenset({"500", "503", "drop", "garbage", "moderation"})
# fault -> (status, type, code, message); {model} and {request_id} are filled in.
FAULT_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "429": (
        429,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} in organization org-standin on images per minute (IPM): Limit 5, "
        "Used 5, Requested 1. Visit https://platform.openai.com/account/rate-limits to learn more.",
    ),
    "quota": (
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details. For more information "
        "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
    ),
    "500": (
        500,
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "503": (503, "server_error", None, "The engine is currently overloaded, please try again later."),
    "moderation": (
        400,
        "image_generation_user_error",
        "moderation_blocked",
        "Your request was rejected by the safety system. If you believe this is an error, contact us at "
        "help.openai.com and include the request ID {request_id}. safety_violations=[sexual].",
    ),
    "401": (
        401,
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    ),
    "403": (
        403,
        "invalid_request_error",
        None,
        "Your organization must be verified to use the model `{model}`. Please go to: "
        "https://platform.openai.com/settings/organization/general and click on Verify Organization. "
        "If you just verified, it can take up to 15 minutes for access to propagate.",
    ),
}


def fault_error(fault: str, model: str, request_id: str) -> ApiError:
    name, _, argument = fault.partition(":")
    status, error_type, code, message = FAULT_ERRORS[name]
    headers = {"retry-after": argument or "1"} if name == "429" else None
    message = message.format(model=model, request_id=request_id)
    return ApiError(message, None, code, status=status, type=error_type, headers=headers)


# --------------------------------------------------------------------------------------------------
# Request parsing


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    fields: dict[str, Any] = field(default_factory=dict)
    files: list[FilePart] = field(default_factory=list)
    status: int = 0  # 0 until answered; stays 0 when the connection was dropped on purpose
    fault: str | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-friendly view without file bytes or the API key."""
        headers = {k: ("Bearer ***" if k == "authorization" else v) for k, v in self.headers.items()}
        files = [
            {"field": name, "filename": filename, "content_type": content_type, "size": len(data)}
            for name, filename, content_type, data in self.files
        ]
        return {**self.__dict__, "headers": headers, "files": files}


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], list[FilePart]]:
    envelope = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(envelope + body)
    if not message.is_multipart():
        raise ApiError("Could not parse the multipart/form-data body of your request.")
    fields: dict[str, Any] = {}
    files: list[FilePart] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ApiError("Every multipart part needs a form-data name.")
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None and part.get("content-type") is None:
            fields[name] = payload.decode("utf-8", errors="replace")
        else:
            files.append((name, filename or "", part.get_content_type(), payload))
    return fields, files


def _coerce_form_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Form fields arrive as text; turn the numeric and boolean ones into what JSON would carry."""
    coerced = dict(fields)
    for name, value in fields.items():
        if name in INTEGER_PARAMS and re.fullmatch(r"-?\d+", value):
            coerced[name] = int(value)
        elif name == "stream" and value in ("true", "false"):
            coerced[name] = value == "true"
    return coerced


def _decode_data_url(reference: Any, param: str) -> tuple[str, bytes]:
    url = reference.get("image_url") if isinstance(reference, dict) else None
    match = re.fullmatch(r"data:([\w/+.-]+);base64,(.*)", url or "", flags=re.DOTALL)
    if not match:
        raise ApiError(
            f'Invalid \'{param}\': the stand-in only accepts {{"image_url": "data:...;base64,..."}}.',
            param,
            "invalid_value",
        )
    try:
        return match.group(1), base64.b64decode(match.group(2), validate=True)
    except binascii.Error:
        raise ApiError(f"Invalid base64 data in '{param}.image_url'.", param, "invalid_value") from None


def _json_edit_files(fields: dict[str, Any]) -> list[FilePart]:
    """Moves JSON edit image references (``images``, ``mask``, ``markup``) into file-part shape."""
    files: list[FilePart] = []
    images = fields.pop("images", None)
    if images is not None and not isinstance(images, list):
        raise ApiError("Invalid type for 'images': expected an array.", "images", "invalid_type")
    for index, reference in enumerate(images or []):
        files.append(("images", "", *_decode_data_url(reference, f"images[{index}]")))
    for name in ("mask", "markup"):
        if fields.get(name) is not None:
            files.append((name, "", *_decode_data_url(fields.pop(name), name)))
    return files


# --------------------------------------------------------------------------------------------------
# Validation


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


def _resolve_model(fields: dict[str, Any], is_edit: bool) -> tuple[str, ModelCapabilities]:
    model = _string(fields, "model") or (DEFAULT_EDIT_MODEL if is_edit else None)
    if model is None:
        message = (
            "No model was specified, and this endpoint's default (dall-e-2) was retired on May 12, 2026. "
            "Specify a GPT image model such as 'gpt-image-2'."
        )
        raise ApiError(message, "model", "model_not_found")
    if model in RETIRED_MODELS:
        raise ApiError(f"The model '{model}' {RETIRED_MODELS[model]}", "model", "model_not_found")
    if model not in MODELS:
        message = f"The model '{model}' does not exist or you do not have access to it."
        raise ApiError(message, "model", "model_not_found")
    return model, MODELS[model]


def _resolve_size(value: str | None, model: str, capabilities: ModelCapabilities) -> tuple[int, int] | None:
    """Returns (width, height), or None for ``auto``."""
    if value is None or value == "auto":
        return None
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", value)
    if value not in STANDARD_SIZES and not capabilities.custom_sizes:
        message = (
            f"Invalid size '{value}'. Supported sizes for {model} are {_quoted([*STANDARD_SIZES, 'auto'])}."
        )
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


def resolve_job(endpoint: str, fields: dict[str, Any], files: list[FilePart]) -> ImageJob:
    """Checks a request the way the real endpoint does and resolves every ``auto``; raises ApiError."""
    is_edit = endpoint == "edits"
    allowed = EDIT_PARAMS if is_edit else GENERATION_PARAMS
    for name in [*fields, *(part[0] for part in files)]:
        if name not in allowed and not name.startswith("svg["):
            raise ApiError(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    model, capabilities = _resolve_model(fields, is_edit)

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
    if output_format in ("gif", "svg"):
        message = f"output_format '{output_format}' requires access to the {output_format.upper()} preview."
        raise ApiError(message, "output_format", "unsupported_value")
    for gif_only in ("frame_count", "frame_duration_ms"):
        if fields.get(gif_only) is not None:
            raise ApiError(
                f"'{gif_only}' is only supported with output_format=gif.", gif_only, "invalid_value"
            )
    if fields.get("svg") is not None or any(name.startswith("svg[") for name in fields):
        raise ApiError("'svg' is only supported with output_format=svg.", "svg", "invalid_value")
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
    )
    if is_edit:
        _validate_inputs(job, files, capabilities)
        if size is None and job.source is not None:
            job.width, job.height = _closest_standard_size(*job.source.size)
    return job


def usage_for(job: ImageJob) -> dict[str, Any]:
    text_tokens = max(1, math.ceil(len(job.prompt) / 4))
    per_image = max(1, round(OUTPUT_TOKENS_AT_1024[job.quality] * job.width * job.height / 1024**2))
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


def encode_image(image: Image.Image, output_format: str, compression: int) -> bytes:
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, "PNG", compress_level=1)
    elif output_format == "jpeg":
        image.convert("RGB").save(buffer, "JPEG", quality=max(1, compression))
    else:
        image.save(buffer, "WEBP", quality=compression, method=0)
    return buffer.getvalue()


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
    return _b64(encode_image(render_image(job, index), job.output_format, job.compression))


@functools.lru_cache(maxsize=32)
def _stream_payloads(job_key: tuple[Any, ...], partials: int) -> tuple[list[str], str]:
    job = ImageJob(*job_key)
    final = render_image(job, 0)
    previews = [
        _b64(encode_image(partial_image(final, index, partials), job.output_format, 80))
        for index in range(partials)
    ]
    return previews, _b64(encode_image(final, job.output_format, job.compression))


def stream_payloads(job: ImageJob) -> tuple[list[str], str]:
    """The partial images and the final one, made before the first event so pauses are pure latency."""
    if job.source is None:  # as for plain answers: repeated generations come from a cache
        return _stream_payloads(dataclasses.astuple(job), job.partial_images)
    return _stream_payloads.__wrapped__(dataclasses.astuple(job), job.partial_images)


def final_image_b64(job: ImageJob, index: int) -> str:
    if job.source is None:  # generations are pure functions of their parameters: cache repeated prompts
        key = (job.model, job.prompt, job.n, job.width, job.height, job.quality, job.background)
        return _generated_b64((*key, job.output_format, job.compression), index)
    return _b64(encode_image(render_image(job, index), job.output_format, job.compression))


# --------------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    server_version = "AtelierStandin/1.0"
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.standin.log_requests:
            sys.stderr.write(f"[standin] {self.address_string()} {format % args}\n")

    # -- plumbing

    def _begin(self) -> str:
        self.request_id = "req_" + secrets.token_hex(16)
        self.started = time.monotonic()
        return urlsplit(self.path).path

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            raise ApiError("Request body too large.", status=413)
        return self.rfile.read(length)

    def _send_headers(self, status: int, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("x-request-id", self.request_id)
        self.send_header("openai-processing-ms", str(round((time.monotonic() - self.started) * 1000)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self._send_headers(status, content_type, {"content-length": str(len(body)), **(headers or {})})
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_error(self, error: ApiError, record: RecordedRequest | None = None) -> None:
        if record is not None:
            record.status = error.status
        self._send_json(error.status, error.body(), error.headers)

    # -- routing

    def do_GET(self) -> None:
        path = self._begin()
        standin = self.server.standin
        if path == "/healthz":
            self._send(200, b"ok", "text/plain; charset=utf-8")
        elif path == "/_standin/requests":
            self._send_json(200, [recorded.summary() for recorded in list(standin.requests)])
        elif path == "/_standin/faults":
            self._send_json(200, {"faults": standin.queued_faults(), "latency": standin.latency})
        else:
            self._send_error(ApiError(f"Invalid URL (GET {path})", status=404))

    def do_POST(self) -> None:
        path = self._begin()
        try:
            body = self._read_body()
            if path.startswith("/_standin/"):
                self._control(path, body)
            elif path in ("/v1/images/generations", "/v1/images/edits"):
                self._image_request(path, body)
            else:
                self._send_error(ApiError(f"Invalid URL (POST {path})", status=404))
        except ApiError as error:  # only an oversized body gets here; its bytes are still unread
            self.close_connection = True
            self._send_error(error)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired); nobody to answer

    def _control(self, path: str, body: bytes) -> None:
        standin = self.server.standin
        try:
            payload = json.loads(body or b"{}")
            if path == "/_standin/faults":
                standin.inject(*payload["faults"])
            elif path == "/_standin/latency":
                standin.latency = float(payload["latency"])
                standin.latency_jitter = float(payload.get("latency_jitter", standin.latency_jitter))
            elif path == "/_standin/reset":
                standin.reset()
            else:
                return self._send_error(ApiError(f"Invalid URL (POST {path})", status=404))
        except (ValueError, KeyError, TypeError) as error:
            return self._send_error(ApiError(f"Bad control request: {error!r}"))
        self._send_json(200, {"ok": True, "faults": standin.queued_faults(), "latency": standin.latency})

    def _image_request(self, path: str, body: bytes) -> None:
        standin = self.server.standin
        endpoint = path.rsplit("/", 1)[1]
        record = RecordedRequest(path=path, headers={k.lower(): v for k, v in self.headers.items()})
        standin._record(record)
        content_type = self.headers.get("content-type", "")
        try:
            if content_type.startswith("multipart/form-data"):
                record.fields, record.files = parse_multipart(content_type, body)
                fields = _coerce_form_fields(record.fields)
            else:
                fields = json.loads(body or b"{}")
                if not isinstance(fields, dict):
                    raise ValueError("the body is not a JSON object")
                record.fields = {k: v for k, v in fields.items() if k not in ("images", "mask", "markup")}
                if endpoint == "edits":
                    record.files = _json_edit_files(fields)
        except ApiError as error:
            return self._send_error(error, record)
        except ValueError:
            message = "We could not parse the JSON body of your request. Send valid JSON."
            return self._send_error(ApiError(message), record)

        authorization = self.headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return self._send_error(ApiError(message, status=401), record)

        record.fault = fault = standin._next_fault(fields.get("prompt"))
        if fault is not None:
            name, _, argument = fault.partition(":")
            if name in LATE_FAULTS:
                standin._sleep(standin._latency_sample())
            if name == "slow":
                standin._sleep(float(argument or 30))  # then answer normally, if anyone still listens
            elif name == "drop":
                self.close_connection = True
                return
            elif name == "garbage":
                record.status = 200
                return self._send(200, b"<html>oops", "application/json")
            else:
                model = fields.get("model") if isinstance(fields.get("model"), str) else "gpt-image-2"
                return self._send_error(fault_error(fault, model, self.request_id), record)

        try:
            job = resolve_job(endpoint, fields, record.files)
        except ApiError as error:
            return self._send_error(error, record)
        record.status = 200
        if job.stream:
            return self._stream(job, "image_edit" if endpoint == "edits" else "image_generation")
        standin._sleep(standin._latency_sample())
        body_json = {
            "created": int(time.time()),
            "data": [{"b64_json": final_image_b64(job, index)} for index in range(job.n)],
            "background": job.background,
            "output_format": job.output_format,
            "size": job.size,
            "quality": job.quality,
            "usage": usage_for(job),
        }
        if job.safety_identifier:
            body_json["safety_identifier"] = job.safety_identifier
        self._send_json(200, body_json)

    def _stream(self, job: ImageJob, event_prefix: str) -> None:
        standin = self.server.standin
        pause = standin._latency_sample() / (job.partial_images + 1)  # spread the latency over the events
        headers = {"cache-control": "no-cache", "transfer-encoding": "chunked"}
        self._send_headers(200, "text/event-stream; charset=utf-8", headers)
        settings = {"background": job.background, "output_format": job.output_format}
        settings |= {"quality": job.quality, "size": job.size}
        previews, final_b64 = stream_payloads(job)
        for partial_index, preview in enumerate(previews):
            standin._sleep(pause)
            event = {"type": f"{event_prefix}.partial_image", "b64_json": preview}
            event |= {"created_at": int(time.time()), **settings, "partial_image_index": partial_index}
            self._write_event(event)
        standin._sleep(pause)
        usage = usage_for(job)
        del usage["output_tokens_details"]  # the completed events document usage without it
        event = {"type": f"{event_prefix}.completed", "b64_json": final_b64}
        event |= {"created_at": int(time.time()), **settings, "usage": usage}
        if job.safety_identifier:
            event["safety_identifier"] = job.safety_identifier
        self._write_event(event)
        self.wfile.write(b"0\r\n\r\n")

    def _write_event(self, payload: dict[str, Any]) -> None:
        data = f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")  # one HTTP chunk per event
        self.wfile.flush()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512  # benchmarks open dozens of connections at once; a short backlog drops SYNs
    standin: StandinServer


# --------------------------------------------------------------------------------------------------
# Public API


class StandinServer:
    """The stand-in, served from a background thread (``start``) or the foreground (``serve_forever``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        latency_jitter: float = 0.0,
        log_requests: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.latency, self.latency_jitter = latency, latency_jitter
        self.log_requests = log_requests
        self.requests: list[RecordedRequest] = []
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._serving = False  # shutdown() would wait forever on a server that never served

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("The stand-in is not listening yet; call start() first.")
        # A wildcard bind is reachable on loopback; clients cannot connect to the wildcard itself.
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self._httpd.server_address[1]}/v1"

    def _bind(self) -> _HTTPServer:
        if self._httpd is None:
            server_class = _HTTPServer
            if ":" in self.host:
                server_class = type("_HTTPServerV6", (_HTTPServer,), {"address_family": socket.AF_INET6})
            self._httpd = server_class((self.host, self.port), _Handler)
            self._httpd.standin = self
            self._stopping.clear()
        return self._httpd

    def start(self) -> StandinServer:
        httpd = self._bind()
        # A short poll interval keeps stop() quick; idle polling costs next to nothing.
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name="standin-http", daemon=True
        )
        self._serving = True
        self._thread.start()
        return self

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serves in the calling thread until KeyboardInterrupt; ``on_ready`` receives the base URL."""
        httpd = self._bind()
        if on_ready is not None:
            on_ready(self.base_url)
        self._serving = True
        try:
            httpd.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers that are sleeping out a latency or a "slow" fault
        if self._serving:
            httpd.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread, self._serving = None, False
        httpd.server_close()

    def __enter__(self) -> StandinServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- faults and records

    def inject(self, *faults: str) -> None:
        for fault in faults:
            if not isinstance(fault, str) or not FAULT_PATTERN.match(fault):
                raise ValueError(f"Unknown stand-in fault {fault!r}")
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def queued_faults(self) -> list[str]:
        with self._lock:
            return list(self._faults)

    def reset(self) -> None:
        """Forgets queued faults and recorded requests."""
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(record)

    def _next_fault(self, prompt: Any) -> str | None:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is None and isinstance(prompt, str):
            match = PROMPT_FAULT_PATTERN.search(prompt)
            fault = match.group(1) if match and FAULT_PATTERN.match(match.group(1)) else None
        return None if fault == "ok" else fault

    def _latency_sample(self) -> float:
        jitter = random.uniform(-self.latency_jitter, self.latency_jitter) if self.latency_jitter else 0.0
        return max(0.0, self.latency + jitter)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Stand-in for the OpenAI Images API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each image answer")
    parser.add_argument("--latency-jitter", type=float, default=0.0, help="± seconds added at random")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    options = parser.parse_args(argv)
    server = StandinServer(options.host, options.port, options.latency, options.latency_jitter)
    server.log_requests = not options.quiet
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(on_ready=lambda url: print(f"Stand-in OpenAI Images API at {url}", flush=True))


if __name__ == "__main__":
    main()
