"""The stand-in's GIF, SVG and markup answers and refusals, through the real SDK over HTTP (no database)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from PIL import Image

from standin import StandinServer


@pytest.fixture(scope="module")
def server() -> Iterator[StandinServer]:
    with StandinServer(port=0) as running:
        yield running


@pytest.fixture
def client(server: StandinServer) -> OpenAI:
    server.reset()
    server.use_models(None)
    return OpenAI(api_key="test", base_url=server.base_url, max_retries=0, timeout=20)


def png(size=(320, 240), mode="RGB", colour=(200, 120, 40)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, format="PNG")
    return out.getvalue()


def overlay(size=(320, 240)) -> bytes:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((255, 0, 0, 255), (10, 10, 40, 40))
    out = io.BytesIO()
    layer.save(out, format="PNG")
    return out.getvalue()


def test_a_gif_has_the_requested_frames_and_delay(client: OpenAI) -> None:
    answer = client.images.generate(
        model="gpt-image-2.6-sunburst", prompt="a bouncing lemon", output_format="gif", frame_count=3,
        frame_duration_ms=123, quality="low",
    )  # fmt: skip
    with Image.open(io.BytesIO(base64.b64decode(answer.data[0].b64_json))) as gif:
        assert gif.format == "GIF" and gif.n_frames == 3
        assert gif.info["duration"] == 120  # rounded to the nearest 10 ms, as the SDK says
    assert answer.output_format == "gif"


def test_an_svg_is_a_real_svg_with_its_own_usage(client: OpenAI) -> None:
    answer = client.images.generate(
        model="gpt-image-2.6-flare", prompt="a lemon logo", output_format="svg",
        svg={"model": "gpt-5.5", "reasoning": {"effort": "high"}},
    )  # fmt: skip
    text = base64.b64decode(answer.data[0].b64_json).decode()
    assert text.startswith("<svg") and "<script" not in text
    assert answer.svg_usage.model == "gpt-5.5"
    assert answer.svg_usage.reasoning_tokens == 4000
    assert answer.svg_usage.total_tokens == answer.svg_usage.input_tokens + answer.svg_usage.output_tokens


def test_the_hostile_marker_makes_an_svg_that_would_run(client: OpenAI) -> None:
    answer = client.images.generate(
        model="gpt-image-2.6-flare", prompt="a lemon [standin:svgscript]", output_format="svg"
    )
    text = base64.b64decode(answer.data[0].b64_json).decode()
    assert "<script>" in text and 'onload="' in text and "<foreignObject" in text


def test_a_markup_at_the_first_inputs_size_is_accepted(client: OpenAI, server: StandinServer) -> None:
    client.images.edit(
        model="gpt-image-2.5-sunburst",
        prompt="make the circled part red",
        image=[("a.png", png(), "image/png")],
        markup=("markup.png", overlay(), "image/png"),
    )
    assert [part[0] for part in server.requests[-1].files] == ["image[]", "markup"]


@pytest.mark.parametrize(
    ("options", "param", "message"),
    [
        ({"output_format": "gif"}, "output_format", "does not support output_format 'gif'"),
        ({"model": "gpt-image-2.6-flare", "output_format": "gif", "frame_count": 17}, "frame_count", "<= 16"),
        ({"model": "gpt-image-2.6-flare", "output_format": "gif", "frame_count": 1}, "frame_count", ">= 2"),
        (
            {"model": "gpt-image-2.6-flare", "output_format": "gif", "output_compression": 50},
            "output_compression",
            "",
        ),
        ({"model": "gpt-image-2.6-flare", "output_format": "svg", "n": 2}, "n", "requires n=1"),
        ({"model": "gpt-image-2.6-flare", "output_format": "png", "frame_count": 4}, "frame_count", "only"),
        ({"model": "gpt-image-2.6-flare", "output_format": "svg", "svg": {"model": ""}}, "svg.model", ""),
    ],
)
def test_it_refuses_bad_gif_and_svg_requests(
    client: OpenAI, options: dict[str, Any], param: str, message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(**({"model": "gpt-image-2", "prompt": "a harbour"} | options))
    assert raised.value.param == param
    assert message in raised.value.message


def test_gif_and_svg_cannot_be_streamed(client: OpenAI) -> None:
    for output_format in ("gif", "svg"):
        with pytest.raises(openai.BadRequestError, match="streaming"):
            list(client.images.generate(
                model="gpt-image-2.6-flare", prompt="x", output_format=output_format, stream=True
            ))  # fmt: skip


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        (
            "gpt-image-2",
            {"markup": ("m.png", overlay(), "image/png")},
            "does not support the 'markup' parameter",
        ),
        (
            "gpt-image-2.5-sunburst",
            {"markup": ("m.png", overlay(), "image/png"), "mask": ("k.png", overlay(), "image/png")},
            "cannot be combined",
        ),
        (
            "gpt-image-2.5-sunburst",
            {"markup": ("m.png", overlay((160, 120)), "image/png")},
            "same dimensions",
        ),
    ],
)
def test_it_refuses_a_bad_markup(client: OpenAI, model: str, extra: dict, message: str) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.edit(model=model, prompt="x", image=[("a.png", png(), "image/png")], **extra)
    assert message in raised.value.message


def test_models_handed_in_replace_the_built_in_tables(client: OpenAI, server: StandinServer) -> None:
    server.use_models(
        {"gpt-image-2": {"qualities": ["low"], "gif": True}, "gpt-image-1.5": {"retired": "was retired."}}
    )
    answer = client.images.generate(model="gpt-image-2", prompt="x", output_format="gif", frame_count=2)
    assert answer.output_format == "gif"
    with pytest.raises(openai.BadRequestError, match="was retired"):
        client.images.generate(model="gpt-image-1.5", prompt="x")
    with pytest.raises(openai.BadRequestError, match="does not exist"):
        client.images.generate(model="gpt-image-2.6-flare", prompt="x")
