"""Every call to the OpenAI Images API goes through here.

One SDK client per worker process with the SDK's own retries off: the job's policy decides what is
retried and when, so one image is never paid for three times behind our back. This module only speaks
HTTP: a call returns the images and the facts of the call (`CallFacts`: status, request id, latency,
usage, what the service resolved), and a failure raises `CallFailure`, transient or permanent, with a
reason a marketer can read and the same facts. Recording and charging the call is the worker's step.
"""

import binascii
import email.utils
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx2
import openai
import pybase64
from django.conf import settings

HTTP_TIMEOUT_ERRORS = (httpx2.TimeoutException,)
HTTP_TRANSPORT_ERRORS = (httpx2.TransportError, httpx2.StreamError)

_client: openai.OpenAI | None = None
_client_lock = threading.Lock()


class ShardedTransport(httpx2.BaseTransport):
    """The client's connections split into a few pools, each thread always using the same one.

    httpcore's pool takes one lock for every request and response, and under it probes each idle
    connection with a system call. With 64 calls in flight in one process that lock became the queue:
    answers waited hundreds of milliseconds to be read (the bench's "call overhead"). Sharding keeps the
    one client and its reuse of connections while each pool serves a handful of threads.
    """

    def __init__(self, *, shards: int) -> None:
        self._pools = [httpx2.HTTPTransport(limits=openai.DEFAULT_CONNECTION_LIMITS) for _ in range(shards)]
        self._next = itertools.count()
        self._mine = threading.local()

    def _pool(self) -> httpx2.HTTPTransport:
        index = getattr(self._mine, "index", None)
        if index is None:
            index = self._mine.index = next(self._next) % len(self._pools)
        return self._pools[index]

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        return self._pool().handle_request(request)

    def close(self) -> None:
        for pool in self._pools:
            pool.close()


PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")


def _http_client() -> httpx2.Client | None:
    shards = settings.OPENAI_CONNECTION_SHARDS
    if shards <= 1 or any(os.environ.get(name) for name in PROXY_VARIABLES):
        return None  # the SDK's own client (a transport of ours would bypass the proxy settings)
    return openai.DefaultHttpxClient(transport=ShardedTransport(shards=shards))


def get_client() -> openai.OpenAI:
    """The process's client, built lazily so a forked worker never shares its parent's sockets."""
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = openai.OpenAI(
                    api_key=settings.OPENAI_API_KEY or "demo-mode-key",
                    base_url=settings.OPENAI_BASE_URL or None,
                    max_retries=0,
                    timeout=settings.OPENAI_CALL_TIMEOUT,
                    http_client=_http_client(),
                )
    return _client


def reset_client() -> None:
    """Forget the client (tests and settings changes)."""
    global _client
    with _client_lock:
        if _client is not None:
            _client.close()
        _client = None


@dataclass
class CallFacts:
    """What one HTTP call was and what the service said about it, whatever the outcome."""

    endpoint: str
    latency_ms: int = 0
    http_status: int | None = None
    request_id: str = ""
    # On a failure: the exception's type and text, for operators.
    error_type: str = ""
    error_detail: str = ""
    # The usage as JSON, and the settings the service resolved (it resolves "auto" and may differ).
    usage: dict | None = None
    size: str = ""
    quality: str = ""
    background: str = ""
    output_format: str = ""
    # Responses API calls: the response's id, which the next turn continues from.
    response_id: str = ""


@dataclass
class CallFailure(Exception):
    reason: str
    transient: bool
    code: str = ""
    retry_after: float | None = None
    # None when no call was made (an input missing from storage, an unreadable image after the call).
    facts: CallFacts | None = None

    def __str__(self) -> str:
        return self.reason


@dataclass
class GeneratedImage:
    data: bytes
    index: int


@dataclass
class CallResult:
    images: list[GeneratedImage]
    facts: CallFacts


# Words for people, keyed by what went wrong.
REASONS = {
    "rate_limited": "OpenAI is busy right now (rate limit reached).",
    "server_error": "OpenAI had a temporary problem on its side.",
    "timeout": "OpenAI took too long to answer.",
    "connection": "The connection to OpenAI dropped.",
    "unreadable": "OpenAI sent back a response that could not be read.",
    "moderation_blocked": "OpenAI's safety system declined this prompt. Try describing it differently.",
    "insufficient_quota": "The workspace's OpenAI account has run out of credit; ask an admin to top it up.",
    "unauthorized": "The workspace's OpenAI key was refused; ask an admin.",
    "forbidden": (
        "OpenAI refused the workspace's account access to this model "
        "(the organisation may need to be verified); ask an admin."
    ),
}


def _retry_after_seconds(headers) -> float | None:
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed is None:
            return None
        return max(0.0, (parsed - datetime.now(UTC)).total_seconds())


def classify(error: Exception) -> CallFailure:
    """Split an SDK error into transient (retry later) or permanent (fail now, say why)."""
    if isinstance(error, openai.APITimeoutError):
        return CallFailure(REASONS["timeout"], transient=True, code="timeout")
    if isinstance(error, openai.APIConnectionError):
        return CallFailure(REASONS["connection"], transient=True, code="connection")
    if isinstance(error, openai.APIStatusError):
        if error.status_code in (400, 403) and (preview := _gated_preview(error)):
            return CallFailure(
                f"Your OpenAI organisation does not have access to {preview} output yet; "
                "ask an admin to request it, or choose PNG, JPEG or WebP.",
                transient=False,
                code=f"{preview.lower()}_access",
            )
        return failure_for_status(
            status=error.status_code,
            code=str(error.code or ""),
            message=_public_message(error),
            retry_after=_retry_after_seconds(error.response.headers),
        )
    # A 200 with a body that is not JSON, or JSON that is not an images response.
    return CallFailure(REASONS["unreadable"], transient=True, code="unreadable")


def failure_for_status(
    *, status: int, code: str, message: str, retry_after: float | None = None
) -> CallFailure:
    """An HTTP error status from the Images API as a CallFailure: from a call (classify), or from a line
    of an overnight batch's error file, which carries the same status, code and message."""
    if status == 429:
        if code == "insufficient_quota":
            return CallFailure(REASONS["insufficient_quota"], transient=False, code=code)
        return CallFailure(
            REASONS["rate_limited"], transient=True, code="rate_limited", retry_after=retry_after
        )
    if status >= 500:
        return CallFailure(
            REASONS["server_error"], transient=True, code=f"http_{status}", retry_after=retry_after
        )
    if status == 401:
        return CallFailure(REASONS["unauthorized"], transient=False, code="unauthorized")
    if status == 403:
        return CallFailure(REASONS["forbidden"], transient=False, code="forbidden")
    if code in ("moderation_blocked", "content_policy_violation"):
        return CallFailure(REASONS["moderation_blocked"], transient=False, code="moderation_blocked")
    if status == 408 or status == 409:
        return CallFailure(REASONS["server_error"], transient=True, code=f"http_{status}")
    return CallFailure(
        f"OpenAI could not accept this request: {message[:300] or 'no reason given'}",
        transient=False,
        code=code or f"http_{status}",
    )


def _gated_preview(error: openai.APIStatusError) -> str | None:
    """ "GIF" or "SVG" when the refusal says the organisation lacks that preview (a 403, or a 400 naming
    it); None for any other refusal."""
    message = _public_message(error).lower()
    if "access" not in message and "preview" not in message:
        return None
    for name in ("gif", "svg"):
        if name in message:
            return name.upper()
    return None


def _public_message(error: openai.APIStatusError) -> str:
    body = error.body if isinstance(error.body, dict) else {}
    message = body.get("message") or error.message or "no reason given"
    return str(message)[:300]


def _usage_json(usage) -> dict | None:
    if usage is None:
        return None
    return usage if isinstance(usage, dict) else usage.model_dump(mode="json")


def _decode_images(response) -> list[GeneratedImage]:
    images = []
    for index, item in enumerate(response.data or []):
        if not item.b64_json:
            raise ValueError("an image without data")
        images.append(GeneratedImage(data=_b64decode(item.b64_json), index=index))
    if not images:
        raise ValueError("a response without images")
    return images


@dataclass
class Outcome:
    """What a successful call returned, streamed or not."""

    images: list[GeneratedImage]
    size: str = ""
    quality: str = ""
    background: str = ""
    output_format: str = ""
    usage: object = None
    svg_usage: object = None


# One partial image: enough to show progress; each costs the worker a decode and the API ~100 tokens.
PARTIAL_IMAGES = 1
PartialHandler = Callable[[int, bytes], None]


FileTuple = tuple[str, bytes, str]


def _send(
    client: openai.OpenAI,
    params: dict,
    edit: bool,
    inputs: list[FileTuple],
    mask: bytes | None,
    stream: bool,
    timeout: float,
    markup: bytes | None = None,
):
    # The timeout goes on the request: a client copy per call (with_options) costs as much as the rest.
    params = params | {"timeout": timeout}
    if stream:
        params |= {"stream": True, "partial_images": PARTIAL_IMAGES}
    if edit:
        extra = {"mask": ("mask.png", mask, "image/png")} if mask else {}
        if markup:
            extra["markup"] = ("markup.png", markup, "image/png")
        return client.images.with_raw_response.edit(image=inputs, **params, **extra)
    return client.images.with_raw_response.generate(**params)


def _b64decode(text: str) -> bytes:
    # pybase64 validates and decodes with SIMD while holding the GIL for a fraction of binascii's time
    # (0.15 against 9.7 ms for 1.5 MB on the bench box); a bad character still raises binascii.Error.
    return pybase64.b64decode(text, validate=True)


def _sse_events(response) -> Iterator[dict]:
    """The JSON of each server-sent event in a streamed images response.

    Read here rather than by the SDK's decoder, which runs a regex over every byte: an image event is
    hundreds of kilobytes of base64, and this runs while dozens of calls share the worker's GIL.
    Transport errors become the SDK's own, so they are classified like any other.
    """
    buffer = bytearray()
    held_cr = False  # a CR ending one chunk may be the first half of a CRLF in the next
    try:
        for chunk in response.iter_bytes():
            if held_cr or b"\r" in chunk:
                chunk = (b"\r" if held_cr else b"") + chunk
                held_cr = chunk.endswith(b"\r")
                chunk = (chunk[:-1] if held_cr else chunk).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            search_from = max(0, len(buffer) - 1)  # only the new bytes can complete a blank line
            buffer += chunk
            while (end := buffer.find(b"\n\n", search_from)) != -1:
                block = buffer[:end]
                del buffer[: end + 2]
                search_from = 0
                data = b"\n".join(
                    line[5:].removeprefix(b" ") for line in block.split(b"\n") if line.startswith(b"data:")
                )
                if not data or data.startswith(b"[DONE]"):
                    continue
                event = json.loads(data)
                if not isinstance(event, dict):
                    raise ValueError("an event that is not a JSON object")
                if event.get("error"):
                    error = event["error"]
                    message = error.get("message") if isinstance(error, dict) else None
                    raise openai.APIError(
                        str(message or "An error occurred during streaming"), response.request, body=error
                    )
                yield event
    except HTTP_TIMEOUT_ERRORS as error:
        raise openai.APITimeoutError(request=response.request) from error
    except HTTP_TRANSPORT_ERRORS as error:
        raise openai.APIConnectionError(request=response.request) from error


def _read_stream(response, on_partial: PartialHandler | None) -> Outcome:
    final = None
    for event in _sse_events(response):
        kind = event.get("type") or ""
        if kind.endswith(".partial_image"):
            if on_partial is not None:
                on_partial(int(event.get("partial_image_index") or 0), _b64decode(event["b64_json"]))
        elif kind.endswith(".completed"):
            final = event
    if final is None or not final.get("b64_json"):
        raise ValueError("the stream ended without a final image")
    return Outcome(
        images=[GeneratedImage(data=_b64decode(final["b64_json"]), index=0)],
        size=final.get("size") or "",
        quality=final.get("quality") or "",
        background=final.get("background") or "",
        output_format=final.get("output_format") or "",
        usage=final.get("usage"),
    )


def call(
    *,
    params: dict,
    edit: bool,
    stream: bool,
    timeout: float,
    inputs: list[FileTuple] | None = None,
    mask: bytes | None = None,
    markup: bytes | None = None,
    on_partial: PartialHandler | None = None,
) -> CallResult:
    """Call images.edit (`edit`) or images.generate with `params` exactly as given.

    Returns the images and the facts of the call; raises CallFailure, carrying the facts, on failure.
    With `stream`, partial images are handed to `on_partial` as they arrive.
    """
    client = get_client()
    started = time.monotonic()
    facts = CallFacts(endpoint="images.edit" if edit else "images.generate")
    try:
        raw = _send(client, params, edit, inputs or [], mask, stream, timeout, markup)
        facts.http_status = raw.status_code
        facts.request_id = raw.headers.get("x-request-id", "")
        if stream:
            try:
                outcome = _read_stream(raw.http_response, on_partial)
            finally:
                raw.http_response.close()
        else:
            response = raw.parse()
            outcome = Outcome(
                images=_decode_images(response),
                size=response.size or "",
                quality=response.quality or "",
                background=response.background or "",
                output_format=response.output_format or "",
                usage=response.usage,
                svg_usage=response.svg_usage,
            )
    except (openai.APIError, ValueError, binascii.Error, TypeError, KeyError) as error:
        failure = classify(error)
        facts.latency_ms = int((time.monotonic() - started) * 1000)
        facts.error_type = type(error).__name__
        facts.error_detail = str(error)[:2000]
        if isinstance(error, openai.APIStatusError):
            facts.http_status = error.status_code
            facts.request_id = error.request_id or ""
        failure.facts = facts
        raise failure from error
    facts.latency_ms = int((time.monotonic() - started) * 1000)
    facts.size = outcome.size
    facts.quality = outcome.quality
    facts.background = outcome.background
    facts.output_format = outcome.output_format
    facts.usage = _usage_json(outcome.usage)
    if outcome.svg_usage is not None and facts.usage is not None:
        # The SVG author's tokens ride along in the call's usage; spend.charge makes them a line of their own.
        facts.usage["svg_usage"] = _usage_json(outcome.svg_usage)
    return CallResult(images=outcome.images, facts=facts)


# --- The Responses API, for conversation turns ------------------------------------------------------------


def _data_url(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{pybase64.b64encode(data).decode('ascii')}"


def turn_request(
    *,
    mainline_model: str,
    image_model: str,
    message: str,
    previous_response_id: str,
    first_image: FileTuple | None,
) -> dict:
    """The Responses API request of one conversation turn, exactly as sent.

    The image model is always named: the tool's default has changed between SDK versions (a retired
    model once), and the workspace must say what it pays for. The first turn of a thread shows the
    image; later ones continue the stored response, which already holds it.
    """
    content: list[dict] = [{"type": "input_text", "text": message}]
    if first_image is not None:
        _name, data, content_type = first_image
        content.append({"type": "input_image", "image_url": _data_url(data, content_type)})
    params: dict = {
        "model": mainline_model,
        "input": [{"role": "user", "content": content}],
        "tools": [
            {
                "type": "image_generation",
                "model": image_model,
                "action": "edit",
                "partial_images": PARTIAL_IMAGES,
            }
        ],
        "tool_choice": {"type": "image_generation"},
    }
    if previous_response_id:
        params["previous_response_id"] = previous_response_id
    return params


def _dump(value) -> dict | None:
    if value is None:
        return None
    return value if isinstance(value, dict) else value.model_dump(mode="json")


def _read_response_stream(response, on_partial: PartialHandler | None) -> dict:
    """The final Response (as JSON) of a streamed Responses API call, handing partial images over."""
    final = None
    for event in _sse_events(response):
        kind = event.get("type") or ""
        if kind == "response.image_generation_call.partial_image":
            if on_partial is not None:
                index = int(event.get("partial_image_index") or 0)
                on_partial(index, _b64decode(event["partial_image_b64"]))
        elif kind in ("response.completed", "response.failed", "response.incomplete"):
            final = event.get("response") or {}
    if final is None:
        raise ValueError("the stream ended without a final response")
    return final


class ResponseFailed(Exception):
    """The response finished without an image (failed, incomplete, or the tool's call failed)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def _turn_outcome(final: dict) -> tuple[Outcome, str]:
    """The image of a finished response, and the response id; ResponseFailed when there is none."""
    if final.get("status") not in (None, "completed"):
        error = final.get("error") or {}
        raise ResponseFailed(
            str(error.get("message") or f"the response is {final.get('status')}"),
            str(error.get("code") or ""),
        )
    calls = [item for item in final.get("output") or [] if item.get("type") == "image_generation_call"]
    done = [item for item in calls if item.get("result")]
    if not done:
        error = next((item.get("error") for item in calls if item.get("error")), None) or {}
        raise ResponseFailed(
            str(error.get("message") or "the response has no image"), str(error.get("code") or "")
        )
    item = done[-1]
    return (
        Outcome(
            images=[GeneratedImage(data=_b64decode(item["result"]), index=0)],
            size=item.get("size") or "",
            quality=item.get("quality") or "",
            background=item.get("background") or "",
            output_format=item.get("output_format") or "",
        ),
        str(final.get("id") or ""),
    )


def respond(
    *,
    mainline_model: str,
    image_model: str,
    message: str,
    previous_response_id: str,
    first_image: FileTuple | None,
    timeout: float,
    on_partial: PartialHandler | None = None,
) -> CallResult:
    """One conversation turn: client.responses.create with the image_generation tool, streamed.

    Returns the image and the facts of the call, whose usage holds both priced parts (the mainline's
    `usage` and the tool's `tool_usage.image_gen`) and the response id; raises CallFailure like `call`.
    """
    client = get_client()
    started = time.monotonic()
    facts = CallFacts(endpoint="responses.create")
    params = turn_request(
        mainline_model=mainline_model,
        image_model=image_model,
        message=message,
        previous_response_id=previous_response_id,
        first_image=first_image,
    )
    try:
        raw = client.responses.with_raw_response.create(**params, stream=True, timeout=timeout)
        facts.http_status = raw.status_code
        facts.request_id = raw.headers.get("x-request-id", "")
        try:
            final = _read_response_stream(raw.http_response, on_partial)
        finally:
            raw.http_response.close()
        facts.response_id = str(final.get("id") or "")
        # Usage first: a response that ran but made no image is still billed for what it used.
        facts.usage = {
            "model": mainline_model,
            "image_model": image_model,
            "response_id": facts.response_id,
            "response": _dump(final.get("usage")),
            "image_gen": _dump((final.get("tool_usage") or {}).get("image_gen")),
        }
        outcome, _ = _turn_outcome(final)
    except ResponseFailed as error:
        facts.latency_ms = int((time.monotonic() - started) * 1000)
        facts.error_type = "ResponseFailed"
        facts.error_detail = str(error)[:2000]
        if error.code in ("moderation_blocked", "content_policy_violation"):
            failure = CallFailure(REASONS["moderation_blocked"], transient=False, code="moderation_blocked")
        else:
            failure = CallFailure(
                f"OpenAI answered without an image: {str(error)[:300]}",
                transient=False,
                code=error.code or "no_image",
            )
        failure.facts = facts
        raise failure from error
    except (openai.APIError, ValueError, binascii.Error, TypeError, KeyError, AttributeError) as error:
        failure = classify(error)
        facts.usage = None  # nothing finished, nothing billed
        facts.latency_ms = int((time.monotonic() - started) * 1000)
        facts.error_type = type(error).__name__
        facts.error_detail = str(error)[:2000]
        if isinstance(error, openai.APIStatusError):
            facts.http_status = error.status_code
            facts.request_id = error.request_id or ""
        failure.facts = facts
        raise failure from error
    facts.latency_ms = int((time.monotonic() - started) * 1000)
    facts.size = outcome.size
    facts.quality = outcome.quality
    facts.background = outcome.background
    facts.output_format = outcome.output_format
    return CallResult(images=outcome.images, facts=facts)


def check_provenance(*, data: bytes, filename: str, content_type: str, timeout: float = 60.0) -> dict:
    """OpenAI's content provenance check of one file: its C2PA and SynthID results, as JSON.

    Raises CallFailure (transient or not), like an image call, so the caller decides when to try again.
    """
    try:
        result = get_client().content_provenance_checks.create(
            file=(filename, data, content_type), timeout=timeout
        )
    except (openai.APIError, ValueError, TypeError) as error:
        raise classify(error) from error
    return result.model_dump(mode="json")
