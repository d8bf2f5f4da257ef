"""Who may reach which URL, for every route the app has, generated from the URL resolver.

The routes come from `config.urls`; what each needs comes from ROUTES below, and the objects its URL
names from KWARGS. A route that ROUTES does not classify fails here the day it is added, with a message
that says what to add. Then every route is tried by the whole cast:

- anyone signed out is sent to log in;
- charlie, a stranger, gets a 404 on every method (he must not learn that the project exists);
- vera (viewer) and sam (staff, not a member) read, and are refused (403) what needs more;
- bob (editor) and alice (owner) do what their role allows;

and nothing a refused request asks for happens. Another project's object reached through a project's
URL is a 404 for its members too.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import BytesIO

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from PIL import Image as PILImage

from tests.conftest import GENERATION_POST
from tests.factories import (
    ImageFactory,
    JobFactory,
    MembershipFactory,
    ReferenceFactory,
    UserFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
    brand_kit_version,
    picture,
    template_version,
)
from workspace.campaign_models import BrandKit, BrandKitVersion, Campaign, PromptTemplate, TemplateVersion
from workspace.models import (
    ROLE_RANK,
    Comment,
    Conversation,
    Favourite,
    Image,
    Job,
    Membership,
    Project,
    Reference,
    Role,
    Turn,
    WebhookDelivery,
    WebhookEndpoint,
)

pytestmark = pytest.mark.django_db

# --- The routes --------------------------------------------------------------------------------------


def _walk(patterns, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str, set[str], object]]:
    """(name, path pattern, kwarg names, view) of every named route, includes followed."""
    for entry in patterns:
        kwargs = set(entry.pattern.regex.groupindex)
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            for name, path, names, view in _walk(entry.url_patterns, prefix + str(entry.pattern), inner):
                yield name, path, names | kwargs, view
        elif isinstance(entry, URLPattern) and entry.name:
            yield f"{namespace}{entry.name}", prefix + str(entry.pattern), kwargs, entry.callback


def workspace_routes() -> dict[str, tuple[str, set[str]]]:
    """The app's own routes (not the admin's or the login's): name -> (path pattern, kwarg names).

    Not the API's (workspace.api, /api/v1/): bearer tokens and JSON errors, not sessions and log-in
    redirects; tests/test_api_access.py holds its matrix.
    """
    import config.urls

    return {
        name: (path, names)
        for name, path, names, view in _walk(get_resolver(config.urls).url_patterns)
        if getattr(view, "__module__", "").split(".")[0] == "workspace"
        and not getattr(view, "__module__", "").startswith("workspace.api")
    }


ROUTE_LIST = workspace_routes()
PROJECT_ROUTES = sorted(name for name, (_, names) in ROUTE_LIST.items() if "project_id" in names)
OTHER_ROUTES = sorted(name for name, (_, names) in ROUTE_LIST.items() if "project_id" not in names)

# --- What each route needs ---------------------------------------------------------------------------

# Who may use a route that is not in a project.
ANYONE, SIGNED_IN, STAFF = "anyone", "signed in", "staff"
# Staff, or a scraper with the metrics token: anyone else, signed in or not, gets a 404 (no login page
# that would tell a stranger the URL exists).
OPERATORS = "operators"


@dataclass(frozen=True)
class Route:
    """The methods a route answers and who may use each: a Role inside a project (staff count as
    viewers), ANYONE / SIGNED_IN / STAFF outside one; None where the method is not allowed (405).
    `data` gives the query (GET) or form (POST) of a request that should succeed."""

    get: Role | str | None = Role.VIEWER
    post: Role | str | None = None
    data: Callable[["World"], dict] = field(default=lambda world: {})

    @property
    def methods(self) -> dict[str, Role | str]:
        return {method: needs for method in ("get", "post") if (needs := getattr(self, method)) is not None}


def write(needs, data: Callable[["World"], dict] = lambda world: {}) -> Route:
    """A POST-only route."""
    return Route(get=None, post=needs, data=data)


def _upload(world: "World") -> dict:
    return {"files": [SimpleUploadedFile("lemon.png", picture(), content_type="image/png")]}


def _edit(world: "World") -> dict:
    return {
        "prompt": "Make the lemon a lime",
        "model": "gpt-image-2",
        "size": "auto",
        "quality": "low",
        "output_format": "png",
        "output_compression": "100",
        "background": "auto",
        "n": "1",
        "inputs": [f"img:{world.source.pk}", f"ref:{world.reference.pk}"],
    }


def _batch(world: "World") -> dict:
    return {
        "template": world.campaign.template_version.template_id,
        "file": SimpleUploadedFile("items.csv", b"product\nmug\n", content_type="text/csv"),
    }


ROUTES: dict[str, Route] = {
    # Outside a project.
    "healthz": Route(get=ANYONE),
    "metrics": Route(get=OPERATORS),
    "home": Route(get=SIGNED_IN),
    "project_create": write(SIGNED_IN, lambda world: {"name": "Autumn"}),
    "my_spend": Route(get=SIGNED_IN),
    "spend_badge": Route(get=SIGNED_IN),
    "spend_dashboard": Route(get=STAFF),
    "spend_csv": Route(get=STAFF),
    "spend_budget_set": write(STAFF, lambda world: {"scope": "workspace", "monthly_limit": "250"}),
    "audit": Route(get=STAFF),
    "account_tokens": Route(
        get=SIGNED_IN, post=SIGNED_IN, data=lambda world: {"name": "CI", "scopes": ["read"]}
    ),
    "token_revoke": write(SIGNED_IN, lambda world: {"token": "0"}),
    "my_prompts": Route(get=SIGNED_IN),
    # The project and its team.
    "project": Route(),
    "project_settings": Route(get=Role.OWNER, post=Role.OWNER, data=lambda world: {"name": "Summer"}),
    "project_archive": write(Role.OWNER),
    "members": Route(post=Role.OWNER, data=lambda world: {"who": "charlie", "role": "viewer"}),
    "member_role": write(Role.OWNER, lambda world: {"role": "editor"}),
    "member_remove": write(Role.OWNER),
    # Webhooks, on the settings page: owners only.
    "webhook_add": write(
        Role.OWNER, lambda world: {"url": "https://93.184.215.14/hook", "events": ["job.succeeded"]}
    ),
    "webhook_remove": write(Role.OWNER),
    "webhook_rotate": write(Role.OWNER),
    "webhook_ping": write(Role.OWNER),
    "webhook_redeliver": write(Role.OWNER),
    # Jobs.
    "job_create": write(Role.EDITOR, lambda world: dict(GENERATION_POST)),
    "estimate": Route(data=lambda world: dict(GENERATION_POST)),
    "job_detail": Route(),
    "job_card": Route(),
    "job_cancel": write(Role.EDITOR),
    "job_retry": write(Role.EDITOR),
    "job_reproduce": write(Role.EDITOR),
    "job_preview": Route(),
    "job_markup": Route(),
    # References and edits.
    "references": Route(post=Role.EDITOR, data=_upload),
    "reference_remove": write(Role.EDITOR),
    "reference_file": Route(),
    "edit": Route(get=Role.EDITOR, post=Role.EDITOR, data=_edit),
    # Images. Starring, bulk starring and commenting are open to viewers, as the image page shows.
    "image_detail": Route(),
    "image_file": Route(),
    "image_thumb": Route(),
    "image_download": Route(),
    "image_family": Route(),
    "image_composite": Route(),
    "image_convert": Route(),
    "image_favourite": write(Role.VIEWER, lambda world: {"on": "1"}),
    "image_comment": write(Role.VIEWER, lambda world: {"body": "Lovely light."}),
    "image_review": write(Role.EDITOR, lambda world: {"state": "approved"}),
    "image_delete": write(Role.EDITOR),
    "bulk": write(Role.VIEWER, lambda world: {"action": "favourite", "ids": [world.image.pk]}),
    # The gallery and prompts.
    "gallery": Route(),
    "compare": Route(data=lambda world: {"ids": [world.source.pk, world.image.pk]}),
    "project_prompts": Route(),
    "prompt_preview": write(Role.EDITOR, lambda world: dict(GENERATION_POST)),
    # Brand kits and prompt templates: members read, editors save new versions.
    "kit_list": Route(),
    "kit_create": Route(get=Role.EDITOR, post=Role.EDITOR, data=lambda world: {"name": "Autumn kit"}),
    "kit_preview": write(Role.EDITOR, lambda world: {"name": "x", "style_words": "bold"}),
    "kit_detail": Route(),
    "kit_version": Route(),
    "kit_edit": Route(get=Role.EDITOR, post=Role.EDITOR, data=lambda world: {"name": "House style"}),
    "kit_archive": write(Role.EDITOR),
    "template_list": Route(),
    "template_create": Route(
        get=Role.EDITOR, post=Role.EDITOR, data=lambda world: {"name": "Shot", "text": "A {product}"}
    ),
    "template_preview": write(Role.EDITOR, lambda world: {"text": "A {product}"}),
    "template_detail": Route(),
    "template_version": Route(),
    "template_edit": Route(
        get=Role.EDITOR, post=Role.EDITOR, data=lambda world: {"name": "Shot", "text": "A {product} v2"}
    ),
    "template_archive": write(Role.EDITOR),
    # Conversations and content credentials.
    "conversation_start": write(Role.EDITOR),
    "conversation": Route(),
    "turn_send": write(Role.EDITOR, lambda world: {"message": "Make the lemon a lime"}),
    "turn_branch": write(Role.EDITOR),
    "credential_check": write(
        Role.EDITOR, lambda world: _upload(world) | {"file": _upload(world)["files"][0]}
    ),
    # Campaigns: members read; editors set up, queue and steer; anyone who may star stars a cell.
    "campaigns": Route(),
    "campaign_grid_new": Route(
        get=Role.EDITOR,
        post=Role.EDITOR,
        data=lambda world: {"prompt": "A lemon", "axis1": "quality", "values1": "low, high"},
    ),
    "campaign_batch_new": Route(get=Role.EDITOR, post=Role.EDITOR, data=_batch),
    "campaign_detail": Route(),
    "campaign_progress": Route(),
    "campaign_confirm": write(Role.EDITOR),
    "campaign_control": write(Role.EDITOR, lambda world: {"action": "pause"}),
    "campaign_zip": Route(),
    "campaign_cell": Route(),
    "campaign_cell_star": write(Role.VIEWER, lambda world: {"on": "1"}),
    "campaign_cell_review": write(Role.EDITOR, lambda world: {"state": "approved"}),
    "campaign_cell_default": write(Role.EDITOR),
}

# --- The objects a URL names ---------------------------------------------------------------------------


@dataclass
class World:
    """A project with one of everything, and another project (charlie's) with its own."""

    project: Project
    other_project: Project
    source: Image  # a generated image, the first input of the edit
    reference: Reference
    job: Job  # a succeeded, masked edit of source and reference, with a streamed preview
    image: Image  # its output, with a pasted-back composite
    membership: Membership  # dana, a viewer the owner can promote or remove
    their_job: Job
    their_image: Image
    their_reference: Reference
    their_membership: Membership
    endpoint: WebhookEndpoint
    delivery: WebhookDelivery  # a failed one, so it may be redelivered
    their_endpoint: WebhookEndpoint
    their_delivery: WebhookDelivery
    kit: BrandKit
    their_kit: BrandKit
    template: PromptTemplate
    their_template: PromptTemplate
    conversation: Conversation  # about source, with one finished turn
    turn: Turn
    their_conversation: Conversation
    their_turn: Turn
    campaign: Campaign  # a grid the job above is the one cell of
    their_campaign: Campaign


@dataclass(frozen=True)
class Kwarg:
    mine: Callable[[World], object]
    # The same kind of object in charlie's project, for kwargs that name a project's object.
    theirs: Callable[[World], object] | None = None


KWARGS: dict[str, Kwarg] = {
    "project_id": Kwarg(lambda w: w.project.pk, lambda w: w.other_project.pk),
    "job_id": Kwarg(lambda w: w.job.pk, lambda w: w.their_job.pk),
    "image_id": Kwarg(lambda w: w.image.pk, lambda w: w.their_image.pk),
    "reference_id": Kwarg(lambda w: w.reference.pk, lambda w: w.their_reference.pk),
    "membership_id": Kwarg(lambda w: w.membership.pk, lambda w: w.their_membership.pk),
    "endpoint_id": Kwarg(lambda w: w.endpoint.pk, lambda w: w.their_endpoint.pk),
    "delivery_id": Kwarg(lambda w: w.delivery.pk, lambda w: w.their_delivery.pk),
    "kit_id": Kwarg(lambda w: w.kit.pk, lambda w: w.their_kit.pk),
    "template_id": Kwarg(lambda w: w.template.pk, lambda w: w.their_template.pk),
    "number": Kwarg(lambda w: 1),  # kit_version, template_version: the first version
    "campaign_id": Kwarg(lambda w: w.campaign.pk, lambda w: w.their_campaign.pk),
    "variant": Kwarg(lambda w: "file"),  # reference_file, image_composite
    "target": Kwarg(lambda w: "webp"),  # image_convert
    "conversation_id": Kwarg(lambda w: w.conversation.pk, lambda w: w.their_conversation.pk),
    "turn_id": Kwarg(lambda w: w.turn.pk, lambda w: w.their_turn.pk),
}


def _thread(project, author, root: Image) -> tuple[Conversation, Turn]:
    conversation = Conversation.objects.create(
        project=project, author=author, root_image=root, mainline_model="gpt-5.5", image_model="gpt-image-2"
    )
    job = JobFactory(project=project, author=author, succeeded=True, kind=Job.Kind.CONVERSE)
    image = ImageFactory(job=job)
    turn = Turn.objects.create(
        conversation=conversation,
        index=0,
        message="Make it brighter",
        job=job,
        source_image=root,
        response_id="resp_earlier",
        image=image,
    )
    return conversation, turn


@pytest.fixture
def world(cast, project, other_project) -> World:
    source = ImageFactory(job__project=project, job__author=cast.bob)
    reference = ReferenceFactory(project=project, uploaded_by=cast.bob)
    job = JobFactory(
        project=project,
        author=cast.bob,
        edit=True,
        succeeded=True,
        masked=True,
        marked_up=True,  # not both in real life (the form refuses it): here, each route has its file
        previewed=True,
        inputs=[source, reference],
    )
    their_image = ImageFactory(job__project=other_project, job__author=cast.charlie)
    endpoint = WebhookEndpointFactory(project=project)
    their_endpoint = WebhookEndpointFactory(project=other_project)
    conversation, turn = _thread(project, cast.bob, source)
    their_conversation, their_turn = _thread(other_project, cast.charlie, their_image)
    version = template_version(project=project)
    campaign = Campaign.objects.create(
        project=project,
        author=cast.bob,
        kind=Campaign.Kind.GRID,
        name="Grid",
        template_version=version,
        axes=[{"name": "quality", "values": ["low"]}],
    )
    Job.objects.filter(pk=job.pk).update(campaign=campaign, cell={"quality": "low"}, template_version=version)
    their_campaign = Campaign.objects.create(
        project=other_project, author=cast.charlie, kind=Campaign.Kind.GRID, name="Theirs"
    )
    return World(
        project=project,
        other_project=other_project,
        source=source,
        reference=reference,
        job=job,
        image=ImageFactory(job=job, pasted=True),
        membership=MembershipFactory(project=project, user=UserFactory(username="dana"), role=Role.VIEWER),
        their_job=their_image.job,
        their_image=their_image,
        their_reference=ReferenceFactory(project=other_project, uploaded_by=cast.charlie),
        their_membership=MembershipFactory(project=other_project, role=Role.EDITOR),
        endpoint=endpoint,
        delivery=WebhookDeliveryFactory(endpoint=endpoint),
        their_endpoint=their_endpoint,
        their_delivery=WebhookDeliveryFactory(endpoint=their_endpoint),
        kit=brand_kit_version(project=project, references=[reference]).kit,
        their_kit=brand_kit_version(project=other_project).kit,
        template=template_version(project=project).template,
        their_template=template_version(project=other_project).template,
        conversation=conversation,
        turn=turn,
        their_conversation=their_conversation,
        their_turn=their_turn,
        campaign=campaign,
        their_campaign=their_campaign,
    )


def route_for(name: str) -> Route:
    if name not in ROUTES:
        path, names = ROUTE_LIST[name]
        needs = "a Role" if "project_id" in names else "ANYONE, SIGNED_IN or STAFF"
        pytest.fail(
            f"The route {name!r} ({path}) is not classified: add it to ROUTES in tests/test_access.py "
            f"with the methods it answers and who may use each ({needs}), e.g. "
            f"'{name}': Route() for a page any member reads, or write(Role.EDITOR, data) for a POST."
        )
    return ROUTES[name]


def url_for(name: str, world: World, *, theirs: str = "") -> str:
    """The route's URL with my objects, or with charlie's for the kwarg named `theirs`
    ("project_id": charlie's project, with my objects)."""
    kwargs = {}
    for kwarg in sorted(ROUTE_LIST[name][1]):
        if kwarg not in KWARGS:
            pytest.fail(
                f"The route {name!r} takes <{kwarg}>, which KWARGS in tests/test_access.py does not "
                f"know: add how to fill it from the World (and, for a project's object, charlie's)."
            )
        source = KWARGS[kwarg]
        kwargs[kwarg] = source.theirs(world) if kwarg == theirs else source.mine(world)
    return reverse(name, kwargs=kwargs)


def state() -> dict:
    """What any write would change, to show that a refused request changed nothing."""
    return {
        "projects": list(Project.objects.order_by("pk").values_list("pk", "name", "archived_at")),
        "members": list(Membership.objects.order_by("pk").values_list("pk", "user_id", "role")),
        "jobs": list(Job.objects.order_by("pk").values_list("pk", "status", "attempts")),
        "images": list(Image.objects.order_by("pk").values_list("pk", "review_state", "deleted_at")),
        "references": list(Reference.objects.order_by("pk").values_list("pk", "removed_at")),
        "favourites": Favourite.objects.count(),
        "comments": Comment.objects.count(),
        "webhooks": list(WebhookEndpoint.objects.order_by("pk").values_list("pk", "url", "secret")),
        "deliveries": list(
            WebhookDelivery.objects.order_by("pk").values_list("pk", "status", "max_attempts")
        ),
        "kits": list(BrandKit.objects.order_by("pk").values_list("pk", "name", "archived_at")),
        "kit_versions": BrandKitVersion.objects.count(),
        "templates": list(PromptTemplate.objects.order_by("pk").values_list("pk", "name", "archived_at")),
        "template_versions": TemplateVersion.objects.count(),
    }


def request(client, method: str, url: str, data: dict):
    response = getattr(client, method)(url, data)
    if response.streaming:
        # Read to the end: the test client then closes the file (closing it by hand would also close
        # the test's database connection, through request_finished).
        b"".join(response.streaming_content)
    return response


def assert_sent_to_log_in(response, url: str) -> None:
    assert response.status_code == 302, (url, response.status_code)
    assert response["Location"].startswith(reverse("login")), (url, response["Location"])


# --- The classification --------------------------------------------------------------------------------


def test_it_classifies_every_route_and_only_routes_that_exist():
    unclassified = sorted(set(ROUTE_LIST) - set(ROUTES))
    assert not unclassified, (
        f"New routes need a line in ROUTES (tests/test_access.py) saying who may use them: {unclassified}"
    )
    stale = sorted(set(ROUTES) - set(ROUTE_LIST))
    assert not stale, f"ROUTES names routes that no longer exist; remove them: {stale}"
    for name in PROJECT_ROUTES:
        assert all(isinstance(needs, Role) for needs in ROUTES[name].methods.values()), name
        assert not set(ROUTE_LIST[name][1]) - set(KWARGS), name
    for name in OTHER_ROUTES:
        assert set(ROUTES[name].methods.values()) <= {ANYONE, SIGNED_IN, STAFF, OPERATORS}, name
    # The matrix is only as good as the walk: it must find the app's routes, includes followed.
    assert {"project", "image_file", "image_composite", "job_preview", "home"} <= set(ROUTE_LIST)
    assert len(PROJECT_ROUTES) >= 30


# --- Inside a project --------------------------------------------------------------------------------

ACTORS = ("anonymous", "charlie", "vera", "sam", "bob", "alice")
# The role each actor has in the project; sam is staff and not a member, so he counts as a viewer.
ACTING_AS = {"vera": Role.VIEWER, "sam": Role.VIEWER, "bob": Role.EDITOR, "alice": Role.OWNER}


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name", PROJECT_ROUTES)
def test_it_lets_each_role_do_exactly_what_the_route_allows(client, cast, world, name, actor):
    route = route_for(name)
    url = url_for(name, world)
    if actor != "anonymous":
        client.force_login(getattr(cast, actor))
    for method, needs in route.methods.items():
        before = state()
        response = request(client, method, url, route.data(world))
        if actor == "anonymous":
            assert_sent_to_log_in(response, url)
        elif actor == "charlie":
            assert response.status_code == 404, (method, url, response.status_code)
        elif ROLE_RANK[ACTING_AS[actor]] >= ROLE_RANK[needs]:
            assert 200 <= response.status_code < 400, (method, url, response.status_code)
            continue  # allowed: what it did is checked route by route below and in the route's own tests
        else:
            assert response.status_code == 403, (method, url, response.status_code)
        assert state() == before, (method, url, "a refused request changed something")


@pytest.mark.parametrize("name", PROJECT_ROUTES)
def test_it_answers_405_to_a_method_the_route_does_not_take(client, cast, world, name):
    route = route_for(name)
    refused = [method for method in ("get", "post") if method not in route.methods]
    url = url_for(name, world)
    client.force_login(cast.alice)
    before = state()
    for method in refused:
        assert request(client, method, url, route.data(world)).status_code == 405, (method, url)
    assert state() == before


OBJECT_ROUTES = sorted(
    (name, kwarg)
    for name in PROJECT_ROUTES
    for kwarg in ROUTE_LIST[name][1]
    if kwarg != "project_id" and kwarg in KWARGS and KWARGS[kwarg].theirs is not None
)


@pytest.mark.parametrize("actor", ["alice", "sam"])
@pytest.mark.parametrize(("name", "kwarg"), OBJECT_ROUTES)
def test_it_answers_404_for_another_projects_object_through_my_project(
    client, cast, world, name, kwarg, actor
):
    """/p/<mine>/images/<theirs>/file: the owner (or staff, who see both) cannot cross projects.
    (The role is checked before the object, so staff meet a 403 first where a viewer may not go.)"""
    route = route_for(name)
    url = url_for(name, world, theirs=kwarg)
    client.force_login(getattr(cast, actor))
    before = state()
    for method, needs in route.methods.items():
        expected = 404 if ROLE_RANK[ACTING_AS[actor]] >= ROLE_RANK[needs] else 403
        assert request(client, method, url, route.data(world)).status_code == expected, (method, url)
    assert state() == before


@pytest.mark.parametrize(("name", "kwarg"), OBJECT_ROUTES)
def test_it_answers_404_for_my_object_through_a_project_charlie_owns(client, cast, world, name, kwarg):
    """The other way round: charlie's own project id opens no door to our objects."""
    route = route_for(name)
    url = url_for(name, world, theirs="project_id")
    client.force_login(cast.charlie)
    before = state()
    for method in route.methods:
        assert request(client, method, url, route.data(world)).status_code == 404, (method, url)
    assert state() == before


# --- Outside a project -----------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["anonymous", "bob", "sam"])
@pytest.mark.parametrize("name", OTHER_ROUTES)
def test_it_opens_pages_outside_projects_to_the_right_people(client, cast, world, name, actor):
    route = route_for(name)
    url = url_for(name, world)
    if actor != "anonymous":
        client.force_login(getattr(cast, actor))
    for method, needs in route.methods.items():
        response = request(client, method, url, route.data(world))
        if needs == ANYONE or (needs == SIGNED_IN and actor != "anonymous") or actor == "sam":
            assert 200 <= response.status_code < 400, (method, url, response.status_code)
        elif needs == OPERATORS:
            assert response.status_code == 404, (method, url, response.status_code)
        elif actor == "anonymous":
            assert_sent_to_log_in(response, url)
        else:  # STAFF pages are a 404 for everyone else: they must not learn the page exists
            assert response.status_code == 404, (method, url, response.status_code)


# --- What allowed requests do (routes that had no view test) ---------------------------------------


def test_it_stars_and_unstars_an_image_for_a_viewer(client, cast, world):
    url = reverse("image_favourite", args=[world.project.pk, world.image.pk])
    client.force_login(cast.vera)
    assert client.post(url, {"on": "1"})["Location"] == world.image.get_absolute_url()
    star = Favourite.objects.get(user=cast.vera)
    assert (star.image, star.project, star.image_created_at) == (
        world.image,
        world.project,
        world.image.created_at,
    )
    client.post(url, {"on": "0"})
    assert not Favourite.objects.filter(user=cast.vera).exists()


@pytest.mark.parametrize(("target", "pil_format"), [("webp", "WEBP"), ("jpeg", "JPEG"), ("png", "PNG")])
def test_it_converts_the_original_to_the_asked_format(client, cast, world, target, pil_format):
    client.force_login(cast.vera)
    response = client.get(reverse("image_convert", args=[world.project.pk, world.image.pk, target]))
    assert response.status_code == 200
    assert response["Content-Type"] == f"image/{target}"
    assert response["Content-Disposition"].startswith("attachment;")
    with PILImage.open(BytesIO(b"".join(response.streaming_content))) as converted:
        assert (converted.format, converted.size) == (pil_format, (world.image.width, world.image.height))


def test_it_converts_to_no_other_format(client, cast, world):
    client.force_login(cast.alice)
    url = reverse("image_convert", args=[world.project.pk, world.image.pk, "gif"])
    assert client.get(url).status_code == 404


def _stored(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def test_it_serves_the_pasted_composite_its_thumbnail_and_download(client, cast, world):
    client.force_login(cast.vera)
    url = lambda variant: reverse("image_composite", args=[world.project.pk, world.image.pk, variant])  # noqa: E731
    pasted = client.get(url("file"))
    assert pasted["Content-Type"] == "image/png"
    assert b"".join(pasted.streaming_content) == _stored(world.image.composite.name)
    thumb = client.get(url("thumb"))
    assert thumb["Content-Type"] == "image/webp"
    assert b"".join(thumb.streaming_content) == _stored(world.image.composite_thumbnail.name)
    download = client.get(url("download"))
    assert download["Content-Disposition"].startswith("attachment;")
    assert "-pasted.png" in download["Content-Disposition"]
    assert b"".join(download.streaming_content) == _stored(world.image.composite.name)
    assert client.get(url("original")).status_code == 404
    plain = reverse("image_composite", args=[world.project.pk, world.source.pk, "file"])
    assert client.get(plain).status_code == 404  # an image that was not pasted has no composite


def test_it_serves_the_streamed_preview_of_a_job(client, cast, world):
    client.force_login(cast.vera)
    response = client.get(reverse("job_preview", args=[world.project.pk, world.job.pk]))
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == _stored(world.job.preview.name)
    no_preview = reverse("job_preview", args=[world.project.pk, world.source.job.pk])
    assert client.get(no_preview).status_code == 404


def test_it_reproduces_an_edit_with_its_inputs_and_mask_as_a_new_job(
    client, cast, world, django_capture_on_commit_callbacks
):
    client.force_login(cast.bob)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("job_reproduce", args=[world.project.pk, world.job.pk]))
    earlier = [
        world.job.pk,
        world.source.job.pk,
        world.their_job.pk,
        world.turn.job_id,
        world.their_turn.job_id,
    ]
    again = Job.objects.exclude(pk__in=earlier).get()
    assert response["Location"] == f"{world.project.get_absolute_url()}#job-{again.pk}"
    assert (again.status, again.kind, again.author, again.prompt) == (
        Job.Status.QUEUED,
        Job.Kind.EDIT,
        cast.bob,
        world.job.prompt,
    )
    assert [item.source for item in again.inputs.all()] == [world.source, world.reference]
    assert _stored(again.mask.name) == _stored(world.job.mask.name)
    assert len(callbacks) == 1  # enqueued once, on commit


# --- Archived projects ---------------------------------------------------------------------------------

# Owners archive and restore (and rename) an archived project; everything else that writes is refused.
ARCHIVE_ITSELF = {"project_archive", "project_settings"}
ARCHIVED_WRITES = sorted(
    name for name in PROJECT_ROUTES if "post" in route_for(name).methods and name not in ARCHIVE_ITSELF
)


@pytest.mark.parametrize("name", ARCHIVED_WRITES)
def test_an_archived_project_refuses_every_write_with_409(client, cast, world, name):
    """Every POST route the resolver knows, as the owner (who may do all of them), with the data that
    succeeds in a live project: a 409 that says why, and nothing changed."""
    from django.utils import timezone

    from workspace.access import ARCHIVED
    from workspace.models import AuditEvent

    route = route_for(name)
    Project.objects.filter(pk=world.project.pk).update(archived_at=timezone.now())
    client.force_login(cast.alice)
    before = state(), AuditEvent.objects.count()
    response = request(client, "post", url_for(name, world), route.data(world))
    assert response.status_code == 409, (name, response.status_code)
    assert response.content.decode() == ARCHIVED
    assert (state(), AuditEvent.objects.count()) == before


def test_the_archived_list_covers_the_writes_the_issue_named():
    assert {"image_review", "image_delete", "references", "image_comment", "bulk", "job_create"} <= set(
        ARCHIVED_WRITES
    )


def test_an_archived_project_still_reads_and_can_be_restored(client, cast, world):
    from django.utils import timezone

    Project.objects.filter(pk=world.project.pk).update(archived_at=timezone.now())
    client.force_login(cast.alice)
    assert client.get(reverse("image_detail", args=[world.project.pk, world.image.pk])).status_code == 200
    download = {"action": "download", "ids": [world.image.pk]}
    assert request(client, "post", reverse("bulk", args=[world.project.pk]), download).status_code == 200
    client.post(reverse("project_archive", args=[world.project.pk]))
    world.project.refresh_from_db()
    assert not world.project.is_archived
