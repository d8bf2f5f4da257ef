"""Seed the model registry from the installed SDK's type docstrings (openai 3.57: types/image_model.py,
image_generate_params.py, image_edit_params.py), and price the models that had no price.

What each row says, and where from:
- Custom sizes (WIDTHxHEIGHT, multiples of 16, 1:3..3:1, up to 3840x2160): gpt-image-2 and the 2.5 family
  with their snapshots ("size" docstring). Everyone else: the three standard sizes.
- xhigh and max quality: the 2.5 family only ("quality").
- complexity (planning effort) low/medium/high: gpt-image-2, 2.5 and 2.6 (openai-images-api.md §12-13).
- input_fidelity: high and low on gpt-image-1.5, low only on gpt-image-1-mini, omitted for the rest.
- markup: "Supports GPT Image 2.5" (image_edit_params.markup), and 2.6 (§13).
- GIF and SVG output: 2.6 (§13: previews, access-gated).
- gpt-image-1: shut down on 2026-10-23; kept, retired, so old jobs and lineage still read.
The SVG author models are a choice (the SDK names none): admins change them per row.

Prices: gpt-image-2.6-* at gpt-image-2's per-token rates (§13, theopenco/llmgateway#3985); gpt-image-1
from §5; chatgpt-image-latest has no published rate we have seen, so gpt-image-2's rates are assumed and
the note says so. Snapshots are priced as their family unless given a price of their own.
"""

from datetime import date
from decimal import Decimal

from django.db import migrations

STANDARD = ["1024x1024", "1536x1024", "1024x1536"]
BASE = ["auto", "low", "medium", "high"]
EFFORT = ["low", "medium", "high"]
SVG_AUTHORS = ["gpt-5.5", "gpt-5.4-mini"]

# name, label, blurb, family, position, extra fields
MODELS = [
    (
        "gpt-image-2",
        "GPT Image 2",
        "The default: any size, planning effort, inputs kept at high fidelity.",
        "",
        10,
        {"custom_sizes": True, "complexity": EFFORT},
    ),
    (
        "gpt-image-2-2026-04-21",
        "GPT Image 2 (2026-04-21)",
        "GPT Image 2 pinned to its April snapshot.",
        "gpt-image-2",
        11,
        {"custom_sizes": True, "complexity": EFFORT},
    ),
    (
        "gpt-image-2.5-sunburst",
        "GPT Image 2.5 Sunburst",
        "Richer detail; extra-high and max quality.",
        "",
        20,
        {"custom_sizes": True, "qualities": [*BASE, "xhigh", "max"], "complexity": EFFORT, "markup": True},
    ),
    (
        "gpt-image-2.5-sunburst-2026-09-08",
        "GPT Image 2.5 Sunburst (2026-09-08)",
        "2.5 Sunburst pinned to its September snapshot.",
        "gpt-image-2.5-sunburst",
        21,
        {"custom_sizes": True, "qualities": [*BASE, "xhigh", "max"], "complexity": EFFORT, "markup": True},
    ),
    (
        "gpt-image-2.5-flare",
        "GPT Image 2.5 Flare",
        "Faster 2.5; extra-high and max quality.",
        "",
        22,
        {"custom_sizes": True, "qualities": [*BASE, "xhigh", "max"], "complexity": EFFORT, "markup": True},
    ),
    (
        "gpt-image-2.5-flare-2026-09-08",
        "GPT Image 2.5 Flare (2026-09-08)",
        "2.5 Flare pinned to its September snapshot.",
        "gpt-image-2.5-flare",
        23,
        {"custom_sizes": True, "qualities": [*BASE, "xhigh", "max"], "complexity": EFFORT, "markup": True},
    ),
    (
        "gpt-image-2.6-sunburst",
        "GPT Image 2.6 Sunburst",
        "Newest: animated GIF and SVG output (previews), markup edits; standard sizes.",
        "",
        30,
        {"complexity": EFFORT, "markup": True, "gif": True, "svg": True, "svg_authors": SVG_AUTHORS},
    ),
    (
        "gpt-image-2.6-flare",
        "GPT Image 2.6 Flare",
        "Faster 2.6: GIF and SVG output, markup edits.",
        "",
        31,
        {"complexity": EFFORT, "markup": True, "gif": True, "svg": True, "svg_authors": SVG_AUTHORS},
    ),
    (
        "gpt-image-1.5",
        "GPT Image 1.5",
        "Standard sizes only; reliable transparency.",
        "",
        40,
        {"input_fidelity": ["low", "high"]},
    ),
    (
        "gpt-image-1-mini",
        "GPT Image 1 mini",
        "Cheapest; standard sizes only.",
        "",
        50,
        {"input_fidelity": ["low"]},
    ),
    (
        "chatgpt-image-latest",
        "ChatGPT Image (latest)",
        "The image model ChatGPT uses now; it may change.",
        "",
        60,
        {"transparent": False},
    ),
    (
        "gpt-image-1",
        "GPT Image 1",
        "Retired.",
        "",
        90,
        {
            "input_fidelity": ["low", "high"],
            "retired_on": date(2026, 10, 23),
            "retired_note": "Use GPT Image 2.5 Sunburst or Flare instead.",
        },
    ),
]

RATES_2 = ("5", "1.25", "8", "2", "30", "10")
PRICES = [
    ("gpt-image-2.6-sunburst", date(2026, 11, 1), *RATES_2, "gpt-image-2's rates (openai-images-api.md §13)"),
    ("gpt-image-2.6-flare", date(2026, 11, 1), *RATES_2, "gpt-image-2's rates (openai-images-api.md §13)"),
    ("gpt-image-1", date(2025, 4, 23), "5", "1.25", "10", "2.50", "40", "10", "openai-images-api.md §5"),
    (
        "chatgpt-image-latest",
        date(2026, 11, 1),
        *RATES_2,
        "Assumed: gpt-image-2's rates (no published rate seen); check and correct",
    ),
]


def seed(apps, schema_editor):
    ImageModelSpec = apps.get_model("workspace", "ImageModelSpec")
    Price = apps.get_model("workspace", "Price")
    for name, label, blurb, family, position, extra in MODELS:
        defaults = {
            "label": label,
            "blurb": blurb,
            "family": family,
            "position": position,
            "sizes": STANDARD,
            "qualities": BASE,
        } | extra
        ImageModelSpec.objects.get_or_create(name=name, defaults=defaults)
    for model, day, text_in, cached_text, image_in, cached_image, image_out, text_out, note in PRICES:
        Price.objects.get_or_create(
            model=model,
            effective_from=day,
            defaults={
                "text_input": Decimal(text_in),
                "cached_text_input": Decimal(cached_text),
                "image_input": Decimal(image_in),
                "cached_image_input": Decimal(cached_image),
                "image_output": Decimal(image_out),
                "text_output": Decimal(text_out),
                "note": note,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("workspace", "0020_model_registry")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
