"""Favourites (per person), review states (per image, set by editors), comments, and deleting images
with a short window to undo."""

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from workspace.models import Comment, Favourite, Image

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


def image_delete(*, image: Image, user: AbstractBaseUser) -> bool:
    """Hide the image from the gallery (the file stays, for undo). False when it was already deleted."""
    return bool(
        Image.objects.filter(pk=image.pk, deleted_at__isnull=True).update(
            deleted_at=timezone.now(), deleted_by=user
        )
    )


def image_restore(*, image: Image) -> None:
    """Undo a delete, within DELETE_UNDO_MINUTES of it."""
    window = timezone.now() - timedelta(minutes=DELETE_UNDO_MINUTES)
    restored = Image.objects.filter(pk=image.pk, deleted_at__gte=window).update(
        deleted_at=None, deleted_by=None
    )
    if not restored:
        raise ReviewRefused(f"It is more than {DELETE_UNDO_MINUTES} minutes since it was deleted.")
