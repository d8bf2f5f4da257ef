from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("workspace", "0012_webhooks"),
    ]

    operations = [
        migrations.AddField(
            model_name="apicall",
            name="received",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
