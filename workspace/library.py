"""A project's reference library: uploads verified and re-encoded before anything is stored."""

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from workspace import formats, limits, outputs, provenance, uploads
from workspace.models import Project, Reference


def references_upload(
    *, project: Project, user, files: list
) -> tuple[list[Reference], list[uploads.UploadRejected]]:
    """Store every good file and report every bad one; one bad file does not stop the batch."""
    stored: list[Reference] = []
    rejected: list[uploads.UploadRejected] = []
    # One decode slot for the whole batch, taken before the first file: a busy process refuses the upload
    # (limits.Busy, 503) before anything is stored, rather than half-way through it.
    with limits.DECODES.hold():
        for upload in files:
            try:
                clean = uploads.clean_reference(upload)
            except uploads.UploadRejected as refusal:
                rejected.append(refusal)
                continue
            upload.seek(0)
            stored.append(_store(project=project, user=user, clean=clean, as_sent=upload.read()))
    return stored, rejected


def _store(*, project: Project, user, clean: "uploads.CleanImage", as_sent: bytes = b"") -> Reference:
    written: list[str] = []
    try:
        with transaction.atomic():
            reference = Reference.objects.create(
                project=project,
                uploaded_by=user,
                name=clean.original_name,
                file="",
                thumbnail="",
                width=clean.width,
                height=clean.height,
                format=clean.format,
                bytes=len(clean.data),
                uploaded_bytes=clean.original_bytes,
                sha256=clean.sha256,
            )
            base = f"projects/{project.pk}/references/{reference.pk}"
            written.append(
                default_storage.save(f"{base}.{formats.extension(clean.format)}", ContentFile(clean.data))
            )
            written.append(default_storage.save(f"{base}.thumb.webp", ContentFile(clean.thumbnail)))
            reference.file, reference.thumbnail = written
            reference.save(update_fields=["file", "thumbnail"])
            if as_sent:
                # Re-encoding strips any content credential, so the bytes as sent are kept, privately
                # (never served, never decoded here), only until OpenAI's provenance check has read them.
                written.append(default_storage.save(provenance.as_sent_name(reference), ContentFile(as_sent)))
                provenance.reference_check_request(reference=reference)
    except BaseException:
        outputs.delete_files(written)
        raise
    return reference


def reference_remove(*, reference: Reference) -> None:
    """Take it out of the library; images already made from it keep it in their lineage."""
    Reference.objects.filter(pk=reference.pk, removed_at__isnull=True).update(removed_at=timezone.now())
