"""What each model accepts, written from the SDK docstrings (openai 3.57) and the team's API reference.

These are the stand-in's own defaults, for running it alone (`python -m standin`). The workspace keeps
its models as rows and hands them in (`StandinServer(models=imagemodels.standin_models())`, or
`--models FILE` under `make run`), so both check requests by the same rules.

Also the service's limits (sizes, prompt length, upload sizes, accepted image types) and which request
parameters each endpoint knows.
"""

from dataclasses import dataclass

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
    gif: bool = False
    svg: bool = False
    streaming: bool = True
    sizes: tuple[str, ...] = ("1024x1024", "1536x1024", "1024x1536")

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCapabilities":
        """From the workspace's registry row as plain data (imagemodels.standin_models)."""
        return cls(
            custom_sizes=bool(data.get("custom_sizes")),
            extra_qualities=tuple(q for q in data.get("qualities", ()) if q not in BASE_QUALITIES),
            transparent_background=bool(data.get("transparent_background", True)),
            complexity=bool(data.get("complexity")),
            input_fidelities=tuple(data.get("input_fidelity", data.get("input_fidelities", ()))),
            markup=bool(data.get("markup")),
            gif=bool(data.get("gif")),
            svg=bool(data.get("svg")),
            streaming=bool(data.get("streaming", True)),
            sizes=tuple(data.get("sizes") or STANDARD_SIZES),
        )


def models_from(data: dict[str, dict | ModelCapabilities]) -> tuple[dict, dict]:
    """(models, retired) from a mapping of name -> capabilities (or plain dicts with a "retired" note)."""
    models, retired = {}, {}
    for name, value in data.items():
        if isinstance(value, dict) and value.get("retired"):
            retired[name] = str(value["retired"])
        else:
            models[name] = (
                value if isinstance(value, ModelCapabilities) else ModelCapabilities.from_dict(value)
            )
    return models, retired


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
    # 2.6 (reference §13): planning effort, GIF and SVG output, markup; the standard sizes.
    "gpt-image-2.6-sunburst": ModelCapabilities(complexity=True, markup=True, gif=True, svg=True),
    "gpt-image-2.6-flare": ModelCapabilities(complexity=True, markup=True, gif=True, svg=True),
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

SVG_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
DEFAULT_SVG_AUTHOR = "gpt-5.5"
# Put in a prompt, makes the SVG answer carry <script>, onload and external references: for proving that
# the client neutralises them before anyone sees it.
HOSTILE_SVG_MARKER = "[standin:svgscript]"

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
