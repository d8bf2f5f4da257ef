"""What each image model accepts: the one place the form, the job and the API call consult.

Kept as data so a new snapshot is a new entry, not new branches in views.
"""

from dataclasses import dataclass

STANDARD_SIZES = ("1024x1024", "1024x1536", "1536x1024")
BASE_QUALITIES = ("auto", "low", "medium", "high")
BACKGROUNDS = ("auto", "opaque", "transparent")
MODERATION_LEVELS = ("auto", "low")
COMPLEXITY_LEVELS = ("low", "medium", "high")
MAX_PROMPT_CHARS = 32_000
MAX_IMAGES_PER_JOB = 10

# gpt-image-2 flexible-size limits (API reference and cookbook).
SIZE_MULTIPLE = 16
MIN_PIXELS = 655_360
MAX_PIXELS = 8_294_400
MAX_EDGE = 3840
MAX_RATIO = 3


@dataclass(frozen=True)
class ImageModel:
    id: str
    label: str
    blurb: str
    custom_sizes: bool
    qualities: tuple[str, ...] = BASE_QUALITIES
    transparent: bool = True
    complexity: bool = False
    # Values the edits endpoint accepts for input_fidelity; empty means the key must be omitted.
    input_fidelity: tuple[str, ...] = ()


MODELS: dict[str, ImageModel] = {
    model.id: model
    for model in (
        ImageModel(
            "gpt-image-2",
            "GPT Image 2",
            "The default: any size, planning effort, inputs always kept at high fidelity.",
            custom_sizes=True,
            complexity=True,
        ),
        ImageModel(
            "gpt-image-2.5-sunburst",
            "GPT Image 2.5 Sunburst",
            "Newest, richer detail; extra-high and max quality.",
            custom_sizes=True,
            qualities=(*BASE_QUALITIES, "xhigh", "max"),
            complexity=True,
        ),
        ImageModel(
            "gpt-image-2.5-flare",
            "GPT Image 2.5 Flare",
            "Newest, faster variant; extra-high and max quality.",
            custom_sizes=True,
            qualities=(*BASE_QUALITIES, "xhigh", "max"),
            complexity=True,
        ),
        ImageModel(
            "gpt-image-1.5",
            "GPT Image 1.5",
            "Standard sizes only; reliable transparency.",
            custom_sizes=False,
            input_fidelity=("low", "high"),
        ),
        ImageModel(
            "gpt-image-1-mini",
            "GPT Image 1 mini",
            "Cheapest; standard sizes only.",
            custom_sizes=False,
            input_fidelity=("low",),
        ),
    )
}
DEFAULT_MODEL = "gpt-image-2"


@dataclass(frozen=True)
class SizePreset:
    key: str
    label: str
    size: str

    @property
    def dimensions(self) -> tuple[int, int]:
        return parse_size(self.size)


SIZE_PRESETS: dict[str, SizePreset] = {
    preset.key: preset
    for preset in (
        SizePreset("square", "Square post", "1024x1024"),
        SizePreset("portrait", "Portrait", "1024x1536"),
        SizePreset("landscape", "Landscape", "1536x1024"),
        SizePreset("story", "Story 9:16", "1152x2048"),
        SizePreset("widescreen", "Widescreen 16:9", "2048x1152"),
        SizePreset("blog", "Blog header 3:2", "1920x1280"),
    )
}
CUSTOM_SIZE = "custom"
DEFAULT_SIZE_PRESET = "square"


def get_model(model_id: str) -> ImageModel | None:
    return MODELS.get(model_id)


def parse_size(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def presets_for(model: ImageModel) -> list[SizePreset]:
    """Presets a model can produce: all of them on flexible models, the standard three otherwise."""
    return [p for p in SIZE_PRESETS.values() if model.custom_sizes or p.size in STANDARD_SIZES]


def custom_size_problem(width: int, height: int) -> str | None:
    """Why a custom WIDTHxHEIGHT is not allowed, in words for the form; None when it is fine."""
    if width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
        return f"Width and height must both be multiples of {SIZE_MULTIPLE} (for example 1536 x 864)."
    if max(width, height) > MAX_EDGE:
        return f"No edge may be longer than {MAX_EDGE:,} pixels."
    if max(width, height) > MAX_RATIO * min(width, height):
        return "The shape is too narrow: the ratio must be between 1:3 and 3:1."
    pixels = width * height
    if pixels < MIN_PIXELS:
        return f"Too small: {pixels:,} pixels; the minimum is {MIN_PIXELS:,} (about 810 x 810)."
    if pixels > MAX_PIXELS:
        return f"Too large: {pixels:,} pixels; the maximum is {MAX_PIXELS:,} (3840 x 2160)."
    return None


def capabilities() -> dict[str, dict]:
    """The registry as plain data for the form's script, so the browser applies the same rules."""
    return {
        model.id: {
            "customSizes": model.custom_sizes,
            "qualities": list(model.qualities),
            "transparent": model.transparent,
            "complexity": model.complexity,
            "inputFidelity": list(model.input_fidelity),
            "presets": [p.key for p in presets_for(model)],
        }
        for model in MODELS.values()
    }
