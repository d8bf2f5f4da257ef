"""The team gallery: filters, keyset pages, review, hand-off, prompt history."""

import io
import json
import re
import zipfile
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import FavouriteFactory, ImageFactory, JobFactory, MembershipFactory
from tests.helpers import create_job, run, run_on_sqlite
from workspace import gallery
from workspace.models import Comment, Favourite, Image, Role

pytestmark = pytest.mark.django_db


def make_images(
    project,
    author,
    count,
    *,
    prompt="a lemon",
    model="gpt-image-2",
    kind="generate",
    size=(1024, 1024),
    start=None,
):
    """Rows only (the gallery lists them; files are not read), newest last."""
    start = start or timezone.now() - timedelta(days=1)
    job = JobFactory(project=project, author=author, prompt=prompt, model=model, kind=kind, succeeded=True)
    return Image.objects.bulk_create(
        ImageFactory.build(
            job=job,
            index=i,
            width=size[0],
            height=size[1],
            created_at=start + timedelta(seconds=i),
            stored=False,
        )
        for i in range(count)
    )


def ids(response) -> list[int]:
    """The images on a page, read from the HTML as the browser sees it."""
    return [int(pk) for pk in re.findall(r'id="select-(\d+)"', response.content.decode())]


def next_cursor(response) -> str:
    match = re.search(r'hx-get="[^"]*after=([A-Za-z0-9_-]+)"', response.content.decode())
    return match.group(1) if match else ""


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"author": "BOB"},
        {"model": "gpt-image-1.5", "review": "approved"},
        {"favourites": "on", "kind": "edit", "aspect": "portrait"},
        {"q": "lemon table", "since": "2026-01-01", "until": "2027-01-01"},
    ],
)
def test_a_gallery_page_runs_at_most_four_queries_whatever_the_filters(
    client, cast, project, query, django_assert_max_num_queries
):
    make_images(project, cast.bob, 60)
    client.force_login(cast.alice)
    query = {key: (str(cast.bob.pk) if value == "BOB" else value) for key, value in query.items()}
    client.get(reverse("gallery", args=[project.pk]))  # the session lands in the cache
    with django_assert_max_num_queries(4):
        response = client.get(reverse("gallery", args=[project.pk]), query)
    assert response.status_code == 200
    cursor = response.context["page"].next_cursor
    if cursor:
        with django_assert_max_num_queries(3):
            more = client.get(
                reverse("gallery", args=[project.pk]), query | {"after": cursor}, HTTP_HX_REQUEST="true"
            )
        assert more.status_code == 200


def test_keyset_pages_never_repeat_or_skip_while_new_images_arrive(client, cast, project):
    older = make_images(project, cast.bob, 100)
    # Two images share a timestamp: the id breaks the tie.
    Image.objects.filter(pk=older[50].pk).update(created_at=older[51].created_at)
    client.force_login(cast.bob)
    url = reverse("gallery", args=[project.pk])
    first = client.get(url)
    seen = ids(first)
    assert len(seen) == 48
    make_images(project, cast.bob, 7, start=timezone.now())  # newer than everything, mid-scroll
    cursor = next_cursor(first)
    while cursor:
        page = client.get(url, {"after": cursor}, HTTP_HX_REQUEST="true")
        seen += ids(page)
        cursor = next_cursor(page)
    assert len(seen) == len(set(seen)) == 100
    expected = sorted(
        older, key=lambda image: (Image.objects.get(pk=image.pk).created_at, image.pk), reverse=True
    )
    assert seen == [image.pk for image in expected]


def test_filters_combine_and_the_url_carries_them(client, cast, project):
    make_images(project, cast.bob, 3, prompt="a red bicycle", model="gpt-image-1.5")
    make_images(project, cast.alice, 4, prompt="a blue lemon", size=(1024, 1536))
    approved = make_images(project, cast.alice, 2, prompt="a blue lemon", kind="edit")
    Image.objects.filter(pk__in=[image.pk for image in approved]).update(review_state="approved")
    FavouriteFactory(user=cast.bob, image=approved[0])
    client.force_login(cast.bob)
    url = reverse("gallery", args=[project.pk])

    def count(**query):
        return len(ids(client.get(url, query)))

    assert count() == 9
    assert count(author=cast.bob.pk) == 3
    assert count(model="gpt-image-1.5") == 3
    assert count(aspect="portrait") == 4
    assert count(kind="edit") == 2
    assert count(review="approved") == 2
    assert count(favourites="on") == 1
    assert count(q="bicycle") == 3
    assert count(q="blue", kind="edit") == 2
    page = client.get(url, {"q": "bicycle", "author": cast.bob.pk}).content.decode()
    assert f"from=gallery&amp;q=bicycle&amp;author={cast.bob.pk}" in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"model": "dall-e-9"}, "Select a valid choice"),
        ({"review": "maybe"}, "Select a valid choice"),
        ({"author": "999999"}, "Select a valid choice"),
        ({"since": "2026-11-10", "until": "2026-11-01"}, "The end date is before the start date."),
        ({"since": "yesterday"}, "Enter a valid date."),
        ({"q": "x" * 10_000}, "Search is limited to 300 characters"),
        ({"after": "not-a-cursor!!"}, "That page link has expired"),
    ],
)
def test_bad_filters_give_a_clear_message_never_a_500(client, cast, project, query, message):
    make_images(project, cast.bob, 3)
    client.force_login(cast.bob)
    response = client.get(reverse("gallery", args=[project.pk]), query)
    # A bad filter is a 400 with the reason (htmx swaps 400s in); an expired page link shows the newest.
    assert response.status_code == (200 if "after" in query else 400)
    assert message in response.content.decode()


def test_a_stranger_sees_nothing_of_the_gallery(client, cast, project, other_project):
    make_images(project, cast.bob, 3)
    client.force_login(cast.charlie)
    assert client.get(reverse("gallery", args=[project.pk])).status_code == 404
    assert client.get(reverse("project_prompts", args=[project.pk])).status_code == 404
    mine = client.get(reverse("my_prompts")).content.decode()
    assert "a lemon" not in mine


def test_the_zip_holds_exactly_the_selected_originals_and_valid_metadata(
    client, cast, project, other_project, standin
):
    chosen = [
        run(create_job(project=project, author=cast.bob, prompt=f"shot {i}")).images.get() for i in range(3)
    ]
    left_out = run(create_job(project=project, author=cast.bob)).images.get()
    theirs = run(create_job(project=other_project, author=cast.charlie)).images.get()
    Image.objects.filter(pk=chosen[0].pk).update(
        review_state="approved", reviewed_by=cast.alice, reviewed_at=timezone.now()
    )
    client.force_login(cast.vera)
    response = client.post(
        reverse("bulk", args=[project.pk]),
        {"action": "download", "ids": [i.pk for i in chosen] + [theirs.pk]},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = archive.namelist()
    assert names[-1] == "metadata.json" and len(names) == 4
    metadata = json.loads(archive.read("metadata.json"))
    assert sorted(item["id"] for item in metadata["images"]) == sorted(i.pk for i in chosen)
    assert left_out.pk not in {item["id"] for item in metadata["images"]}
    assert not any(f"image-{theirs.pk}." in name for name in names)
    import hashlib

    for item in metadata["images"]:
        assert (
            hashlib.sha256(archive.read(item["file"])).hexdigest() == Image.objects.get(pk=item["id"]).sha256
        )
    approved = next(item for item in metadata["images"] if item["id"] == chosen[0].pk)
    assert approved["review"]["state"] == "approved" and approved["review"]["by"] == "alice"

    only = client.post(
        reverse("bulk", args=[project.pk]),
        {"action": "download", "approved_only": "1", "ids": [i.pk for i in chosen]},
    )
    only_names = zipfile.ZipFile(io.BytesIO(b"".join(only.streaming_content))).namelist()
    assert len(only_names) == 2  # the approved image and metadata.json

    foreign = client.post(reverse("bulk", args=[project.pk]), {"action": "download", "ids": [theirs.pk]})
    assert foreign.status_code == 302
    assert (
        client.post(
            reverse("bulk", args=[other_project.pk]), {"action": "download", "ids": [theirs.pk]}
        ).status_code
        == 404
    )


def test_editors_review_in_bulk_and_viewers_cannot_review_or_delete(client, cast, project):
    images = make_images(project, cast.bob, 3)
    client.force_login(cast.vera)
    assert (
        client.post(
            reverse("bulk", args=[project.pk]), {"action": "approved", "ids": [i.pk for i in images]}
        ).status_code
        == 403
    )
    assert (
        client.post(
            reverse("image_review", args=[project.pk, images[0].pk]), {"state": "approved"}
        ).status_code
        == 403
    )
    assert client.post(reverse("image_delete", args=[project.pk, images[0].pk])).status_code == 403
    assert Image.objects.filter(review_state="approved").count() == 0
    # Viewers still star and comment.
    client.post(reverse("bulk", args=[project.pk]), {"action": "favourite", "ids": [images[0].pk]})
    client.post(reverse("image_comment", args=[project.pk, images[0].pk]), {"body": "Love this one"})
    assert Favourite.objects.filter(user=cast.vera).count() == 1
    assert Comment.objects.get().body == "Love this one"

    client.force_login(cast.bob)
    client.post(reverse("bulk", args=[project.pk]), {"action": "approved", "ids": [i.pk for i in images]})
    reviewed = Image.objects.filter(review_state="approved")
    assert reviewed.count() == 3
    assert {image.reviewed_by for image in reviewed} == {cast.bob}
    client.post(reverse("image_review", args=[project.pk, images[0].pk]), {"state": "draft"})
    images[0].refresh_from_db()
    assert (images[0].review_state, images[0].reviewed_by) == ("draft", None)


def test_delete_hides_the_image_and_can_be_undone_for_a_while(client, cast, project):
    image = make_images(project, cast.bob, 2)[0]
    client.force_login(cast.bob)
    deleted = client.post(reverse("image_delete", args=[project.pk, image.pk]), follow=True)
    assert image.pk not in ids(deleted)
    # Its page is gone, so the gallery it lands on offers the undo.
    assert deleted.redirect_chain[-1][0] == f"{reverse('gallery', args=[project.pk])}?deleted={image.pk}"
    page = deleted.content.decode()
    assert f"Image {image.pk} was deleted" in page and 'name="undo"' in page
    assert client.get(reverse("image_detail", args=[project.pk, image.pk])).status_code == 404
    client.post(reverse("image_delete", args=[project.pk, image.pk]), {"undo": "1"})
    assert image.pk in ids(client.get(reverse("gallery", args=[project.pk])))
    assert client.get(reverse("image_detail", args=[project.pk, image.pk])).status_code == 200
    client.post(reverse("image_delete", args=[project.pk, image.pk]))
    Image.objects.filter(pk=image.pk).update(deleted_at=timezone.now() - timedelta(minutes=11))
    client.post(reverse("image_delete", args=[project.pk, image.pk]), {"undo": "1"})
    image.refresh_from_db()
    assert image.deleted_at is not None


def test_previous_and_next_follow_the_filtered_view(client, cast, project):
    bobs = make_images(project, cast.bob, 3)
    make_images(project, cast.alice, 3, start=bobs[1].created_at + timedelta(milliseconds=500))
    client.force_login(cast.bob)
    middle = bobs[1]
    response = client.get(
        reverse("image_detail", args=[project.pk, middle.pk]), {"from": "gallery", "author": cast.bob.pk}
    )
    assert (response.context["newer"].pk, response.context["older"].pk) == (bobs[2].pk, bobs[0].pk)
    html = response.content.decode()
    assert 'rel="prev"' in html and 'rel="next"' in html and f"author={cast.bob.pk}" in html


def test_the_image_page_costs_a_fixed_number_of_queries(
    client, cast, project, standin, django_assert_max_num_queries
):
    image = run(create_job(project=project, author=cast.bob)).images.get()
    client.force_login(cast.bob)
    client.get(reverse("home"))
    with django_assert_max_num_queries(16):
        response = client.get(reverse("image_detail", args=[project.pk, image.pk]), {"from": "gallery"})
    assert response.status_code == 200


def test_compare_shows_two_to_four_images_at_the_same_scale(client, cast, project, other_project):
    images = make_images(project, cast.bob, 3, size=(1536, 1024))
    theirs = make_images(other_project, cast.charlie, 1)[0]
    client.force_login(cast.bob)
    response = client.post(
        reverse("bulk", args=[project.pk]), {"action": "compare", "ids": [i.pk for i in images]}
    )
    page = client.get(response["Location"])
    html = page.content.decode()
    assert html.count("<figure>") == 3
    assert 'data-grid-columns="1536fr 1536fr 1536fr ' in html  # app.js sets the grid's columns from it
    alone = client.get(reverse("compare", args=[project.pk]), {"ids": [images[0].pk, theirs.pk]})
    assert alone.status_code == 400
    assert "Choose 2 to 4 images" in alone.content.decode()


def test_prompt_history_groups_identical_prompts(client, cast, project, other_project, standin):
    MembershipFactory(project=other_project, user=cast.bob, role=Role.EDITOR)
    for _ in range(3):
        run(create_job(project=project, author=cast.bob, prompt="A lemon on a blue table"))
    run(create_job(project=project, author=cast.bob, prompt="A pear"))
    run(create_job(project=other_project, author=cast.bob, prompt="A pear"))
    client.force_login(cast.bob)
    groups = client.get(reverse("project_prompts", args=[project.pk])).context["groups"]
    assert [(g.prompt, g.runs) for g in groups] == [("A pear", 1), ("A lemon on a blue table", 3)]
    mine = client.get(reverse("my_prompts")).context["groups"]
    assert [(g.prompt, g.runs) for g in mine] == [("A pear", 2), ("A lemon on a blue table", 3)]
    searched = client.get(reverse("my_prompts"), {"q": "lemon"}).context["groups"]
    assert [g.prompt for g in searched] == ["A lemon on a blue table"]
    html = client.get(reverse("project_prompts", args=[project.pk])).content.decode()
    assert f"?again={groups[1].latest.pk}" in html


def test_cursor_round_trip_and_rejection():
    image = Image(pk=42, created_at=timezone.now())
    moment, pk = gallery.decode_cursor(gallery.encode_cursor(image))
    assert (moment, pk) == (image.created_at, 42)
    for bad in ("", "!!!", "bm90LWEtY3Vyc29y", "MjAyNi0xMS0yMHwxMg"):
        with pytest.raises(gallery.BadCursor):
            gallery.decode_cursor(bad)


def _search(project, user, query: str) -> set[int]:
    images = gallery.filtered(project=project, user=user, data={"q": query})
    return set(images.values_list("pk", flat=True))


def test_search_reads_the_prompt_kept_on_each_image(cast, project, other_project):
    made = run(create_job(project=project, author=cast.bob, prompt="Three lemons on a blue table", n=2))
    worker_made = {image.pk for image in made.images.all()}
    bulk_made = {image.pk for image in make_images(project, cast.alice, 3, prompt="A red bicycle at dawn")}
    make_images(other_project, cast.charlie, 2, prompt="A lemon in a stranger's bowl")

    assert len(worker_made) == 2
    assert _search(project, cast.bob, "lemon") == worker_made  # stemmed: "lemons" matches
    assert _search(project, cast.bob, "bicycle dawn") == bulk_made
    assert _search(project, cast.bob, "lemon -blue") == set()
    assert _search(project, cast.bob, '"blue table"') == worker_made
    assert _search(project, cast.bob, "giraffe") == set()
    # The filter reads the tsvector stored on the image row; it never recomputes one per image.
    sql = str(gallery.filtered(project=project, user=cast.bob, data={"q": "lemon"}).query)
    assert '"workspace_image"."search" @@' in sql
    assert "to_tsvector" not in sql
    # Used inside another query, the column follows the queryset's new alias.
    inner = gallery.filtered(project=project, user=cast.bob, data={"q": "lemon"}).values("pk")
    assert set(Image.objects.filter(pk__in=inner).values_list("pk", flat=True)) == worker_made


@pytest.mark.django_db(transaction=True)
def test_upgrading_fills_the_search_of_images_made_before_it(cast, project):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("workspace", "0006_gallery_review")], [("workspace", "0007_image_search")]
    # Made with today's models, which later migrations may have grown; going back to 0006 keeps the rows
    # and drops the search column, so 0007 meets them as images made before it.
    older = {image.pk for image in make_images(project, cast.bob, 3, prompt="An old lemon")}
    MigrationExecutor(connection).migrate(before)
    try:
        MigrationExecutor(connection).migrate(after)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert _search(project, cast.bob, "lemon") == older
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('job_prompt_fts'), to_regclass('image_search')")
        assert cursor.fetchone() == (None, "image_search")


def test_my_favourites_pages_in_gallery_order_through_the_stars(client, cast, project, other_project):
    images = make_images(project, cast.alice, 120)
    # A timestamp tie, a deleted star, a star in another project and someone else's star.
    Image.objects.filter(pk=images[60].pk).update(created_at=images[61].created_at)
    images = list(Image.objects.filter(pk__in=[image.pk for image in images]))
    starred = images[::2]
    client.force_login(cast.bob)
    for chunk in (starred[:30], starred[30:]):
        response = client.post(
            reverse("bulk", args=[project.pk]), {"action": "favourite", "ids": [i.pk for i in chunk]}
        )
        assert response.status_code in (200, 302)
    star = Favourite.objects.get(user=cast.bob, image=starred[5])
    assert (star.project_id, star.image_created_at) == (project.pk, starred[5].created_at)
    Image.objects.filter(pk=starred[7].pk).update(deleted_at=timezone.now())
    elsewhere = make_images(other_project, cast.charlie, 1)[0]
    FavouriteFactory(user=cast.bob, image=elsewhere)
    FavouriteFactory(user=cast.alice, image=images[1])

    url = reverse("gallery", args=[project.pk])
    first = client.get(url, {"favourites": "on"})
    seen = ids(first)
    cursor = next_cursor(first)
    while cursor:
        more = client.get(url, {"favourites": "on", "after": cursor}, HTTP_HX_REQUEST="true")
        seen += ids(more)
        cursor = next_cursor(more)
    expected = sorted(
        (image for image in starred if image.pk != starred[7].pk),
        key=lambda image: (image.created_at, image.pk),
        reverse=True,
    )
    assert len(ids(first)) == 48
    assert seen == [image.pk for image in expected]
    # Newer/older on the image page follow the favourites view.
    middle = expected[10]
    page = client.get(
        reverse("image_detail", args=[project.pk, middle.pk]), {"from": "gallery", "favourites": "on"}
    )
    assert page.context["newer"].pk == expected[9].pk
    assert page.context["older"].pk == expected[11].pk


@pytest.mark.django_db(transaction=True)
def test_upgrading_gives_earlier_stars_their_image_copies(cast, project):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("workspace", "0007_image_search")], [("workspace", "0008_favourite_in_gallery_order")]
    images = make_images(project, cast.bob, 3)  # today's models, before going back (see above)
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        OldFavourite = executor.loader.project_state(before).apps.get_model("workspace", "Favourite")
        for image in images[:2]:
            OldFavourite.objects.create(user_id=cast.bob.pk, image_id=image.pk)
        MigrationExecutor(connection).migrate(after)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    copies = set(Favourite.objects.values_list("image_id", "project_id", "image_created_at"))
    assert copies == {(image.pk, project.pk, image.created_at) for image in images[:2]}
    shown = gallery.filtered(project=project, user=cast.bob, data={"favourites": True})
    assert set(shown.values_list("pk", flat=True)) == {image.pk for image in images[:2]}


SQLITE_GALLERY = """
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from workspace import gallery, review
from workspace.models import Image, Job, Project

user = get_user_model().objects.create_user("ana", password="x")
project = Project.objects.create(name="Laptop", created_by=user)
made = []
for n, prompt in enumerate(["A pear on a plate", "A lemon tree", "Two lemons"]):
    job = Job.objects.create(project=project, author=user, prompt=prompt, model="gpt-image-2",
                             size="1024x1024", deadline_at=timezone.now(), max_attempts=3, status="succeeded")
    made.append(Image.objects.create(job=job, project=project, index=0, file=f"{n}.png", width=1024,
                                     height=1024, format="png", bytes=1, sha256="0" * 64,
                                     created_at=timezone.now() - timedelta(minutes=10 - n)))
review.favourite_many(user=user, images=[made[0], made[2]], on=True)
def shown(**data):
    view = gallery.filtered(project=project, user=user, data=data)
    page = gallery.page(view, size=1)
    rest = gallery.page(view, cursor=page.next_cursor).items if page.next_cursor else []
    return [made.index(i) for i in page.items + rest]
print(json.dumps({"all": shown(), "favourites": shown(favourites=True), "lemon": shown(q="lemon"),
                  "both": shown(favourites=True, q="lemon")}))
"""


def test_the_gallery_filters_and_pages_on_sqlite_too(tmp_path):
    assert run_on_sqlite(SQLITE_GALLERY, tmp_path) == {
        "all": [2, 1, 0],
        "favourites": [2, 0],
        "lemon": [2, 1],
        "both": [2],
    }
