"""Favourites (per person) and review states (per image, set by editors), one or many at a time."""

from django.db.models import QuerySet
from django.utils import timezone

from workspace.models import Favourite, Image


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
