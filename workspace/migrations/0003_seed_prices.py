"""Prices per million tokens from shared/reference/openai-images-api.md §5 (late 2026).

gpt-image-2's rates are OpenAI's own (model page); gpt-image-1.5 and -1-mini come from consistent
secondary copies. The text-output rate is only published for gpt-image-2; the others use the same $10,
and images calls report no text output today. Admins correct any of these in the admin.
"""

from datetime import date
from decimal import Decimal

from django.db import migrations

PRICES = [
    ("gpt-image-2", date(2026, 4, 21), "5", "1.25", "8", "2", "30", "10", "OpenAI model page, 2026-04-21"),
    ("gpt-image-1.5", date(2025, 12, 16), "5", "1.25", "8", "2", "32", "10", "secondary, 2025-12-17"),
    ("gpt-image-1-mini", date(2025, 10, 6), "2", "0.20", "2.50", "0.25", "8", "10", "secondary, as of 2026-03-27"),
]


def seed(apps, schema_editor):
    Price = apps.get_model("workspace", "Price")
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
    dependencies = [("workspace", "0002_spend")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
