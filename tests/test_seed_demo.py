"""``manage.py seed_demo``: rows in time order, lineage inside the project, a gallery that shows them."""

import io
import itertools
import re

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from workspace.models import Favourite, Image, Job, JobInput, LedgerEntry, Membership, Project, Reference

pytestmark = pytest.mark.django_db

NAME = "Seeded for tests"


def seed(images: int = 300, **options) -> Project:
    out = io.StringIO()
    call_command("seed_demo", images=images, project=NAME, users=5, seed=3, stdout=out, **options)
    assert f'project "{NAME}"' in out.getvalue()
    return Project.objects.get(name=NAME)


def test_seed_makes_members_jobs_and_images_in_time_order_with_edits_inside_the_project():
    project = seed()

    roles = sorted(Membership.objects.filter(project=project).values_list("role", flat=True))
    assert roles.count("owner") == 1 and "editor" in roles and "viewer" in roles and len(roles) == 5
    images = list(Image.objects.filter(project=project).order_by("id"))
    assert len(images) == 300
    # Created in time order: ids and created_at agree (a job's images share one moment, as the worker
    # stores them), so the gallery's (-created_at, -id) order is the reverse of creation.
    assert all(a.created_at <= b.created_at for a, b in itertools.pairwise(images))
    assert all(a.created_at == b.created_at for a, b in itertools.pairwise(images) if a.job_id == b.job_id)
    assert any(a.created_at < b.created_at for a, b in itertools.pairwise(images))
    jobs = Job.objects.filter(project=project)
    assert all(image.created_at >= image.job.created_at for image in images[:50])
    assert sum(job.n for job in jobs.filter(status="succeeded")) == 300
    assert {job.n for job in jobs.filter(status="succeeded")} <= {1, 2, 3, 4}
    # Copied fields match the job.
    assert all(
        (image.author_id, image.model, image.kind) == (image.job.author_id, image.job.model, image.job.kind)
        for image in images
    )

    edits = jobs.filter(kind="edit")
    assert 0.1 <= Image.objects.filter(project=project, kind="edit").count() / 300 <= 0.35
    for job in edits:
        first = JobInput.objects.get(job=job, position=0)
        assert first.image is not None
        assert first.image.project_id == project.pk
        assert first.image.created_at < job.created_at
    assert (
        not JobInput.objects.filter(job__project=project, image__isnull=False)
        .exclude(image__project=project)
        .exists()
    )

    states = set(Image.objects.filter(project=project).values_list("review_state", flat=True))
    assert "approved" in states and "draft" in states
    shapes = {(image.width > image.height) - (image.width < image.height) for image in images}
    assert shapes == {-1, 0, 1}
    assert Favourite.objects.filter(image__project=project).exists()
    assert Reference.objects.filter(project=project).count() > 0
    assert (
        LedgerEntry.objects.filter(project=project).count()
        == project.jobs.filter(api_calls__isnull=False).count()
    )
    # Every image points at a real, shared file written through the storage.
    names = set(Image.objects.filter(project=project).values_list("thumbnail", flat=True))
    assert names and all(name.startswith(f"projects/{project.pk}/seed/") for name in names)
    assert all(default_storage.exists(name) for name in names)


def test_a_second_seed_of_the_same_name_is_refused_unless_replaced():
    first = seed(images=40)
    with pytest.raises(CommandError, match="already exists"):
        seed(images=40)
    second = seed(images=60, replace=True)
    assert not Project.objects.filter(pk=first.pk).exists()
    assert not Image.objects.filter(project_id=first.pk).exists()
    assert Image.objects.filter(project=second).count() == 60


def test_the_gallery_shows_the_first_page_of_a_seeded_project_to_a_member():
    project = seed()
    member = Membership.objects.filter(project=project, role="viewer").first().user
    client = Client()
    client.force_login(member)
    response = client.get(reverse("gallery", args=[project.pk]))
    assert response.status_code == 200
    tiles = re.findall(r'id="select-(\d+)"', response.content.decode())
    assert len(tiles) == 48
    newest = Image.objects.visible().filter(project=project).order_by("-created_at", "-id")[:48]
    assert [int(pk) for pk in tiles] == [image.pk for image in newest]
