from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("workspace", "0023_credential_next_check")]

    operations = [
        migrations.AddField(
            model_name="templateversion",
            name="samples",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
