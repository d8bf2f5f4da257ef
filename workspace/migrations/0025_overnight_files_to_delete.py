# The files an overnight batch leaves at OpenAI, deleted once it is closed (and tried again if a delete fails).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("workspace", "0024_template_version_samples"),
    ]

    operations = [
        migrations.AddField(
            model_name="overnightbatch",
            name="files_to_delete",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
