"""A price for the conversations' mainline model (settings.CONVERSATION_MODEL, gpt-5.5 by default).

An assumption, flagged in the row's note: the team's API reference quotes no mainline rates. These are the
rates OpenAI published for gpt-5 ($1.25 input, $0.125 cached input, $10 output per million tokens); the
Responses API reports the mainline's input as one count, so image input is priced as text input. Admins
correct it in the admin; the ledger copies the rates it used, so a later correction rewrites nothing.
"""

from datetime import date
from decimal import Decimal

from django.db import migrations


def seed(apps, schema_editor):
    Price = apps.get_model("workspace", "Price")
    Price.objects.get_or_create(
        model="gpt-5.5",
        effective_from=date(2026, 4, 23),
        defaults={
            "text_input": Decimal("1.25"),
            "cached_text_input": Decimal("0.125"),
            "image_input": Decimal("1.25"),
            "cached_image_input": Decimal("0.125"),
            "image_output": Decimal("10"),
            "text_output": Decimal("10"),
            "note": "ASSUMED (gpt-5 list rates); check OpenAI's pricing page",
        },
    )


class Migration(migrations.Migration):
    dependencies = [("workspace", "0017_conversations")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
