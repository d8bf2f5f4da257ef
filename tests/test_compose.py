"""The compose files, checked without Docker: valid YAML, every variable defined, workers scalable."""

import re

import yaml

from tests.helpers import ROOT

COMPOSE_FILES = ("docker-compose.yml", "docker-compose.local-media.yml")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error} or $NAME; "$$" is a literal dollar for the shell.
VARIABLE = re.compile(r"(?<!\$)\$(?:\{(?P<braced>\w+)(?P<rest>[^}]*)\}|(?P<bare>\w+))")


def _example_names() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {line.partition("=")[0] for line in lines if line.strip() and not line.startswith("#")}


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_every_compose_variable_has_a_default_or_is_in_the_example_env():
    defined = _example_names()
    for name in COMPOSE_FILES:
        text = (ROOT / name).read_text().replace("$$", "")
        for match in VARIABLE.finditer(text):
            variable = match["braced"] or match["bare"]
            has_default = (match["rest"] or "").startswith((":-", "-"))
            assert has_default or variable in defined, (
                f"{name}: ${variable} is neither defaulted nor in .env.example"
            )


def test_media_is_in_the_bucket_and_workers_scale_without_a_shared_volume():
    compose = _load("docker-compose.yml")
    services = compose["services"]
    for name in ("web", "worker", "beat"):
        assert "volumes" not in services[name], f"{name} mounts a volume"
        assert services[name]["depends_on"]["bucket"] == {"condition": "service_completed_successfully"}
    # --scale worker=N needs no fixed name, published port or shared volume.
    assert not {"container_name", "ports", "volumes"} & set(services["worker"])
    assert "media" not in (compose.get("volumes") or {})
    assert services["minio"]["image"] == "minio/minio"
    assert "miniodata:/data" in services["minio"]["volumes"]
    assert services["bucket"]["image"] == "minio/mc"
    assert "mc mb --ignore-existing" in services["bucket"]["command"][0]
    lines = (ROOT / ".env.example").read_text().splitlines()
    example = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    assert example["AWS_STORAGE_BUCKET_NAME"] and example["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert example["AWS_QUERYSTRING_EXPIRE"] == "300"


def test_local_media_mounts_one_volume_on_every_app_service():
    override = _load("docker-compose.local-media.yml")
    for name in ("web", "worker", "beat"):
        assert override["services"][name]["volumes"] == ["media:/data/media"]
    assert "media" in override["volumes"]
