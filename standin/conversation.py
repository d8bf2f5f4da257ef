"""``POST /v1/responses`` with the ``image_generation`` tool: validation, images, usage, chaining.

Only what a workspace's conversation turns use: a mainline model, text and ``input_image`` parts, one
image_generation tool, ``previous_response_id`` (remembered here; an unknown id is a 400, as for a
response that was never stored), streamed or not.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from standin.capabilities import BASE_QUALITIES, MODELS, OUTPUT_TOKENS_AT_1024, RETIRED_MODELS
from standin.errors import ApiError
from standin.responses import encode_image, partial_image, render_image
from standin.validation import ImageJob, input_image_tokens

TOOL_DEFAULT_MODEL = "gpt-image-2.6-sunburst"  # what SDK 3.57 documents as the tool's default
TOOL_PARAMS = frozenset(
    {
        *("type", "model", "action", "partial_images", "quality", "size", "output_format"),
        *("output_compression", "background", "moderation", "input_fidelity", "input_image_mask"),
        *("complexity", "frame_count", "frame_duration_ms", "svg"),
    }
)
REQUEST_PARAMS = frozenset(
    {
        *("model", "input", "tools", "tool_choice", "previous_response_id", "stream", "store"),
        *("instructions", "metadata", "reasoning", "user", "safety_identifier", "parallel_tool_calls"),
    }
)


@dataclass
class StoredResponse:
    id: str
    image: Image.Image | None  # the latest image of the chain, which the next edit starts from
    input_tokens: int  # what the chain's context holds so far, cached for the next turn


@dataclass
class Conversations:
    responses: dict[str, StoredResponse] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Turn:
    mainline: str
    image_model: str
    action: str
    text: str
    source: Image.Image | None
    previous: StoredResponse | None
    partial_images: int
    quality: str
    stream: bool


def _error(message: str, param: str | None, code: str = "invalid_value") -> ApiError:
    return ApiError(message, param, code)


def _image_from_url(url: Any, param: str) -> Image.Image:
    match = re.fullmatch(r"data:image/(png|jpeg|webp);base64,(.*)", url or "", flags=re.DOTALL)
    if not match:
        raise _error(f"Invalid '{param}': expected a data URL of a PNG, JPEG or WebP image.", param)
    try:
        image = Image.open(io.BytesIO(base64.b64decode(match.group(2), validate=True)))
        image.load()
    except (binascii.Error, OSError, ValueError):
        raise _error(f"Invalid image in '{param}'.", param, "invalid_image_file") from None
    return image


def _read_input(value: Any) -> tuple[str, Image.Image | None]:
    if isinstance(value, str):
        return value, None
    if not isinstance(value, list) or not value:
        raise _error(
            "Invalid 'input': expected a string or a non-empty array of items.", "input", "invalid_type"
        )
    texts, image = [], None
    for index, item in enumerate(value):
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            texts.append(content)
            continue
        if not isinstance(content, list):
            raise _error(f"Invalid 'input[{index}]': expected a message with content.", f"input[{index}]")
        for part_index, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "input_text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "input_image":
                image = _image_from_url(
                    part.get("image_url"), f"input[{index}].content[{part_index}].image_url"
                )
            else:
                raise _error(f"Invalid 'input[{index}].content[{part_index}]'.", f"input[{index}].content")
    text = "\n".join(texts).strip()
    if not text:
        raise _error("The input has no text.", "input", "string_below_min_length")
    return text, image


def resolve_turn(
    body: dict[str, Any],
    store: Conversations,
    *,
    models: dict[str, Any] | None = None,
    retired: dict[str, str] | None = None,
) -> Turn:
    """Checks a Responses request the way the service does for an image_generation call; raises ApiError.

    `models` and `retired`: the server's current list (the workspace's registry rows when it was given
    them), the same the Images endpoints check; the built-in list otherwise."""
    models = MODELS if models is None else models
    retired = RETIRED_MODELS if retired is None else retired
    for name in body:
        if name not in REQUEST_PARAMS:
            raise _error(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    mainline = body.get("model")
    if not isinstance(mainline, str) or not mainline:
        raise _error("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if not re.fullmatch(r"(gpt-[0-9][\w.-]*|o[0-9][\w.-]*)", mainline):
        raise _error(
            f"The model '{mainline}' does not exist or you do not have access to it.",
            "model",
            "model_not_found",
        )
    tools = body.get("tools")
    if not isinstance(tools, list):
        raise _error("Invalid 'tools': expected an array.", "tools", "invalid_type")
    image_tools = [
        (i, t) for i, t in enumerate(tools) if isinstance(t, dict) and t.get("type") == "image_generation"
    ]
    if len(image_tools) != 1 or len(tools) != 1:
        raise _error("The stand-in supports exactly one tool, of type 'image_generation'.", "tools")
    index, tool = image_tools[0]
    for name in tool:
        if name not in TOOL_PARAMS:
            raise _error(
                f"Unknown parameter: 'tools[{index}].{name}'.", f"tools[{index}].{name}", "unknown_parameter"
            )
    image_model = tool.get("model", TOOL_DEFAULT_MODEL)
    if image_model in retired:
        raise _error(
            f"The model '{image_model}' {retired[image_model]}",
            f"tools[{index}].model",
            "model_not_found",
        )
    if image_model not in models:
        message = f"The model '{image_model}' does not exist or you do not have access to it."
        raise _error(message, f"tools[{index}].model", "model_not_found")
    action = tool.get("action", "auto")
    if action not in ("generate", "edit", "auto"):
        raise _error(
            f"Invalid value: '{action}'. Supported values are: 'generate', 'edit', and 'auto'.",
            f"tools[{index}].action",
        )
    partial_images = tool.get("partial_images", 0)
    if (
        isinstance(partial_images, bool)
        or not isinstance(partial_images, int)
        or not 0 <= partial_images <= 3
    ):
        raise _error(
            "Invalid 'partial_images': expected an integer from 0 to 3.", f"tools[{index}].partial_images"
        )
    quality = tool.get("quality", "auto")
    if quality not in (*BASE_QUALITIES, *models[image_model].extra_qualities):
        raise _error(f"Invalid value: '{quality}' for quality.", f"tools[{index}].quality")
    previous = None
    previous_id = body.get("previous_response_id")
    if previous_id is not None:
        with store.lock:
            previous = store.responses.get(previous_id) if isinstance(previous_id, str) else None
        if previous is None:
            raise _error(
                f"Previous response with id '{previous_id}' not found.",
                "previous_response_id",
                "previous_response_not_found",
            )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _error("Invalid type for 'stream': expected a boolean.", "stream", "invalid_type")
    text, image = _read_input(body.get("input"))
    source = image or (previous.image if previous is not None else None)
    if action == "edit" and source is None:
        raise _error("The image_generation tool's action is 'edit' but there is no image to edit.", "input")
    return Turn(mainline, image_model, action, text, source, previous, partial_images, quality, stream)


class TurnRun:
    """One answered turn: its ids, image, partial images, usage, and the payloads built from them."""

    def __init__(self, turn: Turn, store: Conversations) -> None:
        self.turn = turn
        self.id = "resp_" + secrets.token_hex(24)
        self.item_id = "ig_" + secrets.token_hex(24)
        self.created_at = int(time.time())
        quality = "medium" if turn.quality == "auto" else turn.quality
        width, height = turn.source.size if turn.source is not None else (1024, 1024)
        self.job = ImageJob(
            model=turn.image_model,
            prompt=turn.text,
            n=1,
            width=width,
            height=height,
            quality=quality,
            background="opaque",
            output_format="png",
            compression=100,
            source=turn.source,
        )
        final = render_image(self.job, 0)
        self.image = final
        self.result_b64 = base64.b64encode(encode_image(final, "png", 100, turn.image_model)).decode()
        self.partials = [
            base64.b64encode(
                encode_image(partial_image(final, index, turn.partial_images), "png", 80)
            ).decode()
            for index in range(turn.partial_images)
        ]
        text_tokens = max(1, math.ceil(len(turn.text) / 4))
        image_in = input_image_tokens(width, height) if turn.source is not None else 0
        image_out = max(1, round(OUTPUT_TOKENS_AT_1024[quality] * width * height / 1024**2))
        cached = turn.previous.input_tokens if turn.previous is not None else 0
        # The mainline reads the chain so far (cached), this message and the image, then writes a call.
        mainline_in = (
            cached + text_tokens + 40 + (85 if turn.source is not None and turn.previous is None else 0)
        )
        self.usage = {
            "input_tokens": mainline_in,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": 60,
            "output_tokens_details": {"reasoning_tokens": 24},
            "total_tokens": mainline_in + 60,
        }
        self.tool_usage = {
            "image_gen": {
                "input_tokens": text_tokens + image_in,
                "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_in},
                "output_tokens": image_out,
                "output_tokens_details": {"image_tokens": image_out, "text_tokens": 0},
                "total_tokens": text_tokens + image_in + image_out,
            },
            "web_search": {"num_requests": 0},
        }
        with store.lock:
            store.responses[self.id] = StoredResponse(self.id, final, mainline_in + 60)

    def item(self, status: str = "completed") -> dict[str, Any]:
        item = {"id": self.item_id, "type": "image_generation_call", "status": status}
        if status == "completed":
            item |= {
                "result": self.result_b64,
                "action": "edit" if self.turn.source is not None else "generate",
                "background": "opaque",
                "output_format": "png",
                "quality": self.job.quality,
                "size": self.job.size,
                "revised_prompt": self.turn.text,
            }
        else:
            item["result"] = None
        return item

    def response(self, status: str = "completed") -> dict[str, Any]:
        done = status == "completed"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.turn.mainline,
            "output": [self.item()] if done else [],
            "previous_response_id": self.turn.previous.id if self.turn.previous is not None else None,
            "tools": [
                {"type": "image_generation", "model": self.turn.image_model, "action": self.turn.action}
            ],
            "tool_choice": "auto",
            "parallel_tool_calls": True,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "temperature": 1.0,
            "top_p": 1.0,
            "usage": self.usage if done else None,
            "tool_usage": self.tool_usage if done else None,
        }

    def events(self) -> list[dict[str, Any]]:
        """The streamed events, in order; partial images where the image is drawn."""
        prefix = "response.image_generation_call"
        where = {"item_id": self.item_id, "output_index": 0}
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": self.response("in_progress")},
            {"type": "response.output_item.added", "output_index": 0, "item": self.item("in_progress")},
            {"type": f"{prefix}.in_progress", **where},
            {"type": f"{prefix}.generating", **where},
        ]
        for index, preview in enumerate(self.partials):
            events.append(
                {
                    "type": f"{prefix}.partial_image",
                    **where,
                    "partial_image_index": index,
                    "partial_image_b64": preview,
                }
            )
        events += [
            {"type": f"{prefix}.completed", **where},
            {"type": "response.output_item.done", "output_index": 0, "item": self.item()},
            {"type": "response.completed", "response": self.response()},
        ]
        for number, event in enumerate(events):
            event["sequence_number"] = number
        return events
