"""Favourites (per person), review states (per image, set by editors), comments, and deleting images
with a short window to undo, after which beat purges their files."""

import logging
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from workspace import audit
from workspace.models import Comment, Favourite, Image

log = logging.getLogger(__name__)

COMMENT_MAX_CHARS = 4000
# A deleted image leaves the gallery at once but can be brought back for this long.
DELETE_UNDO_MINUTES = 10


class ReviewRefused(Exception):
    """A rule here said no; the message says why, for the person who asked."""


def favourite_many(*, user, images: list[Image], on: bool) -> int:
    if on:
        created = Favourite.objects.bulk_create(
            [Favourite.of(user=user, image=image) for image in images], ignore_conflicts=True
        )
        return len(created)
    deleted, _ = Favourite.objects.filter(user=user, image__in=images).delete()
    return deleted


def review_many(*, user, images: QuerySet, state: str) -> int:
    """Set the review state, recording who decided and when; the draft state forgets the decision."""
    if state == Image.Review.DRAFT:
        return images.update(review_state=state, reviewed_by=None, reviewed_at=None)
    return images.update(review_state=state, reviewed_by=user, reviewed_at=timezone.now())


def comment_add(*, image: Image, author: AbstractBaseUser, body: str) -> Comment:
    body = body.strip()
    if not body:
        raise ReviewRefused("Write something before posting a comment.")
    if len(body) > COMMENT_MAX_CHARS:
        raise ReviewRefused(f"Comments are limited to {COMMENT_MAX_CHARS:,} characters.")
    return Comment.objects.create(image=image, author=author, body=body)


@transaction.atomic
def image_delete(*, image: Image, user: AbstractBaseUser) -> bool:
    """Hide the image from the gallery (the file stays, for undo). False when it was already deleted."""
    now = timezone.now()
    deleted = bool(
        Image.objects.filter(pk=image.pk, deleted_at__isnull=True).update(deleted_at=now, deleted_by=user)
    )
    if deleted:
        audit.record(
            actor=user,
            action=audit.Action.IMAGE_DELETED,
            target=image,
            before={"deleted_at": None},
            after={"deleted_at": now},
            project=image.project,
        )
    return deleted


@transaction.atomic
def image_restore(*, image: Image, user: AbstractBaseUser) -> None:
    """Undo a delete, within DELETE_UNDO_MINUTES of it (so never after its files were purged)."""
    window = timezone.now() - timedelta(minutes=DELETE_UNDO_MINUTES)
    restored = Image.objects.filter(pk=image.pk, deleted_at__gte=window, purged_at__isnull=True).update(
        deleted_at=None, deleted_by=None
    )
    if not restored:
        raise ReviewRefused(f"It is more than {DELETE_UNDO_MINUTES} minutes since it was deleted.")
    audit.record(
        actor=user,
        action=audit.Action.IMAGE_RESTORED,
        target=image,
        before={"deleted_at": image.deleted_at},
        after={"deleted_at": None},
        project=image.project,
    )


FILE_FIELDS = ("file", "thumbnail", "composite", "composite_thumbnail")
PURGE_BATCH = 500


def images_purge(*, now: datetime | None = None, batch: int = PURGE_BATCH) -> int:
    """Delete the files of images deleted more than DELETE_UNDO_MINUTES ago; returns how many.

    Beat runs this every few minutes. Each image is claimed with a conditional UPDATE (purged_at set,
    file names emptied) so two beats never both purge it, and the undo, which needs a delete newer than
    the window, can no longer win. The row stays for lineage. Files are deleted after the claim
    commits: a crash in between leaves an orphaned file, never a row pointing at nothing.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(minutes=DELETE_UNDO_MINUTES)
    due = list(
        Image.objects.filter(deleted_at__lt=cutoff, purged_at__isnull=True)
        .select_related("project")
        .order_by("deleted_at", "id")[:batch]
    )
    purged = 0
    for image in due:
        names = [name for field in FILE_FIELDS if (name := getattr(image, field).name)]
        with transaction.atomic():
            claimed = Image.objects.filter(pk=image.pk, deleted_at__lt=cutoff, purged_at__isnull=True).update(
                purged_at=now, **dict.fromkeys(FILE_FIELDS, "")
            )
            if not claimed:
                continue
            audit.record(
                actor=None,
                action=audit.Action.IMAGE_PURGED,
                target=image,
                before={"files": names, "deleted_at": image.deleted_at},
                after={"files": [], "purged_at": now},
                project=image.project,
            )
        for name in names:
            try:
                default_storage.delete(name)
            except OSError:
                log.warning("Could not delete %s of purged image %s", name, image.pk, exc_info=True)
        purged += 1
    return purged
