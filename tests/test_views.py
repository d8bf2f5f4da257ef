"""Who can do what, bad input, and how media is served."""

import pytest
from django.urls import reverse

from tests.helpers import create_job, run
from workspace.models import Job, Membership, Project, Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_job(project, cast):
    return run(create_job(project=project, author=cast.bob, n=1))


# Who may reach which URL (anonymous, stranger, viewer, editor, owner, staff; another project's objects)
# is the access matrix in test_access.py, generated from the URL resolver. Here: what each role is shown.


def test_a_viewer_is_not_offered_the_generate_form(client, cast, project, finished_job):
    client.force_login(cast.vera)
    page = client.get(reverse("project", args=[project.pk])).content.decode()
    assert "Generate</button>" not in page
    client.force_login(cast.bob)
    assert "Generate</button>" in client.get(reverse("project", args=[project.pk])).content.decode()


def test_an_editor_generates_but_does_not_manage(
    client, cast, project, generation_post, django_capture_on_commit_callbacks
):
    client.force_login(cast.bob)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("job_create", args=[project.pk]), generation_post)
    assert response.status_code == 302
    job = Job.objects.get()
    assert (job.author, job.project, job.status, job.size, job.n) == (
        cast.bob,
        project,
        "queued",
        "1024x1024",
        1,
    )
    assert len(callbacks) == 1  # enqueued only on commit
    assert client.get(reverse("project_settings", args=[project.pk])).status_code == 403
    assert (
        client.post(reverse("members", args=[project.pk]), {"who": "charlie", "role": "editor"}).status_code
        == 403
    )


def test_staff_see_every_project_without_joining(client, cast, project, finished_job, generation_post):
    client.force_login(cast.sam)
    assert client.get(reverse("project", args=[project.pk])).status_code == 200
    assert (
        client.get(reverse("image_file", args=[project.pk, finished_job.images.get().pk])).status_code == 200
    )
    assert client.post(reverse("job_create", args=[project.pk]), generation_post).status_code == 403
    assert project.name in client.get(reverse("home")).content.decode()


def test_the_home_page_lists_only_my_projects(client, cast, project, other_project):
    client.force_login(cast.bob)
    page = client.get(reverse("home")).content.decode()
    assert project.name in page
    assert "Charlie&#x27;s team" not in page and "Charlie's team" not in page


def test_creating_a_project_makes_me_its_owner(client, cast):
    client.force_login(cast.bob)
    response = client.post(reverse("project_create"), {"name": "  Autumn  "})
    project = Project.objects.get(name="Autumn")
    assert response["Location"] == project.get_absolute_url()
    assert Membership.objects.get(project=project, user=cast.bob).role == Role.OWNER
    assert client.post(reverse("project_create"), {"name": "   "}).status_code == 400


def test_owners_rename_and_archive_and_archived_projects_take_no_jobs(client, cast, project, generation_post):
    client.force_login(cast.alice)
    client.post(reverse("project_settings", args=[project.pk]), {"name": "Summer campaign"})
    client.post(reverse("project_archive", args=[project.pk]))
    project.refresh_from_db()
    assert project.name == "Summer campaign"
    assert project.is_archived
    response = client.post(reverse("job_create", args=[project.pk]), generation_post)
    assert response.status_code == 409
    assert Job.objects.count() == 0
    client.post(reverse("project_archive", args=[project.pk]))
    project.refresh_from_db()
    assert not project.is_archived


def test_owners_add_members_by_username_or_email_and_change_roles(client, cast, project):
    client.force_login(cast.alice)
    assert (
        client.post(
            reverse("members", args=[project.pk]), {"who": "CHARLIE@example.com", "role": "viewer"}
        ).status_code
        == 302
    )
    membership = Membership.objects.get(project=project, user=cast.charlie)
    assert membership.role == Role.VIEWER
    client.post(reverse("member_role", args=[project.pk, membership.pk]), {"role": "editor"})
    membership.refresh_from_db()
    assert membership.role == Role.EDITOR
    response = client.post(reverse("members", args=[project.pk]), {"who": "nobody-here", "role": "viewer"})
    assert response.status_code == 400
    assert "No one called “nobody-here” has an account here." in response.content.decode()
    assert (
        client.post(reverse("members", args=[project.pk]), {"who": "bob", "role": "viewer"}).status_code
        == 400
    )
    client.post(reverse("member_remove", args=[project.pk, membership.pk]))
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_the_last_owner_cannot_leave_or_be_demoted(client, cast, project):
    client.force_login(cast.alice)
    mine = Membership.objects.get(project=project, user=cast.alice)
    client.post(reverse("member_role", args=[project.pk, mine.pk]), {"role": "viewer"})
    client.post(reverse("member_remove", args=[project.pk, mine.pk]))
    mine.refresh_from_db()
    assert mine.role == Role.OWNER


def test_media_is_served_to_members_only_with_safe_headers(client, cast, project, finished_job):
    image = finished_job.images.get()
    client.force_login(cast.vera)
    inline = client.get(reverse("image_file", args=[project.pk, image.pk]))
    assert inline.status_code == 200
    assert inline["Content-Type"] == "image/png"
    assert inline["X-Content-Type-Options"] == "nosniff"
    assert "private" in inline["Cache-Control"]
    assert b"".join(inline.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
    download = client.get(reverse("image_download", args=[project.pk, image.pk]))
    assert download["Content-Disposition"].startswith("attachment;")
    assert image.download_name in download["Content-Disposition"]
    assert download["X-Content-Type-Options"] == "nosniff"
    thumb = client.get(reverse("image_thumb", args=[project.pk, image.pk]))
    assert thumb["Content-Type"] == "image/webp"


def test_no_url_outside_the_checked_views_serves_media(client, cast, project, finished_job, settings):
    image = finished_job.images.get()
    client.force_login(cast.alice)
    for prefix in (settings.MEDIA_URL, "/", "/static/"):
        assert client.get(f"{prefix}{image.file.name}").status_code == 404, prefix


# --- The generation form ------------------------------------------------------------------------


def _post(client, project, data, **headers):
    return client.post(reverse("job_create", args=[project.pk]), data, **headers)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"n": "999"}, "n", "less than or equal to 10"),
        ({"n": "0"}, "n", "greater than or equal to 1"),
        ({"model": "dall-e-3"}, "model", "Select a valid choice"),
        ({"prompt": "   "}, "prompt", "Describe the image you want."),
        ({"prompt": "x" * 32_001}, "prompt", "at most 32000 characters"),
        ({"size": "custom", "width": "1000", "height": "1000"}, "width", "multiples of 16"),
        ({"size": "custom", "width": "3008", "height": "992"}, "width", "between 1:3 and 3:1"),
        ({"size": "custom", "width": "512", "height": "512"}, "width", "Too small"),
        ({"size": "custom", "width": "3840", "height": "3840"}, "width", "Too large"),
        ({"size": "custom", "width": "4096", "height": "2048"}, "width", "less than or equal to 3840"),
        ({"size": "custom", "width": "", "height": "1024"}, "width", "Enter a width"),
        (
            {"model": "gpt-image-1.5", "size": "custom", "width": "1536", "height": "864"},
            "size",
            "only makes the standard sizes",
        ),
        ({"model": "gpt-image-1.5", "size": "story"}, "size", "cannot make story 9:16 images"),
        ({"quality": "max"}, "quality", "does not offer max quality"),
        ({"background": "transparent", "output_format": "jpeg"}, "background", "needs PNG or WebP"),
        ({"model": "gpt-image-1.5", "complexity": "high"}, "complexity", "does not take a planning effort"),
        (
            {"output_format": "webp", "output_compression": "101"},
            "output_compression",
            "less than or equal to 100",
        ),
    ],
)
def test_invalid_requests_never_reach_the_queue_and_say_which_field(
    client, cast, project, generation_post, standin, changes, field, message
):
    client.force_login(cast.bob)
    response = _post(client, project, generation_post | changes, HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    assert f'id="id_{field}"' in html
    form = response.context["form"]
    assert field in form.errors
    assert Job.objects.count() == 0
    assert standin.requests == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"size": "custom", "width": "1536", "height": "864"}, {"size": "1536x864", "size_preset": "custom"}),
        ({"size": "story"}, {"size": "1152x2048"}),
        ({"size": "custom", "width": "3840", "height": "2160"}, {"size": "3840x2160"}),
        ({"size": "custom", "width": "816", "height": "816"}, {"size": "816x816"}),
        (
            {"output_format": "webp", "output_compression": "60", "background": "transparent"},
            {"output_compression": 60, "background": "transparent"},
        ),
        ({"output_format": "png", "output_compression": "60"}, {"output_compression": None}),
        (
            {"model": "gpt-image-2.5-sunburst", "quality": "max", "complexity": "high"},
            {"quality": "max", "complexity": "high"},
        ),
        ({"n": "10"}, {"n": 10}),
    ],
)
def test_valid_requests_are_queued_exactly_as_asked(
    client, cast, project, generation_post, changes, expected
):
    client.force_login(cast.bob)
    response = _post(client, project, generation_post | changes)
    assert response.status_code == 302
    job = Job.objects.get()
    for name, value in expected.items():
        assert getattr(job, name) == value, name


def test_an_htmx_submit_answers_with_the_form_and_the_new_card(client, cast, project, generation_post):
    client.force_login(cast.bob)
    response = _post(client, project, generation_post, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    job = Job.objects.get()
    assert 'id="generate-form"' in html
    assert 'hx-swap-oob="afterbegin:#job-feed"' in html
    assert f'id="job-{job.pk}"' in html
    assert 'hx-trigger="every 1s"' in html
    assert generation_post["prompt"] in html  # the prompt stays in the form for the next iteration


def test_the_poll_stops_when_the_job_ends(client, cast, project):
    job = create_job(project=project, author=cast.bob)
    client.force_login(cast.bob)
    url = reverse("job_card", args=[project.pk, job.pk])
    pending = client.get(url, HTTP_HX_REQUEST="true")
    assert pending.status_code == 200
    assert 'hx-trigger="every 1s"' in pending.content.decode()
    run(job)
    done = client.get(url, HTTP_HX_REQUEST="true")
    assert done.status_code == 286  # htmx's "stop polling"
    html = done.content.decode()
    assert "every 1s" not in html
    assert reverse("image_thumb", args=[project.pk, job.images.get().pk]) in html


def test_the_polled_card_costs_the_user_and_one_query_for_job_role_and_images(
    client, cast, project, django_assert_num_queries
):
    job = create_job(project=project, author=cast.bob)
    client.force_login(cast.bob)
    url = reverse("job_card", args=[project.pk, job.pk])
    client.get(url, HTTP_HX_REQUEST="true")  # the session is cached from here on
    with django_assert_num_queries(2):  # the user; the job with its project and the viewer's role
        assert client.get(url, HTTP_HX_REQUEST="true").status_code == 200
    run(job)
    with django_assert_num_queries(2):  # the same query brings the images once it has succeeded
        assert client.get(url, HTTP_HX_REQUEST="true").status_code == 286


def test_a_retrying_card_says_why_and_when(client, cast, project, standin):
    standin.inject("429:30")
    job = run(create_job(project=project, author=cast.bob))
    client.force_login(cast.bob)
    html = client.get(reverse("job_card", args=[project.pk, job.pk])).content.decode()
    assert "Retrying." in html
    assert "OpenAI is busy right now (rate limit reached)." in html
    assert "Next attempt in " in html
    assert "(attempt 2 of 5)" in html


def test_cancel_and_retry_from_the_card(client, cast, project, django_capture_on_commit_callbacks):
    job = create_job(project=project, author=cast.bob)
    client.force_login(cast.bob)
    response = client.post(reverse("job_cancel", args=[project.pk, job.pk]), HTTP_HX_REQUEST="true")
    assert "Canceled." in response.content.decode()
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELED
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(reverse("job_retry", args=[project.pk, job.pk]))
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert len(callbacks) == 1


def test_run_again_fills_the_form_from_a_job(client, cast, project):
    job = create_job(
        project=project, author=cast.bob, prompt="Red bicycle", size="1536x864", size_preset="custom", n=3
    )
    client.force_login(cast.bob)
    form = client.get(reverse("project", args=[project.pk]), {"again": job.pk}).context["form"]
    assert form.initial["prompt"] == "Red bicycle"
    assert (form.initial["size"], form.initial["width"], form.initial["height"], form.initial["n"]) == (
        "custom",
        1536,
        864,
        3,
    )


def test_every_page_says_demo_mode_when_there_is_no_key(client, cast, project, settings):
    settings.DEMO_MODE = True
    client.force_login(cast.bob)
    for url in (
        reverse("home"),
        reverse("project", args=[project.pk]),
        reverse("members", args=[project.pk]),
    ):
        assert "Images are placeholders from the local demo service" in client.get(url).content.decode()
    client.logout()
    assert "Images are placeholders" in client.get(reverse("login")).content.decode()
    settings.DEMO_MODE = False
    client.force_login(cast.bob)
    assert "Images are placeholders" not in client.get(reverse("home")).content.decode()


def test_the_api_key_never_reaches_a_page(client, cast, project, settings):
    settings.OPENAI_API_KEY = "sk-very-secret-value-123"
    client.force_login(cast.alice)
    for url in (
        reverse("home"),
        reverse("project", args=[project.pk]),
        reverse("members", args=[project.pk]),
    ):
        assert "sk-very-secret-value-123" not in client.get(url).content.decode()


def _dangling_references(html: str) -> list[str]:
    """aria-describedby ids that name no element on the page, and ids used twice."""
    import re
    from collections import Counter

    ids = Counter(re.findall(r'\sid="([^"]+)"', html))
    named = [i for value in re.findall(r'aria-describedby="([^"]*)"', html) for i in value.split()]
    return [f"missing {i}" for i in named if i not in ids] + [f"twice {i}" for i, n in ids.items() if n > 1]


def test_every_field_is_described_only_by_what_is_on_the_page(client, cast, project, finished_job, settings):
    """Help text and errors render with the ids Django's aria-describedby names; none dangles."""
    client.force_login(cast.alice)
    image = finished_job.images.get()
    p = project.pk
    bad_generation = {"prompt": "", "model": "gpt-image-2", "size": "custom", "width": "17", "n": "99"}
    pages = {
        "studio": client.get(reverse("project", args=[p])),
        "studio, errors": client.post(reverse("job_create", args=[p]), bad_generation),
        "edit": client.get(reverse("edit", args=[p]), {"inputs": f"img:{image.pk}"}),
        "edit, errors": client.post(
            reverse("edit", args=[p]), {"inputs": f"img:{image.pk}", "prompt": "", "n": "0"}
        ),
        "image": client.get(reverse("image_detail", args=[p, image.pk])),
        "members, errors": client.post(reverse("members", args=[p]), {"who": "nobody", "role": "x"}),
        "gallery, errors": client.get(reverse("gallery", args=[p]), {"since": "not-a-date"}),
        "prompts": client.get(reverse("project_prompts", args=[p])),
        "settings, errors": client.post(reverse("project_settings", args=[p]), {"name": " "}),
        "home": client.get(reverse("home")),
    }
    client.logout()
    pages["login, wrong password"] = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    client.force_login(cast.sam)
    pages["dashboard, errors"] = client.get(reverse("spend_dashboard"), {"period": "custom", "start": "x"})
    for name, response in pages.items():
        html = response.content.decode()
        assert response.status_code in (200, 400), name
        if name.endswith("errors"):
            assert "aria-describedby" in html, name
        assert _dangling_references(html) == [], name
        assert "{#" not in html and "#}" not in html, name  # a template comment that leaked
    studio_errors = pages["studio, errors"].content.decode()
    assert 'aria-describedby="id_prompt_error"' in studio_errors
    assert 'aria-describedby="id_output_compression_helptext"' in studio_errors
    assert 'aria-invalid="true"' in studio_errors


def test_limits_on_pages_come_from_the_settings_and_forms_that_enforce_them(client, cast, project, settings):
    settings.REFERENCE_MAX_BYTES = 10 * 1024 * 1024
    client.force_login(cast.alice)
    assert "up to 10.0 MB each" in client.get(reverse("references", args=[project.pk])).content.decode()
    studio = client.get(reverse("project", args=[project.pk])).content.decode()
    assert "/ 32,000 characters" in studio  # the prompt field's max_length
    assert "longest edge up to 3,840 px" in studio  # the width field's max_value
    assert 'maxlength="32000"' in studio


def test_the_job_card_is_one_template_wherever_it_shows(client, cast, project, finished_job):
    client.force_login(cast.alice)
    running = create_job(project=project, author=cast.bob)
    p = project.pk
    for response in (
        client.get(reverse("project", args=[p])),
        client.get(reverse("gallery", args=[p])),  # "In progress" holds the running job
        client.get(reverse("job_detail", args=[p, finished_job.pk])),
        client.get(reverse("job_card", args=[p, running.pk]), headers={"HX-Request": "true"}),
    ):
        assert "workspace/_job_card.html" in [t.name for t in response.templates]
    final = client.get(reverse("job_card", args=[p, finished_job.pk]), headers={"HX-Request": "true"})
    assert final.status_code == 286
    assert 'id="job-announcer"' in final.content.decode()  # told once, when it ends
    polled = client.get(reverse("job_card", args=[p, running.pk]), headers={"HX-Request": "true"})
    assert "job-announcer" not in polled.content.decode()


def test_comments_are_checked_by_the_service_and_the_refusal_is_shown(client, cast, project, finished_job):
    image = finished_job.images.get()
    client.force_login(cast.vera)  # viewers may comment
    url = reverse("image_comment", args=[project.pk, image.pk])
    empty = client.post(url, {"body": "   "}, follow=True)
    assert "Write something before posting a comment." in empty.content.decode()
    long = client.post(url, {"body": "x" * 4001}, follow=True)
    assert "Comments are limited to 4,000 characters." in long.content.decode()
    client.post(url, {"body": "  Warmer light please  "})
    assert list(image.comments.values_list("author", "body")) == [(cast.vera.pk, "Warmer light please")]


def test_two_owners_can_hand_over_and_the_members_page_labels_each_role_menu(client, cast, project):
    client.force_login(cast.alice)
    bob = Membership.objects.get(project=project, user=cast.bob)
    client.post(reverse("member_role", args=[project.pk, bob.pk]), {"role": "owner"})
    page = client.get(reverse("members", args=[project.pk])).content.decode()
    assert f'<label for="role-{bob.pk}" class="visually-hidden">Role of bob</label>' in page
    mine = Membership.objects.get(project=project, user=cast.alice)
    client.post(reverse("member_remove", args=[project.pk, mine.pk]))
    assert not Membership.objects.filter(pk=mine.pk).exists()
    bob.refresh_from_db()
    assert bob.role == Role.OWNER
    refused = client.post(reverse("member_role", args=[project.pk, bob.pk]), {"role": "bogus"})
    assert refused.status_code == 404  # alice is no longer a member


# --- Redirects stay on this site --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example", "///evil.example", "javascript:x"]
)
def test_next_pointing_off_site_falls_back_to_the_project(client, cast, project, target):
    job = create_job(project=project, author=cast.bob)
    client.force_login(cast.bob)
    response = client.post(reverse("job_cancel", args=[project.pk, job.pk]), {"next": target})
    assert response.status_code == 302
    assert response["Location"] == project.get_absolute_url()
    response = client.post(reverse("job_cancel", args=[project.pk, job.pk]) + f"?next={target}")
    assert response["Location"] == project.get_absolute_url()


def test_next_on_this_site_is_followed(client, cast, project):
    job = create_job(project=project, author=cast.bob)
    client.force_login(cast.bob)
    gallery = reverse("gallery", args=[project.pk]) + "?q=lemon"
    response = client.post(reverse("job_cancel", args=[project.pk, job.pk]), {"next": gallery})
    assert response["Location"] == gallery


# --- Ids: ASCII digits only ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["²", "٣", "１", "3x"])
def test_a_page_link_that_is_no_job_number_is_a_400_that_says_so(client, cast, project, value):
    client.force_login(cast.bob)
    before = client.get(reverse("project", args=[project.pk]), {"before": value})
    assert before.status_code == 400
    assert "“before” must be a job number" in before.content.decode()
    again = client.get(reverse("project", args=[project.pk]), {"again": value})
    assert again.status_code == 400
    assert "“again” must be a job number" in again.content.decode()
    edit_again = client.get(reverse("edit", args=[project.pk]), {"again": value})
    assert edit_again.status_code == 400


def test_one_bad_id_among_many_is_skipped(client, cast, project):
    from tests.factories import ImageFactory
    from workspace.models import Favourite

    images = [ImageFactory(job__project=project, job__author=cast.bob) for _ in range(2)]
    client.force_login(cast.bob)
    response = client.post(
        reverse("bulk", args=[project.pk]), {"action": "favourite", "ids": ["²", "٣", str(images[0].pk)]}
    )
    assert response.status_code == 302
    assert list(Favourite.objects.values_list("image_id", flat=True)) == [images[0].pk]
    compare = client.get(reverse("compare", args=[project.pk]), {"ids": ["²", *[i.pk for i in images]]})
    assert compare.status_code == 200
    detail = client.get(
        reverse("image_detail", args=[project.pk, images[0].pk]), {"from": "gallery", "author": ["²", "٣"]}
    )
    assert detail.status_code == 200
    edit = client.post(reverse("edit", args=[project.pk]), {"inputs": ["img:²"], "prompt": "x"})
    assert edit.status_code == 400
    assert "“img:²” is not an image of this project." in edit.content.decode()


def test_parse_id_accepts_ascii_digits_only():
    from workspace.views._common import parse_id

    assert parse_id("42") == 42
    assert [parse_id(v) for v in (None, "", "²", "٣", "-1", " 1", "1.0", "9" * 19)] == [None] * 8
