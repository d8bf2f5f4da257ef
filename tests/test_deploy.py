"""The Docker stack, checked as far as it can be without Docker: the compose file, the Dockerfile's
targets, the build context, and the web healthcheck run for real against gunicorn."""

import ast
import re
import socket
import subprocess
import sys
import time
from importlib.util import find_spec

import pytest
import yaml
from django.core.management import get_commands

from tests.helpers import ROOT, clean_env
from tests.test_settings import REAL_SECRET, _example_env

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]


# ------------------------------------------------------------------------------------------------
# /healthz is answered before host validation


@pytest.mark.django_db
def test_healthz_answers_a_probe_by_address_that_allowed_hosts_refuses_elsewhere(client, settings):
    settings.ALLOWED_HOSTS = ["atelier.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/healthz", HTTP_HOST="127.0.0.1:8000")
    assert (response.status_code, response.content) == (200, b"ok")
    assert client.get("/accounts/login/", HTTP_HOST="127.0.0.1:8000").status_code == 400
    assert client.get("/healthz/", HTTP_HOST="127.0.0.1:8000").status_code == 400  # only the one path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_compose_web_healthcheck_passes_against_gunicorn_with_the_documented_settings(tmp_path):
    """The healthcheck's own command, against the web command's gunicorn, with .env.example's values."""
    port = _free_port()
    env = clean_env(
        **_example_env()
        | {"SECRET_KEY": REAL_SECRET, "OPENAI_API_KEY": "sk-live-key"}
        | SERVICES["web"]["environment"]
        | {"MEDIA_ROOT": str(tmp_path / "media"), "STATIC_ROOT": str(tmp_path / "static")},
        VAR_DIR=str(tmp_path),
    )
    web_command = SERVICES["web"]["command"]
    gunicorn = web_command[web_command.index("gunicorn") :].rstrip('"').split()
    assert gunicorn[gunicorn.index("--bind") + 1] == "0.0.0.0:8000"
    gunicorn[gunicorn.index("--bind") + 1] = f"127.0.0.1:{port}"
    gunicorn[gunicorn.index("--workers") + 1] = "1"
    server = subprocess.Popen(
        [sys.executable, "-m", *gunicorn], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        check = SERVICES["web"]["healthcheck"]["test"]
        assert check[:3] == ["CMD", "python", "-c"]
        code = check[3]
        assert "http://127.0.0.1:8000/healthz" in code
        code = code.replace(":8000/", f":{port}/")
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=10
            )
            if result.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
                break
            time.sleep(0.3)
        assert result.returncode == 0, result.stderr
        # The same server refuses a page asked for by that address: host validation is still on.
        page = subprocess.run(
            [sys.executable, "-c", code.replace("/healthz", "/accounts/login/")],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert page.returncode != 0 and "400" in page.stderr, page.stderr
    finally:
        server.terminate()
        output = server.communicate(timeout=15)[0].decode()
    assert "Booting worker" in output, output


# ------------------------------------------------------------------------------------------------
# docker-compose.yml


def test_every_variable_compose_interpolates_is_in_the_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text)) | set(
        re.findall(r"(?<!\$)\$([A-Z_][A-Z0-9_]*)", text)
    )
    assert used <= set(_example_env()), used - set(_example_env())


def test_profiles_are_valid_and_only_the_demo_stand_in_uses_one():
    profiled = {name: service["profiles"] for name, service in SERVICES.items() if "profiles" in service}
    assert profiled == {"standin": ["demo"]}
    for profiles in profiled.values():
        assert all(re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", profile) for profile in profiles)
    # A service that always runs must not wait on one that runs only in a profile.
    for name, service in SERVICES.items():
        if "profiles" not in service:
            assert not set(service.get("depends_on", {})) & set(profiled), name


def test_build_targets_exist_and_the_stand_in_is_only_in_the_demo_image():
    stages = re.findall(r"^FROM (\S+) AS (\S+)$", DOCKERFILE, flags=re.MULTILINE)
    names = [name for _, name in stages]
    assert names[-1] == "production"  # a plain `docker build .` builds the last stage
    for name, service in SERVICES.items():
        build = service.get("build")
        if build:
            assert build["target"] in names, name
    assert SERVICES["web"]["build"]["target"] == "production"
    assert SERVICES["standin"]["build"]["target"] == "demo"
    # Only the demo stage copies the stand-in.
    demo = DOCKERFILE.split("AS demo", 1)[1].split("\nFROM ", 1)[0]
    assert "COPY standin" in demo
    assert DOCKERFILE.count("COPY standin") == 1
    # Demo mode's web and workers point at the demo service, on the port it listens on.
    assert SERVICES["web"]["environment"]["STANDIN_URL"] == "http://standin:8765/v1"
    assert SERVICES["standin"]["command"][SERVICES["standin"]["command"].index("--port") + 1] == "8765"


def test_the_build_context_keeps_out_secrets_and_local_data_but_not_what_the_dockerfile_copies():
    for kept_out in (".env", "var/", ".git", "tests/", "devtools/", ".venv"):
        assert kept_out in DOCKERIGNORE, kept_out
    assert "!.env.example" in DOCKERIGNORE  # the one .env.* file that is safe to send
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", DOCKERFILE, flags=re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), path
            assert path not in DOCKERIGNORE and f"{path}/" not in DOCKERIGNORE, path


def _commands(service: dict) -> list[list[str]]:
    command = service["command"]
    if isinstance(command, list):
        return [command]
    assert command.startswith('sh -c "') and command.endswith('"')
    return [part.split() for part in command[len('sh -c "') : -1].split("&&")]


def test_every_command_compose_runs_exists():
    management = get_commands()
    for name, service in SERVICES.items():
        # Others' images (redis, minio, mc) run their own programs; ours must name real entry points.
        if "command" not in service or not service.get("image", "").startswith("atelier"):
            continue
        for argv in _commands(service):
            if argv[:2] == ["python", "manage.py"]:
                assert argv[2] in management, (name, argv)
            elif argv[:2] == ["python", "-m"]:
                assert find_spec(argv[2]) is not None, (name, argv)
            elif argv[0] == "gunicorn":
                module, _, attribute = argv[1].partition(":")
                assert find_spec(module) is not None, (name, argv)
                tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
                defined = {
                    target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
                }
                assert (attribute or "application") in defined, (name, argv)
            elif argv[0] == "celery":
                assert argv[1:3] == ["-A", "config"] and find_spec("config.celery") is not None
                assert argv[3] in ("worker", "beat"), (name, argv)
            else:
                pytest.fail(f"{name}: a command this test does not know how to check: {argv}")
