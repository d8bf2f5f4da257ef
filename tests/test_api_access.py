"""The API's own access matrix, over every /api/v1/ route the resolver has: without a token a 401, a
stranger (charlie) a 404 on every project route, a viewer (vera) reads and gets 403 for writes, an
editor (bob) writes; another project's object through my project's URL is a 404. A route this file
does not classify fails here the day it is added."""

import json
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from tests.factories import (
    ImageFactory,
    JobFactory,
    ReferenceFactory,
    WebhookDeliveryFactory,
    template_version,
)
from tests.test_access import _walk
from workspace import batches
from workspace.api.tokens import token_create
from workspace.campaign_models import Campaign
from workspace.models import Conversation, Job, Role
from workspace.webhook_models import WebhookEndpoint

pytestmark = pytest.mark.django_db

# name -> (method, the role it needs inside the project, or None outside one).
API_ROUTES = {
    "project-list": ("get", None),
    "project-detail": ("get", Role.VIEWER),
    "job-create": ("post", Role.EDITOR),
    "edit-create": ("post", Role.EDITOR),
    "job-detail": ("get", Role.VIEWER),
    "job-cancel": ("post", Role.EDITOR),
    "job-retry": ("post", Role.EDITOR),
    "image-list": ("get", Role.VIEWER),
    "image-detail": ("get", Role.VIEWER),
    "image-download": ("get", Role.VIEWER),
    "reference-upload": ("post", Role.EDITOR),
    "template-list": ("get", Role.VIEWER),
    "campaign-list": ("get", Role.VIEWER),
    "campaign-detail": ("get", Role.VIEWER),
    "campaign-pause": ("post", Role.EDITOR),
    "campaign-resume": ("post", Role.EDITOR),  # on a paused campaign: call() below
    "campaign-cancel": ("post", Role.EDITOR),
    "campaign-retry": ("post", Role.EDITOR),
    "campaign-batch-create": ("post", Role.EDITOR),
    "campaign-confirm": ("post", Role.EDITOR),  # on a draft: call() below
    "campaign-grid-create": ("post", Role.EDITOR),
    "conversation-start": ("post", Role.EDITOR),
    "conversation-list": ("get", Role.VIEWER),
    "conversation-detail": ("get", Role.VIEWER),
    "conversation-turns": ("post", Role.EDITOR),
    "my-spend": ("get", None),
    "user-spend": ("get", None),  # staff with an admin token: test_api.py
    # Owners only, like the settings page (an owner's answers: test_api.py).
    "webhook-list": ("get", Role.OWNER),
    "webhook-detail": ("delete", Role.OWNER),
    "webhook-rotate": ("post", Role.OWNER),
    "webhook-ping": ("post", Role.OWNER),
    "webhook-deliveries": ("get", Role.OWNER),
    "webhook-redeliver": ("post", Role.OWNER),
}
# Routes that answer a second method too: name -> (method, role).
SECOND_METHODS = {
    "job-create": ("get", Role.VIEWER),  # the job list
    "webhook-list": ("post", Role.OWNER),  # add an endpoint
}
CASES = sorted(
    {(name, method) for name, (method, _) in API_ROUTES.items()}
    | {(name, method) for name, (method, _) in SECOND_METHODS.items()}
)
PUBLIC = {"schema", "docs", "not-found"}


def api_routes() -> dict[str, set[str]]:
    from django.urls import get_resolver

    import config.urls

    return {
        name.removeprefix("api:"): kwargs
        for name, path, kwargs, view in _walk(get_resolver(config.urls).url_patterns)
        if name.startswith("api:")
    }


def test_every_api_route_is_classified():
    assert set(api_routes()) == set(API_ROUTES) | PUBLIC


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Requests without a token share one client address here: start each test with a fresh count."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def world(cast, project, other_project):
    image = ImageFactory(job__project=project, job__author=cast.bob)
    failed = JobFactory(project=project, author=cast.bob, status=Job.Status.FAILED)
    queued = JobFactory(project=project, author=cast.bob)
    their_image = ImageFactory(job__project=other_project, job__author=cast.charlie)
    hook = WebhookEndpoint.objects.create(project=project, url="https://example.com/h", events=["job.failed"])
    theirs = WebhookEndpoint.objects.create(
        project=other_project, url="https://example.com/h", events=["job.failed"]
    )
    sent = WebhookDeliveryFactory(endpoint=hook)  # failed for good: it may be redelivered
    their_sent = WebhookDeliveryFactory(endpoint=theirs)
    grid = {"kind": Campaign.Kind.GRID, "name": "Grid"}
    campaign = Campaign.objects.create(project=project, author=cast.bob, **grid)
    paused = Campaign.objects.create(project=project, author=cast.bob, status=Campaign.Status.PAUSED, **grid)
    their_campaign = Campaign.objects.create(project=other_project, author=cast.charlie, **grid)
    template = template_version(project=project, text="A {product}").template
    draft, _ = batches.batch_draft(
        project=project,
        author=cast.bob,
        name="Draft",
        source_name="a.csv",
        template_version=template.latest,
        brand_kit_version=None,
        data=b"product\nmug\n",
        base={},
        key_column="",
        overnight=False,
    )
    thread = {"mainline_model": "gpt-5.5", "image_model": "gpt-image-2"}
    conversation = Conversation.objects.create(project=project, author=cast.bob, root_image=image, **thread)
    their_conversation = Conversation.objects.create(
        project=other_project, author=cast.charlie, root_image=their_image, **thread
    )
    return {
        "mine": {
            "project_id": project.pk,
            "job_id": failed.pk,
            "image_id": image.pk,
            "endpoint_id": hook.pk,
            "delivery_id": sent.pk,
            "campaign_id": campaign.pk,
            "conversation_id": conversation.pk,
        },
        "theirs": {
            "project_id": other_project.pk,
            "job_id": their_image.job_id,
            "image_id": their_image.pk,
            "endpoint_id": theirs.pk,
            "delivery_id": their_sent.pk,
            "campaign_id": their_campaign.pk,
            "conversation_id": their_conversation.pk,
        },
        "reference": ReferenceFactory(project=project, uploaded_by=cast.bob),
        "image": image,
        "queued": queued,
        "paused": paused,
        "template": template,
        "draft": draft,
    }


def call(name: str, kwargs: dict, secret: str | None, world, method: str | None = None):
    method = method or API_ROUTES[name][0]
    if name == "job-cancel" and kwargs["job_id"] == world["mine"]["job_id"]:
        kwargs = kwargs | {"job_id": world["queued"].pk}  # only a job that has not started can be canceled
    if name == "campaign-resume" and kwargs["campaign_id"] == world["mine"]["campaign_id"]:
        kwargs = kwargs | {"campaign_id": world["paused"].pk}  # only a paused campaign can be resumed
    if name == "campaign-confirm" and kwargs["campaign_id"] == world["mine"]["campaign_id"]:
        kwargs = kwargs | {"campaign_id": world["draft"].pk}  # only a draft can be confirmed
    url = reverse(f"api:{name}", kwargs={k: v for k, v in kwargs.items() if k in api_routes()[name]})
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    client = Client()
    if method == "get":
        return client.get(url, headers=headers)
    if method == "delete":
        return client.delete(url, headers=headers)
    headers["Idempotency-Key"] = str(uuid.uuid4())
    if name == "reference-upload":
        from django.core.files.uploadedfile import SimpleUploadedFile

        from tests.factories import picture

        return client.post(url, {"files": [SimpleUploadedFile("a.png", picture())]}, headers=headers)
    body = {"prompt": "A lemon", "quality": "low"}
    if name == "edit-create":
        body |= {"inputs": [f"img:{world['image'].pk}"]}
    if name == "campaign-batch-create":
        body = {"template_id": world["template"].pk, "csv": "product\nmug\n", "confirm": False}
    if name == "campaign-grid-create":
        body = {"prompt": "A lemon", "axes": [{"name": "quality", "values": ["low"]}], "confirm": True}
    if name == "conversation-turns":
        body = {"message": "Brighter"}
    creates = (
        "job-create",
        "edit-create",
        "campaign-batch-create",
        "campaign-grid-create",
        "conversation-turns",
    )
    data = json.dumps(body) if name in creates else "{}"
    return client.post(url, data, content_type="application/json", headers=headers)


ACTORS = ("anonymous", "charlie", "vera", "bob")


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize(("name", "method"), CASES)
def test_each_actor_gets_what_the_route_allows(cast, world, name, method, actor):
    secret = (
        None
        if actor == "anonymous"
        else token_create(user=getattr(cast, actor), name="t", scopes=["read", "generate"]).secret
    )
    response = call(name, world["mine"], secret, world, method)
    needs = API_ROUTES[name][1] if method == API_ROUTES[name][0] else SECOND_METHODS[name][1]
    assert response["Content-Type"].startswith(("application/json", "image/")), response["Content-Type"]
    if actor == "anonymous":
        assert response.status_code == 401
    elif name == "user-spend":
        assert response.status_code == 403  # staff only, with an admin token
    elif needs is None:
        assert response.status_code == 200
    elif actor == "charlie":
        assert response.status_code == 404
    elif (actor, needs) in {("vera", Role.EDITOR), ("vera", Role.OWNER), ("bob", Role.OWNER)}:
        assert response.status_code == 403
    else:
        assert response.status_code in (200, 201), (name, response.content[:200])


@pytest.mark.parametrize(
    "name",
    sorted(
        n
        for n in API_ROUTES
        if {"job_id", "image_id", "endpoint_id", "campaign_id", "conversation_id"} & api_routes()[n]
    ),
)
def test_another_projects_object_through_my_project_is_a_404(cast, world, name):
    # Webhooks are the owner's (alice); jobs and images an editor's (bob).
    owner = API_ROUTES[name][1] == Role.OWNER
    secret = token_create(
        user=cast.alice if owner else cast.bob, name="t", scopes=["read", "generate"]
    ).secret
    kwargs = world["mine"] | {k: v for k, v in world["theirs"].items() if k != "project_id"}
    response = call(name, kwargs, secret, world)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
