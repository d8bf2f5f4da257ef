"""Configuration comes from the environment and fails loudly at start-up when it is unsafe."""

import json
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import envbool, envint
from tests.helpers import ROOT, clean_env


def _example_env() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_it_refuses_to_start_without_a_real_secret_key_when_debug_is_off(tmp_path):
    for secret in ("", "django-insecure-abc", "short"):
        result = _manage("check", env=clean_env(DEBUG="false", SECRET_KEY=secret, VAR_DIR=str(tmp_path)))
        assert result.returncode != 0
        assert "SECRET_KEY must be set to a long random value when DEBUG is off" in result.stderr


REAL_SECRET = "Jx0V3p5nq2u8mBvKcW7sT1aYhL4eZ9dR6oFgPiN-kQ_wXyEtUzSlAb"  # a token_urlsafe(40) stand-in


def test_it_refuses_the_example_secret_and_other_placeholders_in_any_mode(tmp_path):
    placeholder = _example_env()["SECRET_KEY"]
    for secret in (
        placeholder,
        "please-CHANGE-ME-" + "x" * 50,
        "replace-this-with-a-random-value-" + "y" * 30,
    ):
        for debug in ("false", "true"):
            env = clean_env(DEBUG=debug, SECRET_KEY=secret, OPENAI_API_KEY="sk-live", VAR_DIR=str(tmp_path))
            result = _manage("check", env=env)
            assert result.returncode != 0, (secret, debug)
            assert "SECRET_KEY is still a placeholder" in result.stderr


def _deploy_check(tmp_path, **overrides: str) -> subprocess.CompletedProcess:
    example = _example_env() | {
        "MEDIA_ROOT": str(tmp_path / "media"),
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    env = clean_env(**(example | overrides), VAR_DIR=str(tmp_path))
    return _manage("check", "--deploy", "--fail-level", "WARNING", env=env)


def test_the_production_example_passes_the_deploy_checks_once_its_secrets_are_filled_in(tmp_path):
    as_shipped = _deploy_check(tmp_path)
    assert as_shipped.returncode != 0
    assert "SECRET_KEY is still a placeholder" in as_shipped.stderr

    result = _deploy_check(tmp_path, SECRET_KEY=REAL_SECRET, OPENAI_API_KEY="sk-live-key")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_debug_off_without_an_openai_key_stops_the_start_unless_demo_mode_is_asked_for(tmp_path):
    no_key = _deploy_check(tmp_path, SECRET_KEY=REAL_SECRET)
    assert no_key.returncode != 0
    assert "OPENAI_API_KEY is not set. Set it, or set DEMO_MODE=true" in no_key.stderr

    demo = _deploy_check(tmp_path, SECRET_KEY=REAL_SECRET, DEMO_MODE="true")
    assert demo.returncode == 0, demo.stdout + demo.stderr


def _settings_json(env: dict[str, str], *names: str) -> list:
    script = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        f"print(json.dumps([getattr(s, name) for name in {list(names)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_demo_mode_finds_the_stand_in_where_compose_runs_it(tmp_path):
    env = clean_env(
        DEBUG="false",
        SECRET_KEY=REAL_SECRET,
        DEMO_MODE="true",
        STANDIN_URL="http://standin:8765/v1",
        VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    assert _settings_json(env, "DEMO_MODE", "OPENAI_BASE_URL") == [True, "http://standin:8765/v1"]
    # A key and DEBUG on: real images, not demo mode.
    env = clean_env(
        DEBUG="true",
        OPENAI_API_KEY="sk-live",
        VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    assert _settings_json(env, "DEMO_MODE", "OPENAI_BASE_URL") == [False, ""]


def test_a_laptop_needs_no_configuration_at_all(tmp_path):
    """No env at all beyond DEBUG: SQLite under var/, the file-system broker, demo mode."""
    script = (
        "import django, json; django.setup(); from django.conf import settings as s; print(json.dumps(["
        "s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.DEMO_MODE, s.OPENAI_BASE_URL, s.PORT]))"
    )
    env = clean_env(DEBUG="true", VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == '["django_prometheus.db.backends.sqlite3", "filesystem://", true, '
        '"http://127.0.0.1:8765/v1", 8000]'
    )
    assert (tmp_path / "secret_key").exists()


def test_services_come_from_their_urls(tmp_path):
    script = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "d = s.DATABASES['default']; print(json.dumps([d['ENGINE'], d['NAME'], d['HOST'], "
        "s.CELERY_BROKER_URL, s.DEMO_MODE, s.OPENAI_BASE_URL, s.PORT]))"
    )
    env = clean_env(
        DEBUG="true",
        VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL="postgres://u:p@db.internal:5432/atelier",
        REDIS_URL="redis://cache.internal:6379/2",
        OPENAI_API_KEY="sk-live",
        OPENAI_BASE_URL="https://gateway.internal/v1",
        PORT="9000",
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        '["django_prometheus.db.backends.postgresql", "atelier", "db.internal", '
        '"redis://cache.internal:6379/2", false, '
        '"https://gateway.internal/v1", 9000]'
    )


def test_env_readers_reject_junk(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG must be true or false"):
        envbool("FLAG", False)
    monkeypatch.setenv("COUNT", "lots")
    with pytest.raises(ImproperlyConfigured, match="COUNT must be a whole number"):
        envint("COUNT", 1)
    monkeypatch.setenv("COUNT", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        envint("COUNT", 1, minimum=1)
    monkeypatch.setenv("FLAG", "Yes")
    assert envbool("FLAG", False) is True
