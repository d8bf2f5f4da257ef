"""Shared cast and machinery: alice owns, bob edits, vera views, charlie is a stranger, sam is staff.

The image service is always the project's stand-in over real HTTP, through the real SDK.
"""

import pytest
from django.conf import settings

from standin import StandinServer
from tests.factories import JOB_PARAMS, ProjectFactory, UserFactory
from tests.helpers import Processes, purge_queue
from workspace import imageapi, imagemodels, spend
from workspace.models import Role

# Hashing passwords properly costs ~0.3 s a user; tests make dozens of users.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def standin():
    server = StandinServer(port=0).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def image_service(standin, settings, tmp_path):
    """Point the SDK at the stand-in, make retries fast, keep media in a temporary folder."""
    settings.OPENAI_BASE_URL = standin.base_url
    settings.OPENAI_API_KEY = "sk-test-not-a-real-key"
    settings.OPENAI_CALL_TIMEOUT = 10.0
    settings.JOB_RETRY_BASE_SECONDS = 0.05
    settings.JOB_RETRY_MAX_SECONDS = 0.2
    settings.MEDIA_ROOT = str(tmp_path / "media")
    standin.clear_faults()
    standin.latency = 0.0
    standin.requests.clear()
    standin.batches.reset()  # files, batches and their knobs
    standin.use_models(None)
    imageapi.reset_client()
    imagemodels.invalidate()  # rows a previous test added (and rolled back) are not read from the cache
    yield standin
    standin.clear_faults()
    standin.use_models(None)
    imagemodels.invalidate()
    imageapi.reset_client()


@pytest.fixture
def make_user():
    """make_user("maya", is_staff=True): a user with the cast's password (factories.PASSWORD)."""

    def make(username: str, **extra):
        return UserFactory(username=username, **extra)

    return make


@pytest.fixture
def cast(make_user):
    class Cast:
        alice = make_user("alice")
        bob = make_user("bob")
        vera = make_user("vera")
        charlie = make_user("charlie")
        sam = make_user("sam", is_staff=True)

    return Cast


@pytest.fixture
def project(cast):
    return ProjectFactory(
        name="Spring campaign",
        created_by=cast.alice,
        members={cast.bob: Role.EDITOR, cast.vera: Role.VIEWER},
    )


@pytest.fixture
def other_project(cast):
    return ProjectFactory(name="Charlie's team", created_by=cast.charlie)


GENERATION_POST = {
    "prompt": "A lemon on a blue tiled table, morning light",
    "model": "gpt-image-2",
    "size": "square",
    "quality": "low",
    "output_format": "png",
    "output_compression": "100",
    "background": "auto",
    "moderation": "auto",
    "complexity": "",
    "n": "1",
}


@pytest.fixture
def generation_post():
    return dict(GENERATION_POST)


def job_params(**overrides) -> dict:
    """The request fields of a plain square job (the same defaults JobFactory uses), with overrides."""
    return JOB_PARAMS | overrides


@pytest.fixture
def media_root():
    from pathlib import Path

    return Path(settings.MEDIA_ROOT)


def _seed_prices() -> None:
    import importlib

    from django.apps import apps

    for migration in (
        "0003_seed_prices",
        "0009_spend_controls",
        "0018_seed_mainline_price",
        "0021_seed_model_registry",
        "0022_seed_svg_author_price",
    ):
        importlib.import_module(f"workspace.migrations.{migration}").seed(apps, None)


@pytest.fixture
def seeded_prices(transactional_db):
    """Transactional tests flush every table, the migration's seeded prices included; put them back."""
    _seed_prices()


@pytest.fixture(autouse=True)
def prices_outlive_flushes(request, django_db_blocker):
    """Every test that uses the database starts with the migrations' prices.

    A transactional test ends by flushing every table, seeded prices included, and a model without a
    price cannot be chosen: without this, whichever test ran after one would find every model refused.
    Put back outside the test's own transaction, so they stay until the next flush.
    """
    uses_db = request.node.get_closest_marker("django_db") is not None or {
        "db",
        "transactional_db",
    } & set(request.fixturenames)
    if uses_db:
        from workspace.models import ImageModelSpec, Price

        request.getfixturevalue("django_db_setup")
        with django_db_blocker.unblock():
            if not Price.objects.exists() or not ImageModelSpec.objects.exists():
                _seed_prices()  # the model registry's rows too (get_or_create: nothing twice)
                imagemodels.invalidate()
    # A test's own prices were rolled back or flushed without a signal: not read from the cache.
    spend.prices_invalidate()
    yield
    spend.prices_invalidate()


@pytest.fixture
def processes(tmp_path, standin):
    """Worker and beat subprocesses for a test, stopped after it; the queue starts and ends empty."""
    purge_queue()
    (tmp_path / "var").mkdir()
    procs = Processes(tmp_path, standin)
    yield procs
    procs.stop()
    purge_queue()
