from django.db import migrations

# On Postgres every image carries its job's prompt as a tsvector, so the gallery's search is a condition
# on the image row it is already reading (see gallery.PROMPT_SEARCH) instead of a to_tsvector of the
# job's prompt for each image probed.
#
# The column is not a model field: the ORM would then load it with every Image (tens of kB for a
# long prompt) and send it in every insert, and bulk_create would lose its UNNEST fast path.
# A trigger fills it, as Django's full-text search docs advise, so no way of inserting an image (the
# worker, seed_demo, a bulk_create in a shell) can forget it. Prompts never change once a job exists,
# so an insert (or a job_id change, which nothing does) is the only moment to fill it.
# SQLite has no such column and searches the prompt by substring.
CREATE_TRIGGER = """
CREATE OR REPLACE FUNCTION workspace_image_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT to_tsvector('english'::regconfig, COALESCE(prompt, '')) INTO NEW.search
    FROM workspace_job WHERE id = NEW.job_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER image_search_from_prompt BEFORE INSERT OR UPDATE OF job_id ON workspace_image
    FOR EACH ROW EXECUTE FUNCTION workspace_image_search();
"""
BACKFILL = """
UPDATE workspace_image AS image
SET search = to_tsvector('english'::regconfig, COALESCE(job.prompt, ''))
FROM workspace_job AS job WHERE job.id = image.job_id
"""
# Only the gallery's search used the job-level index; it now reads image_search instead.
OLD_JOB_INDEX = (
    "CREATE INDEX IF NOT EXISTS job_prompt_fts ON workspace_job "
    "USING gin (to_tsvector('english'::regconfig, COALESCE(prompt, '')))"
)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("ALTER TABLE workspace_image ADD COLUMN search tsvector")
    schema_editor.execute(CREATE_TRIGGER)
    schema_editor.execute(BACKFILL)
    schema_editor.execute("CREATE INDEX image_search ON workspace_image USING gin (search)")
    schema_editor.execute("DROP INDEX IF EXISTS job_prompt_fts")
    # The planner weighs the GIN index against the date-ordered ones by the column's statistics.
    schema_editor.execute("ANALYZE workspace_image")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP TRIGGER IF EXISTS image_search_from_prompt ON workspace_image")
    schema_editor.execute("DROP FUNCTION IF EXISTS workspace_image_search()")
    schema_editor.execute("ALTER TABLE workspace_image DROP COLUMN IF EXISTS search")
    schema_editor.execute(OLD_JOB_INDEX)


class Migration(migrations.Migration):
    dependencies = [
        ("workspace", "0006_gallery_review"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
