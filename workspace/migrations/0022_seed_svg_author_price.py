"""A price for the second SVG author model the registry offers (gpt-5.4-mini), so every model a job can
name is priced: the other author, gpt-5.5, is priced by 0018.

An assumption, flagged in the row's note: the team's API reference quotes no rates for it. These are the
rates OpenAI published for gpt-5-mini ($0.25 input, $0.025 cached input, $2 output per million tokens).
Admins correct it in the admin; the ledger copies the rates it used, so a later correction rewrites nothing.
"""

from datetime import date
from decimal import Decimal

from django.db import migrations


def seed(apps, schema_editor):
    Price = apps.get_model("workspace", "Price")
    Price.objects.get_or_create(
        model="gpt-5.4-mini",
        effective_from=date(2026, 4, 23),
        defaults={
            "text_input": Decimal("0.25"),
            "cached_text_input": Decimal("0.025"),
            "image_input": Decimal("0.25"),
            "cached_image_input": Decimal("0.025"),
            "image_output": Decimal("2"),
            "text_output": Decimal("2"),
            "note": "ASSUMED (gpt-5-mini list rates); check OpenAI's pricing page",
        },
    )


class Migration(migrations.Migration):
    dependencies = [("workspace", "0021_seed_model_registry")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
