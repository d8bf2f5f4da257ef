"""The Images API stand-in, driven over HTTP through the real ``openai`` SDK (no Django, no database)."""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types import ImagesResponse
from PIL import Image

from standin import StandinServer, input_image_tokens

INPUT_FIDELITY_ON_GPT_IMAGE_2 = {
    "message": "The model 'gpt-image-2' does not support the 'input_fidelity' parameter.",
    "type": "image_generation_user_error",
    "param": "input_fidelity",
    "code": "invalid_input_fidelity_model",
}


@pytest.fixture(scope="module")
def server() -> Iterator[StandinServer]:
    with StandinServer(port=0) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_server(server: StandinServer) -> Iterator[None]:
    server.reset()
    server.latency, server.latency_jitter = 0.0, 0.0
    yield
    server.reset()
    server.latency = 0.0


@pytest.fixture
def client(server: StandinServer) -> OpenAI:
    return OpenAI(api_key="test", base_url=server.base_url, max_retries=0, timeout=20)


def decode(b64_json: str | None) -> Image.Image:
    assert b64_json
    image = Image.open(io.BytesIO(base64.b64decode(b64_json)))
    image.load()
    return image


def picture(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGB", colour: Any = (200, 80, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, fmt)
    return buffer.getvalue()


def png_file(size: tuple[int, int] = (1024, 1024), mode: str = "RGB", name: str = "in.png") -> tuple:
    colour = (200, 80, 40, 255) if mode == "RGBA" else (200, 80, 40)
    return (name, picture(size, "PNG", mode, colour), "image/png")


def control(server: StandinServer, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
    root = server.base_url.removesuffix("/v1")
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(root + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read(), error.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()


# -- generations


def test_it_generates_n_real_images_of_a_custom_size(client: OpenAI, server: StandinServer) -> None:
    result = client.images.generate(model="gpt-image-2", prompt="a fox in the snow", size="1536x864", n=3)

    images = [decode(item.b64_json) for item in result.data or []]
    assert [(image.size, image.format) for image in images] == [((1536, 864), "PNG")] * 3
    assert len({image.tobytes() for image in images}) == 3, "each of the n images should differ"
    assert (result.size, result.quality, result.background, result.output_format) == (
        "1536x864",
        "medium",
        "opaque",
        "png",
    )
    assert result._request_id and result._request_id.startswith("req_") and len(result._request_id) == 36
    usage = result.usage
    assert usage is not None and usage.output_tokens_details is not None
    assert usage.input_tokens_details.text_tokens == len("a fox in the snow") // 4 + 1
    assert usage.output_tokens == 3 * round(1756 * 1536 * 864 / 1024**2)
    assert usage.output_tokens_details.image_tokens == usage.output_tokens
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert server.requests[-1].fields == {
        "model": "gpt-image-2",
        "prompt": "a fox in the snow",
        "size": "1536x864",
        "n": 3,
    }
    assert server.requests[-1].status == 200


def test_it_resolves_auto_size_and_quality(client: OpenAI) -> None:
    result = client.images.generate(model="gpt-image-1.5", prompt="a teapot", size="auto", quality="auto")

    assert (result.size, result.quality) == ("1024x1024", "medium")
    assert decode(result.data[0].b64_json).size == (1024, 1024)  # type: ignore[index]


def test_it_encodes_jpeg_with_the_requested_compression(client: OpenAI) -> None:
    def jpeg_bytes(compression: int) -> bytes:
        result = client.images.generate(
            model="gpt-image-2", prompt="a lighthouse", output_format="jpeg", output_compression=compression
        )
        assert result.output_format == "jpeg"
        return base64.b64decode(result.data[0].b64_json or "")  # type: ignore[index]

    heavily_compressed, lightly_compressed = jpeg_bytes(20), jpeg_bytes(95)
    assert Image.open(io.BytesIO(heavily_compressed)).format == "JPEG"
    assert len(heavily_compressed) < len(lightly_compressed)


def test_it_gives_a_transparent_png_an_alpha_channel(client: OpenAI) -> None:
    result = client.images.generate(
        model="gpt-image-1.5", prompt="a sticker of a cat", background="transparent", size="1024x1536"
    )

    image = decode(result.data[0].b64_json)  # type: ignore[index]
    assert (image.format, image.mode, image.size, result.background) == (
        "PNG",
        "RGBA",
        (1024, 1536),
        "transparent",
    )
    assert image.getpixel((0, 0))[3] == 0
    assert image.getpixel((512, 768))[3] == 255


def test_it_makes_transparent_webp(client: OpenAI) -> None:
    result = client.images.generate(
        model="gpt-image-1-mini", prompt="an icon", background="transparent", output_format="webp"
    )

    image = decode(result.data[0].b64_json)  # type: ignore[index]
    assert (image.format, image.mode) == ("WEBP", "RGBA")
    assert image.getpixel((2, 2))[3] == 0


@pytest.mark.parametrize(
    ("model", "options", "expected_size"),
    [
        ("gpt-image-2.5-sunburst", {"quality": "xhigh", "size": "2560x1440"}, (2560, 1440)),
        ("gpt-image-2.5-flare-2026-09-08", {"quality": "max", "complexity": "high"}, (1024, 1024)),
        ("gpt-image-2", {"size": "3840x2160", "complexity": "low"}, (3840, 2160)),
        ("gpt-image-2-2026-04-21", {"size": "768x2304", "background": "transparent"}, (768, 2304)),
        ("chatgpt-image-latest", {"size": "1536x1024", "moderation": "low"}, (1536, 1024)),
    ],
)
def test_it_accepts_what_each_model_supports(
    client: OpenAI, model: str, options: dict[str, Any], expected_size: tuple[int, int]
) -> None:
    result = client.images.generate(model=model, prompt="a bridge at night", **options)

    assert decode(result.data[0].b64_json).size == expected_size  # type: ignore[index]
    assert result.quality == options.get("quality", "medium")


@pytest.mark.parametrize(
    ("options", "param", "code"),
    [
        ({"model": "gpt-image-9"}, "model", "model_not_found"),
        ({"model": "gpt-image-1"}, "model", "model_not_found"),
        ({"model": "dall-e-3"}, "model", "model_not_found"),
        ({"model": openai.omit}, "model", "model_not_found"),
        ({"prompt": ""}, "prompt", "string_below_min_length"),
        ({"prompt": "x" * 32_001}, "prompt", "string_above_max_length"),
        ({"n": 0}, "n", "integer_below_min_value"),
        ({"n": 11}, "n", "integer_above_max_value"),
        ({"n": 2, "stream": True}, "n", "invalid_value"),
        ({"size": "1000x1008"}, "size", "invalid_value"),  # not multiples of 16
        ({"size": "2448x768"}, "size", "invalid_value"),  # wider than 3:1
        ({"size": "768x768"}, "size", "invalid_value"),  # under 655,360 pixels
        ({"size": "3856x1440"}, "size", "invalid_value"),  # an edge over 3840
        ({"size": "4096x2048"}, "size", "invalid_value"),  # over 8,294,400 pixels and the edge limit
        ({"size": "wide"}, "size", "invalid_value"),
        ({"model": "gpt-image-1.5", "size": "1536x864"}, "size", "invalid_value"),
        ({"quality": "xhigh"}, "quality", "unsupported_value"),
        ({"quality": "hd"}, "quality", "unsupported_value"),
        ({"quality": "ultra"}, "quality", "invalid_value"),
        ({"background": "transparent", "output_format": "jpeg"}, "background", "invalid_value"),
        ({"model": "chatgpt-image-latest", "background": "transparent"}, "background", "invalid_value"),
        ({"background": "clear"}, "background", "invalid_value"),
        ({"output_format": "gif"}, "output_format", "unsupported_value"),  # not on gpt-image-2
        ({"output_format": "bmp"}, "output_format", "invalid_value"),
        ({"output_compression": 50}, "output_compression", "invalid_value"),  # png has no compression
        (
            {"output_format": "webp", "output_compression": 101},
            "output_compression",
            "integer_above_max_value",
        ),
        ({"moderation": "strict"}, "moderation", "invalid_value"),
        ({"model": "gpt-image-1.5", "complexity": "high"}, "complexity", "unsupported_parameter"),
        ({"complexity": "extreme"}, "complexity", "invalid_value"),
        ({"partial_images": 4}, "partial_images", "integer_above_max_value"),
        ({"response_format": "url"}, "response_format", "unsupported_parameter"),
        ({"style": "vivid"}, "style", "unsupported_parameter"),
        ({"extra_body": {"seed": 7}}, "seed", "unknown_parameter"),
    ],
)
def test_it_rejects_invalid_generation_requests(
    client: OpenAI, server: StandinServer, options: dict[str, Any], param: str, code: str
) -> None:
    arguments = {"model": "gpt-image-2", "prompt": "a harbour", **options}

    with pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(**arguments)

    assert (raised.value.param, raised.value.code, raised.value.type) == (
        param,
        code,
        "invalid_request_error",
    )
    assert raised.value.message
    assert raised.value.request_id and raised.value.request_id.startswith("req_")
    assert server.requests[-1].status == 400


def test_it_explains_streaming_needs_one_image(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"Streaming is only supported with n=1\."):
        client.images.generate(model="gpt-image-2", prompt="boats", n=2, stream=True)


def test_it_says_retired_models_were_shut_down(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="shut down on October 23, 2026"):
        client.images.generate(model="gpt-image-1", prompt="boats")


# -- edits


def test_it_keeps_the_order_of_several_edit_images(client: OpenAI, server: StandinServer) -> None:
    images = [
        ("first.png", picture((1536, 1024)), "image/png"),
        ("second.jpg", picture((512, 512), "JPEG"), "image/jpeg"),
        ("third.webp", picture((640, 960), "WEBP"), "image/webp"),
    ]

    result = client.images.edit(model="gpt-image-1.5", prompt="combine them", image=images)

    recorded = server.requests[-1]
    assert [(name, filename, kind) for name, filename, kind, _ in recorded.files] == [
        ("image[]", "first.png", "image/png"),
        ("image[]", "second.jpg", "image/jpeg"),
        ("image[]", "third.webp", "image/webp"),
    ]
    assert [data for *_, data in recorded.files] == [data for _, data, _ in images]
    # size=auto follows the first image's shape
    assert result.size == "1536x1024"
    assert decode(result.data[0].b64_json).size == (1536, 1024)  # type: ignore[index]
    expected_image_tokens = sum(input_image_tokens(*size) for size in [(1536, 1024), (512, 512), (640, 960)])
    assert (
        result.usage is not None and result.usage.input_tokens_details.image_tokens == expected_image_tokens
    )


def test_it_derives_an_edit_from_the_first_image_and_repaints_the_masked_area(client: OpenAI) -> None:
    mask = Image.new("RGBA", (1024, 1024), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (512, 0, 1024, 1024))  # right half is the area to edit
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")

    result = client.images.edit(
        model="gpt-image-2",
        prompt="paint the right side",
        image=png_file(),
        mask=("mask.png", buffer.getvalue(), "image/png"),
        quality="high",
    )

    edited = decode(result.data[0].b64_json).convert("RGB")  # type: ignore[index]
    kept, repainted = edited.getpixel((200, 300)), edited.getpixel((800, 300))
    source = (200, 80, 40)
    distance = lambda pixel: sum(abs(a - b) for a, b in zip(pixel, source, strict=True))  # noqa: E731
    assert distance(kept) < distance(repainted)
    assert result.quality == "high"


def test_it_rejects_a_mask_of_other_dimensions(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="same dimensions") as raised:
        client.images.edit(
            model="gpt-image-1.5",
            prompt="x",
            image=png_file((1024, 1024)),
            mask=png_file((512, 512), "RGBA", "mask.png"),
        )
    assert raised.value.param == "mask"


def test_it_rejects_a_mask_without_alpha(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="alpha channel") as raised:
        client.images.edit(
            model="gpt-image-1.5", prompt="x", image=png_file(), mask=png_file(name="mask.png")
        )
    assert raised.value.param == "mask"


def test_it_rejects_octet_stream_uploads_with_the_real_message(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.edit(model="gpt-image-1.5", prompt="x", image=picture((64, 64)))

    assert raised.value.body["message"] == (  # type: ignore[index]
        "Invalid file 'image': unsupported mimetype ('application/octet-stream'). "
        "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'."
    )
    assert raised.value.param == "image"


def test_it_rejects_bytes_that_are_not_an_image(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="Invalid image file") as raised:
        client.images.edit(model="gpt-image-1.5", prompt="x", image=("a.png", b"not a png", "image/png"))
    assert raised.value.code == "invalid_image_file"


def test_it_rejects_more_than_sixteen_images(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="at most 16") as raised:
        client.images.edit(model="gpt-image-1.5", prompt="x", image=[png_file((32, 32))] * 17)
    assert raised.value.param == "image"


def test_it_rejects_input_fidelity_on_gpt_image_2_exactly_like_openai(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.edit(model="gpt-image-2", prompt="x", image=png_file(), input_fidelity="low")

    assert raised.value.body == INPUT_FIDELITY_ON_GPT_IMAGE_2


@pytest.mark.parametrize(
    ("model", "fidelity", "accepted"),
    [("gpt-image-1.5", "high", True), ("gpt-image-1.5", "low", True), ("gpt-image-1-mini", "high", False)],
)
def test_it_checks_input_fidelity_per_model(
    client: OpenAI, model: str, fidelity: str, accepted: bool
) -> None:
    def edit() -> ImagesResponse:
        return client.images.edit(model=model, prompt="x", image=png_file(), input_fidelity=fidelity)  # type: ignore[arg-type]

    if accepted:
        assert edit().data
    else:
        with pytest.raises(openai.BadRequestError) as raised:
            edit()
        assert raised.value.param == "input_fidelity"


def test_it_accepts_json_edits_with_data_urls(client: OpenAI, server: StandinServer) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(picture((1024, 1536))).decode()

    result = client.post(
        "/images/edits",
        body={"model": "gpt-image-2", "prompt": "make it autumn", "images": [{"image_url": data_url}]},
        cast_to=ImagesResponse,
    )

    assert result.size == "1024x1536"
    assert server.requests[-1].files[0][:3] == ("images", "", "image/png")
    assert "images" not in server.requests[-1].fields


# -- streaming


def test_it_streams_partial_images_then_the_completed_image(client: OpenAI) -> None:
    stream = client.images.generate(
        model="gpt-image-2", prompt="a kite", size="1024x1536", stream=True, partial_images=2
    )
    events = list(stream)

    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [getattr(event, "partial_image_index", None) for event in events] == [0, 1, None]
    assert all(decode(event.b64_json).size == (1024, 1536) for event in events)
    completed = events[-1]
    assert completed.type == "image_generation.completed"
    assert completed.usage.output_tokens == round(1756 * 1024 * 1536 / 1024**2)
    assert completed.usage.input_tokens_details.text_tokens >= 1
    assert (completed.size, completed.quality, completed.output_format) == ("1024x1536", "medium", "png")


def test_it_streams_edits_as_image_edit_events(client: OpenAI, server: StandinServer) -> None:
    server.latency = 0.3
    started = time.monotonic()

    events = list(client.images.edit(model="gpt-image-1.5", prompt="x", image=png_file(), stream=True))

    assert [event.type for event in events] == ["image_edit.completed"]
    assert time.monotonic() - started >= 0.3


# -- faults


@pytest.mark.parametrize(
    ("fault", "exception", "status", "code"),
    [
        ("429", openai.RateLimitError, 429, "rate_limit_exceeded"),
        ("quota", openai.RateLimitError, 429, "insufficient_quota"),
        ("500", openai.InternalServerError, 500, None),
        ("503", openai.InternalServerError, 503, None),
        ("moderation", openai.BadRequestError, 400, "moderation_blocked"),
        ("401", openai.AuthenticationError, 401, "invalid_api_key"),
        ("403", openai.PermissionDeniedError, 403, None),
    ],
)
def test_it_answers_injected_faults_with_openai_errors(
    client: OpenAI,
    server: StandinServer,
    fault: str,
    exception: type[openai.APIStatusError],
    status: int,
    code: str,
) -> None:
    server.inject(fault)

    with pytest.raises(exception) as raised:
        client.images.generate(model="gpt-image-2", prompt="a harbour")

    assert (raised.value.status_code, raised.value.code) == (status, code)
    assert raised.value.response.headers["x-request-id"].startswith("req_")
    assert server.requests[-1].fault == fault
    assert client.images.generate(model="gpt-image-2", prompt="a harbour").data, "a fault is used once"


def test_it_sends_retry_after_with_rate_limits(client: OpenAI, server: StandinServer) -> None:
    server.inject("429", "429:3")

    retry_after = []
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as raised:
            client.images.generate(model="gpt-image-2", prompt="x")
        retry_after.append(raised.value.response.headers["retry-after"])

    assert retry_after == ["1", "3"]


def test_it_words_quota_and_moderation_errors_like_openai(client: OpenAI, server: StandinServer) -> None:
    server.inject("quota", "moderation")

    with pytest.raises(openai.RateLimitError, match="You exceeded your current quota") as quota:
        client.images.generate(model="gpt-image-2", prompt="x")
    with pytest.raises(openai.BadRequestError, match=r"safety_violations=\[sexual\]") as moderation:
        client.images.generate(model="gpt-image-2", prompt="x")

    assert quota.value.type == "insufficient_quota"
    assert moderation.value.type == "image_generation_user_error"
    assert moderation.value.request_id and moderation.value.request_id in moderation.value.message


def test_it_lets_a_slow_answer_time_the_client_out(client: OpenAI, server: StandinServer) -> None:
    server.inject("slow:5")
    started = time.monotonic()

    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.5).images.generate(model="gpt-image-2", prompt="x")

    assert time.monotonic() - started < 3
    assert client.images.generate(model="gpt-image-2", prompt="x").data, "the server keeps serving"


def test_it_drops_the_connection_without_an_answer(client: OpenAI, server: StandinServer) -> None:
    server.inject("drop")

    with pytest.raises(openai.APIConnectionError) as raised:
        client.images.generate(model="gpt-image-2", prompt="x")

    assert not isinstance(raised.value, openai.APITimeoutError)
    assert (server.requests[-1].fault, server.requests[-1].status) == ("drop", 0)


def test_it_answers_garbage_that_the_sdk_cannot_parse(client: OpenAI, server: StandinServer) -> None:
    server.inject("garbage")

    # openai 3.52 does not wrap this: a JSON content type with a non-JSON body raises json's own error.
    with pytest.raises(json.JSONDecodeError):
        client.images.generate(model="gpt-image-2", prompt="x")


def test_it_uses_queued_faults_in_order(client: OpenAI, server: StandinServer) -> None:
    server.inject("500", "ok", "429")
    outcomes = []
    for _ in range(4):
        try:
            client.images.generate(model="gpt-image-2", prompt="x", quality="low")
            outcomes.append("ok")
        except openai.APIStatusError as error:
            outcomes.append(str(error.status_code))

    assert outcomes == ["500", "ok", "429", "ok"]
    assert [request.fault for request in server.requests] == ["500", None, "429", None]


def test_it_triggers_a_fault_named_in_the_prompt(client: OpenAI, server: StandinServer) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(model="gpt-image-2", prompt="a cat [standin:moderation]")

    assert raised.value.code == "moderation_blocked"
    assert server.requests[-1].fault == "moderation"


def test_it_refuses_unknown_fault_names(server: StandinServer) -> None:
    with pytest.raises(ValueError, match="Unknown stand-in fault"):
        server.inject("explode")
    assert server.queued_faults() == []


def test_it_requires_a_bearer_token(client: OpenAI, server: StandinServer) -> None:
    server.inject("500")

    with pytest.raises(openai.AuthenticationError, match="didn't provide an API key"):
        client.images.generate(model="gpt-image-2", prompt="x", extra_headers={"Authorization": openai.omit})

    assert server.queued_faults() == ["500"], "a request without a key does not use up a fault"


def test_it_answers_unknown_endpoints_with_404(client: OpenAI) -> None:
    # Variations were a DALL·E 2 feature; the stand-in, like the current API for GPT image models, has none.
    with pytest.raises(openai.NotFoundError, match=r"Invalid URL \(POST /v1/images/variations\)"):
        client.post("/images/variations", body={"model": "gpt-image-2"}, cast_to=ImagesResponse)


# -- latency, headers, concurrency


def test_it_waits_the_configured_latency_but_not_for_front_door_errors(
    client: OpenAI, server: StandinServer
) -> None:
    server.latency = 0.4

    started = time.monotonic()
    raw = client.images.with_raw_response.generate(model="gpt-image-2", prompt="x", quality="low")
    generation_seconds = time.monotonic() - started
    server.inject("429")
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError):
        client.images.generate(model="gpt-image-2", prompt="x")
    rate_limit_seconds = time.monotonic() - started

    assert generation_seconds >= 0.4
    assert rate_limit_seconds < 0.3
    assert int(raw.headers["openai-processing-ms"]) >= 400
    assert raw.headers["x-request-id"].startswith("req_")


def test_it_serves_requests_concurrently(client: OpenAI, server: StandinServer) -> None:
    server.latency = 1.0

    def generate(index: int) -> str | None:
        return client.images.generate(model="gpt-image-2", prompt=f"tile {index}", quality="low")._request_id

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        request_ids = list(pool.map(generate, range(16)))
    elapsed = time.monotonic() - started

    assert elapsed < 3, f"16 requests of 1 s each took {elapsed:.1f} s: they were served one after another"
    assert len(set(request_ids)) == 16


# -- HTTP control endpoints


def test_it_takes_faults_and_latency_over_http(client: OpenAI, server: StandinServer) -> None:
    assert control(server, "POST", "/_standin/faults", {"faults": ["429", "ok"]})[0] == 200
    assert control(server, "POST", "/_standin/latency", {"latency": 0.25}) == (
        200,
        {"ok": True, "faults": ["429", "ok"], "latency": 0.25},
    )

    with pytest.raises(openai.RateLimitError):
        client.images.generate(model="gpt-image-2", prompt="x")
    started = time.monotonic()
    assert client.images.generate(model="gpt-image-2", prompt="x").data
    assert time.monotonic() - started >= 0.25
    assert control(server, "POST", "/_standin/faults", {"faults": ["bogus"]})[0] == 400


def test_it_lists_recorded_requests_over_http_without_file_bytes(
    client: OpenAI, server: StandinServer
) -> None:
    server.inject("500")
    with pytest.raises(openai.InternalServerError):
        client.images.generate(model="gpt-image-2", prompt="first")
    client.images.edit(model="gpt-image-1.5", prompt="second", image=[png_file((64, 64), name="a.png")])

    status, recorded = control(server, "GET", "/_standin/requests")

    assert status == 200
    assert [(item["path"], item["status"], item["fault"]) for item in recorded] == [
        ("/v1/images/generations", 500, "500"),
        ("/v1/images/edits", 200, None),
    ]
    assert recorded[1]["fields"] == {"prompt": "second", "model": "gpt-image-1.5"}
    assert recorded[1]["files"] == [
        {
            "field": "image[]",
            "filename": "a.png",
            "content_type": "image/png",
            "size": len(png_file((64, 64))[1]),
        }
    ]
    assert recorded[0]["headers"]["authorization"] == "Bearer ***"


def test_it_resets_over_http_and_reports_health(client: OpenAI, server: StandinServer) -> None:
    client.images.generate(model="gpt-image-2", prompt="x")
    server.inject("500")

    assert control(server, "POST", "/_standin/reset", {})[0] == 200
    assert server.requests == [] and server.queued_faults() == []
    assert control(server, "GET", "/healthz") == (200, "ok")
