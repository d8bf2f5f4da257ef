"""Stars through htmx, and deleted images: gone from every route at once, undoable for a while, then
purged by beat with the row kept for lineage."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from tests.factories import ImageFactory, JobFactory
from workspace import review, tasks
from workspace.models import AuditEvent, Favourite, Image

pytestmark = pytest.mark.django_db

MEDIA_ROUTES = [
    ("image_detail", {}),
    ("image_file", {}),
    ("image_thumb", {}),
    ("image_download", {}),
    ("image_family", {}),
    ("image_composite", {"variant": "file"}),
    ("image_composite", {"variant": "thumb"}),
    ("image_composite", {"variant": "download"}),
    ("image_convert", {"target": "webp"}),
]


def urls(image: Image) -> list[str]:
    return [
        reverse(name, kwargs={"project_id": image.project_id, "image_id": image.pk, **extra})
        for name, extra in MEDIA_ROUTES
    ]


def test_the_htmx_star_toggles_both_ways(client, cast, project):
    image = ImageFactory(job__project=project, job__author=cast.bob)
    url = reverse("image_favourite", args=[project.pk, image.pk])
    client.force_login(cast.vera)

    on = client.post(url, {"on": "1"}, HTTP_HX_REQUEST="true").content.decode()
    assert Favourite.objects.filter(user=cast.vera, image=image).exists()
    # The swapped-in button now offers to take the star away.
    assert 'name="on" value="0"' in on and "★ Favourite" in on and 'aria-pressed="true"' in on

    off = client.post(url, {"on": "0"}, HTTP_HX_REQUEST="true").content.decode()
    assert not Favourite.objects.filter(user=cast.vera, image=image).exists()
    assert 'name="on" value="1"' in off and "☆ Favourite" in off and 'aria-pressed="false"' in off


def test_a_deleted_image_is_a_404_on_every_route_and_gone_from_its_job_card(client, cast, project):
    job = JobFactory(project=project, author=cast.bob, succeeded=True)
    image = ImageFactory(job=job, pasted=True)
    kept = ImageFactory(job=job, index=1)
    client.force_login(cast.bob)
    for url in urls(image):
        response = client.get(url)
        assert response.status_code == 200, url
        if response.streaming:
            b"".join(response.streaming_content)
    client.post(reverse("image_delete", args=[project.pk, image.pk]))
    for url in urls(image):
        assert client.get(url).status_code == 404, url
    for name, data in (("image_favourite", {"on": "1"}), ("image_comment", {"body": "Nice"})):
        assert client.post(reverse(name, args=[project.pk, image.pk]), data).status_code == 404
    card = client.get(reverse("job_card", args=[project.pk, job.pk])).content.decode()
    assert reverse("image_thumb", args=[project.pk, kept.pk]) in card
    assert reverse("image_thumb", args=[project.pk, image.pk]) not in card
    # The undo still reaches it.
    client.post(reverse("image_delete", args=[project.pk, image.pk]), {"undo": "1"})
    assert client.get(urls(image)[0]).status_code == 200


def test_beat_purges_the_files_after_the_undo_window_and_keeps_the_row(client, cast, project):
    assert (
        settings.CELERY_BEAT_SCHEDULE["purge-deleted-images"]["task"]
        == "workspace.tasks.purge_deleted_images"
    )
    assert settings.CELERY_BEAT_SCHEDULE["purge-deleted-images"]["schedule"] <= 5 * 60
    old = ImageFactory(job__project=project, job__author=cast.bob, pasted=True)
    recent = ImageFactory(job__project=project, job__author=cast.bob)
    alive = ImageFactory(job__project=project, job__author=cast.bob)
    files = [old.file.name, old.thumbnail.name, old.composite.name, old.composite_thumbnail.name]
    assert all(default_storage.exists(name) for name in files)
    review.image_delete(image=old, user=cast.bob)
    review.image_delete(image=recent, user=cast.bob)
    Image.objects.filter(pk=old.pk).update(
        deleted_at=timezone.now() - timedelta(minutes=review.DELETE_UNDO_MINUTES, seconds=1)
    )

    assert tasks.purge_deleted_images() == 1
    assert tasks.purge_deleted_images() == 0  # once only

    old.refresh_from_db()
    assert old.purged_at is not None
    assert (old.file.name, old.thumbnail.name, old.composite.name, old.composite_thumbnail.name) == ("",) * 4
    assert not any(default_storage.exists(name) for name in files)
    for image in (recent, alive):
        image.refresh_from_db()
        assert image.purged_at is None and default_storage.exists(image.file.name)
    event = AuditEvent.objects.get(action="image.purged")
    assert (event.actor, event.target_id, event.project) == (None, str(old.pk), project)
    assert event.before["files"] == files and event.after["files"] == []

    # Too late to undo, and every route is a 404, the delete route included.
    client.force_login(cast.bob)
    with pytest.raises(review.ReviewRefused):
        review.image_restore(image=old, user=cast.bob)
    for url in [*urls(old), reverse("image_delete", args=[project.pk, old.pk])]:
        method = client.post if url.endswith("/delete") else client.get
        assert method(url, {"undo": "1"} if method == client.post else {}).status_code == 404, url


def test_lineage_pages_show_a_purged_parent_as_deleted(client, cast, project):
    parent = ImageFactory(job__project=project, job__author=cast.bob)
    child_job = JobFactory(project=project, author=cast.bob, edit=True, succeeded=True, inputs=[parent])
    child = ImageFactory(job=child_job)
    review.image_delete(image=parent, user=cast.bob)
    Image.objects.filter(pk=parent.pk).update(deleted_at=timezone.now() - timedelta(hours=1))
    review.images_purge()
    client.force_login(cast.bob)
    page = client.get(reverse("image_detail", args=[project.pk, child.pk])).content.decode()
    assert f"Image {parent.pk}, deleted" in page
    assert reverse("image_thumb", args=[project.pk, parent.pk]) not in page
    family = client.get(reverse("image_family", args=[project.pk, child.pk])).content.decode()
    assert "2 images over 2 generations" in family
    assert 'class="badge">deleted</span>' in family
    assert reverse("image_thumb", args=[project.pk, parent.pk]) not in family


def test_an_edit_whose_input_was_purged_fails_saying_so(cast, project, standin):
    from tests.conftest import job_params
    from tests.helpers import run
    from workspace import jobs

    source = ImageFactory(job__project=project, job__author=cast.bob)
    job = jobs.edit_create(
        project=project,
        author=cast.bob,
        prompt="Make it a lime",
        params=job_params(size="auto", size_preset="auto"),
        inputs=[source],
    )
    review.image_delete(image=source, user=cast.bob)
    Image.objects.filter(pk=source.pk).update(deleted_at=timezone.now() - timedelta(hours=1))
    assert review.images_purge() == 1
    job = run(job)
    assert (job.status, job.error_code) == ("failed", "missing_input")
    assert standin.requests == []  # nothing was sent
