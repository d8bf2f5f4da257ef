import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_image_fields(apps, schema_editor):
    Favourite = apps.get_model("workspace", "Favourite")
    Image = apps.get_model("workspace", "Image")
    images = Image.objects.filter(pk=OuterRef("image_id"))
    Favourite.objects.update(
        project_id=Subquery(images.values("project_id")[:1]),
        image_created_at=Subquery(images.values("created_at")[:1]),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("workspace", "0007_image_search"),
    ]

    operations = [
        migrations.AddField(
            model_name="favourite",
            name="project",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="workspace.project",
            ),
        ),
        migrations.AddField(
            model_name="favourite",
            name="image_created_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(copy_image_fields, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="favourite",
            name="project",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="workspace.project"
            ),
        ),
        migrations.AlterField(
            model_name="favourite",
            name="image_created_at",
            field=models.DateTimeField(),
        ),
        migrations.AddIndex(
            model_name="favourite",
            index=models.Index(
                fields=["user", "project", "-image_created_at", "-image"], name="favourite_user_recent"
            ),
        ),
    ]
