"""What each image model accepts: the one place the form, the job and the API call consult.

The models are rows (workspace.models.ImageModelSpec) an admin adds and edits, read here through a short
per-process cache; a new snapshot is an admin action, not a deploy.
"""

import threading
import time
from dataclasses import dataclass
from datetime import date

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


# GIF output (SDK 3.57, image_generate_params.frame_count / frame_duration_ms).
MIN_FRAMES, MAX_FRAMES, DEFAULT_FRAMES = 2, 16, 9
MIN_FRAME_MS, MAX_FRAME_MS, DEFAULT_FRAME_MS = 10, 655_350, 200
# SVG output: the author's reasoning effort (SvgReasoning.effort).
SVG_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
# How long one process trusts the rows it read: a change saved in this process is seen at once, one
# saved elsewhere (the admin on another web process) within this many seconds.
CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class ImageModel:
    """One row of the registry (workspace.models.ImageModelSpec), as plain immutable data."""

    id: str
    label: str
    blurb: str
    custom_sizes: bool
    qualities: tuple[str, ...] = BASE_QUALITIES
    transparent: bool = True
    complexity: bool = False
    # Values the edits endpoint accepts for input_fidelity; empty means the key must be omitted.
    input_fidelity: tuple[str, ...] = ()
    complexity_levels: tuple[str, ...] = ()
    sizes: tuple[str, ...] = STANDARD_SIZES
    family: str = ""
    size_multiple: int = SIZE_MULTIPLE
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    max_edge: int = MAX_EDGE
    max_ratio: int = MAX_RATIO
    gif: bool = False
    svg: bool = False
    svg_authors: tuple[str, ...] = ()
    markup: bool = False
    streaming: bool = True
    batch: bool = True
    retired_on: date | None = None
    retired_note: str = ""

    @property
    def retired(self) -> bool:
        return self.retired_on is not None and self.retired_on <= date.today()

    @property
    def output_formats(self) -> tuple[str, ...]:
        extra = ("gif",) * self.gif + ("svg",) * self.svg
        return ("png", "jpeg", "webp", *extra)

    @classmethod
    def from_row(cls, row) -> "ImageModel":
        return cls(
            id=row.name,
            label=row.label,
            blurb=row.blurb,
            custom_sizes=row.custom_sizes,
            qualities=tuple(row.qualities),
            transparent=row.transparent,
            complexity=bool(row.complexity),
            input_fidelity=tuple(row.input_fidelity),
            complexity_levels=tuple(row.complexity),
            sizes=tuple(row.sizes),
            family=row.family,
            size_multiple=row.size_multiple,
            min_pixels=row.min_pixels,
            max_pixels=row.max_pixels,
            max_edge=row.max_edge,
            max_ratio=row.max_ratio,
            gif=row.gif,
            svg=row.svg,
            svg_authors=tuple(row.svg_authors),
            markup=row.markup,
            streaming=row.streaming,
            batch=row.batch,
            retired_on=row.retired_on,
            retired_note=row.retired_note,
        )


_cache: tuple[float, dict[str, ImageModel]] | None = None
_cache_lock = threading.Lock()


def invalidate() -> None:
    """Forget the rows read: the next read sees the table as it is (called when a row is saved)."""
    global _cache
    with _cache_lock:
        _cache = None


def all_models() -> dict[str, ImageModel]:
    """Every registry row, retired ones too (old jobs still name them), in menu order; one query per
    CACHE_SECONDS per process."""
    global _cache
    cached = _cache
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    from workspace.models import ImageModelSpec  # models imports formats only; this avoids a cycle

    loaded = {row.name: ImageModel.from_row(row) for row in ImageModelSpec.objects.all()}
    with _cache_lock:
        _cache = (time.monotonic() + CACHE_SECONDS, loaded)
    return loaded


def selectable() -> list[ImageModel]:
    """The models a person may choose now: not retired."""
    return [model for model in all_models().values() if not model.retired]


def __getattr__(name: str):
    # `imagemodels.MODELS` was a constant before the registry became rows; it still reads as one.
    if name == "MODELS":
        return all_models()
    raise AttributeError(name)


DEFAULT_MODEL = "gpt-image-2"


def retired_problem(model: ImageModel) -> str:
    note = f" {model.retired_note}" if model.retired_note else ""
    return f"{model.label} was retired on {model.retired_on:%Y-%m-%d} and can no longer be chosen.{note}"


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
    """The model by name, retired or not (lineage reads old ones); None when the registry has no row."""
    return all_models().get(model_id)


def parse_size(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def presets_for(model: ImageModel) -> list[SizePreset]:
    """Presets a model can produce: all of them on flexible models, the standard three otherwise."""
    return [p for p in SIZE_PRESETS.values() if model.custom_sizes or p.size in model.sizes]


def custom_size_problem(width: int, height: int, model: ImageModel | None = None) -> str | None:
    """Why a custom WIDTHxHEIGHT is not allowed, in words for the form; None when it is fine.

    With a model, its row's rules; without, gpt-image-2's."""
    multiple = model.size_multiple if model else SIZE_MULTIPLE
    max_edge = model.max_edge if model else MAX_EDGE
    max_ratio = model.max_ratio if model else MAX_RATIO
    min_pixels = model.min_pixels if model else MIN_PIXELS
    max_pixels = model.max_pixels if model else MAX_PIXELS
    if width % multiple or height % multiple:
        return f"Width and height must both be multiples of {multiple} (for example 1536 x 864)."
    if max(width, height) > max_edge:
        return f"No edge may be longer than {max_edge:,} pixels."
    if max(width, height) > max_ratio * min(width, height):
        return f"The shape is too narrow: the ratio must be between 1:{max_ratio} and {max_ratio}:1."
    pixels = width * height
    if pixels < min_pixels:
        return f"Too small: {pixels:,} pixels; the minimum is {min_pixels:,}."
    if pixels > max_pixels:
        return f"Too large: {pixels:,} pixels; the maximum is {max_pixels:,}."
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
            "complexityLevels": list(model.complexity_levels),
            "presets": [p.key for p in presets_for(model)],
            "formats": list(model.output_formats),
            "svgAuthors": list(model.svg_authors),
            "markup": model.markup,
            "streaming": model.streaming,
        }
        for model in selectable()
    }


def standin_models() -> dict[str, dict]:
    """Every row as the stand-in's capabilities (standin.capabilities.ModelCapabilities fields), so the
    stand-in checks requests by the same rows the forms do (tests and `make run` pass this in)."""
    return {
        model.id: {
            "custom_sizes": model.custom_sizes,
            "sizes": list(model.sizes),
            "qualities": list(model.qualities),
            "transparent_background": model.transparent,
            "complexity": bool(model.complexity_levels),
            "input_fidelities": list(model.input_fidelity),
            "markup": model.markup,
            "gif": model.gif,
            "svg": model.svg,
            "streaming": model.streaming,
            "retired": model.retired_note or ("was retired." if model.retired else ""),
        }
        for model in all_models().values()
    }
