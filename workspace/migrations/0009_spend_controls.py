"""Spend controls: prices for gpt-image-2.5, simulated (demo) charges, and a workspace-wide budget.

gpt-image-2.5-sunburst and -flare are published at gpt-image-2's per-token rates from their announcement
(shared/reference/openai-images-api.md §13). Until now their calls were recorded at $0.
"""

from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db import migrations, models

ANNOUNCED = date(2026, 9, 8)
# text in, cached text in, image in, cached image in, image out, text out: $ per million tokens.
RATES = ("5", "1.25", "8", "2", "30", "10")
PRICES = [
    ("gpt-image-2.5-sunburst", ANNOUNCED, *RATES, "OpenAI announcement, 2026-09-08"),
    ("gpt-image-2.5-flare", ANNOUNCED, *RATES, "OpenAI announcement, 2026-09-08"),
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


def mark_demo_charges(apps, schema_editor):
    """A workspace migrated in demo mode has charged only the stand-in so far: its ledger is simulated."""
    if settings.DEMO_MODE:
        apps.get_model("workspace", "LedgerEntry").objects.update(simulated=True)


class Migration(migrations.Migration):
    dependencies = [
        ("workspace", "0008_favourite_in_gallery_order"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="budget", name="budget_for_user_or_project"),
        migrations.AddField(
            model_name="ledgerentry", name="simulated", field=models.BooleanField(default=False)
        ),
        # Neither user nor project is now the workspace-wide budget; both at once is still refused.
        migrations.AddConstraint(
            model_name="budget",
            constraint=models.CheckConstraint(
                condition=models.Q(("user__isnull", True), ("project__isnull", True), _connector="OR"),
                name="budget_for_user_or_project",
                violation_error_message="Choose a person or a project, not both.",
            ),
        ),
        migrations.AddConstraint(
            model_name="budget",
            constraint=models.UniqueConstraint(
                models.Value(True),
                condition=models.Q(("project__isnull", True), ("user__isnull", True)),
                name="one_workspace_budget",
                violation_error_message="There is already a workspace budget; change that one instead.",
            ),
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
        migrations.RunPython(mark_demo_charges, migrations.RunPython.noop),
    ]
