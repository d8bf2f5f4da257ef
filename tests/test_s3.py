"""Media on an S3-compatible bucket: every stored file goes to the bucket and nothing to local disk.

The bucket is real HTTP: moto's S3 server, started once for the session on a free port. Files reach
members by a redirect to a short-lived signed URL, which these tests fetch from the server.
"""

import hashlib
import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from moto.server import ThreadedMotoServer
from storages.backends.s3 import S3Storage

from tests.conftest import GENERATION_POST
from tests.helpers import ROOT, clean_env, create_job, run
from tests.test_edits import edit_params, jpeg, mask_png, png, upload
from workspace import jobs, library, worker
from workspace.models import Job

pytestmark = pytest.mark.django_db

ACCESS = {"AWS_ACCESS_KEY_ID": "atelier-test", "AWS_SECRET_ACCESS_KEY": "atelier-test-secret"}
REGION = "us-east-1"


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server over real HTTP; if it cannot start, every test using it fails."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class Bucket:
    def __init__(self, endpoint: str, name: str) -> None:
        self.endpoint = endpoint
        self.name = name
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=ACCESS["AWS_SECRET_ACCESS_KEY"],
        )
        self.client.create_bucket(Bucket=name)

    def names(self) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return {item["Key"] for page in pages for item in page.get("Contents", ())}

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def env(self) -> dict[str, str]:
        """The variables a process on another host would be given."""
        return ACCESS | {
            "AWS_STORAGE_BUCKET_NAME": self.name,
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_S3_REGION_NAME": REGION,
            "AWS_S3_ADDRESSING_STYLE": "path",
        }


@pytest.fixture
def bucket(s3_server, settings) -> Bucket:
    """A fresh bucket, and this process's settings as config/settings.py makes them from bucket.env()."""
    bucket = Bucket(s3_server, f"atelier-{uuid.uuid4().hex[:12]}")
    settings.AWS_STORAGE_BUCKET_NAME = bucket.name
    settings.AWS_S3_ENDPOINT_URL = s3_server
    settings.AWS_ACCESS_KEY_ID = ACCESS["AWS_ACCESS_KEY_ID"]
    settings.AWS_SECRET_ACCESS_KEY = ACCESS["AWS_SECRET_ACCESS_KEY"]
    settings.AWS_S3_REGION_NAME = REGION
    settings.AWS_S3_ADDRESSING_STYLE = "path"
    settings.AWS_S3_SIGNATURE_VERSION = "s3v4"
    settings.AWS_DEFAULT_ACL = None
    settings.AWS_QUERYSTRING_AUTH = True
    settings.AWS_QUERYSTRING_EXPIRE = 300
    settings.AWS_S3_FILE_OVERWRITE = True
    settings.MEDIA_REDIRECT = True
    # Last: changing STORAGES makes default_storage build a new backend from the settings above.
    settings.STORAGES = settings.STORAGES | {"default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    return bucket


def empty(folder: Path) -> bool:
    return not folder.exists() or not any(folder.rglob("*"))


def fetch(url: str):
    """GET a signed URL from the bucket: (status, headers, body)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


# --- Storing -----------------------------------------------------------------------------------------


def test_a_generation_stores_original_thumbnail_and_preview_in_the_bucket_only(
    project, cast, bucket, media_root, monkeypatch
):
    in_bucket_when_saved: dict[str, bool] = {}
    save = S3Storage.save

    def recording_save(storage, name, content, **kwargs):
        stored = save(storage, name, content, **kwargs)
        in_bucket_when_saved[stored] = stored in bucket.names()
        return stored

    monkeypatch.setattr(S3Storage, "save", recording_save)
    job = run(create_job(project=project, author=cast.bob))
    assert job.status == Job.Status.SUCCEEDED, job.error_message
    image = job.images.get()
    prefix = f"projects/{project.pk}/jobs/{job.pk}/a1-"
    received = f"projects/{project.pk}/jobs/{job.pk}/received-a1-0.png"
    assert in_bucket_when_saved == {
        f"{prefix}preview-0.png": True,
        received: True,  # the answer as paid for, until it is stored (see worker._keep_received)
        f"{prefix}0.png": True,
        f"{prefix}0.thumb.webp": True,
    }
    # The preview was shown while the final image was drawn, then removed from the bucket; the raw
    # answer too, once stored.
    assert bucket.names() == {image.file.name, image.thumbnail.name}
    assert image.file.name == f"{prefix}0.png"
    assert hashlib.sha256(bucket.read(image.file.name)).hexdigest() == image.sha256
    assert bucket.read(image.thumbnail.name)[8:12] == b"WEBP"
    assert empty(media_root)


def test_an_edit_reads_its_reference_and_mask_back_from_the_bucket(
    project, cast, bucket, standin, media_root
):
    refs, rejected = library.references_upload(
        project=project,
        user=cast.bob,
        files=[upload("product.png", png()), upload("logo.jpg", jpeg(), "image/jpeg")],
    )
    assert rejected == []
    job = jobs.edit_create(
        project=project,
        author=cast.bob,
        prompt="a red balloon here",
        params=edit_params(),
        inputs=[refs[0], refs[1]],
        mask=mask_png(),
    )
    assert job.mask.name == f"projects/{project.pk}/jobs/{job.pk}/mask.png"
    job = run(job)
    assert job.status == Job.Status.SUCCEEDED, job.error_message

    sent = standin.requests[-1]
    inputs = [data for field, _, _, data in sent.files if field.startswith("image")]
    assert inputs == [bucket.read(refs[0].file.name), bucket.read(refs[1].file.name)]
    assert [data for field, _, _, data in sent.files if field == "mask"] == [bucket.read(job.mask.name)]
    image = job.images.get()
    assert {image.file.name, image.composite.name, image.composite_thumbnail.name} <= bucket.names()
    assert {refs[0].file.name, refs[0].thumbnail.name, refs[1].file.name, job.mask.name} <= bucket.names()
    assert empty(media_root)


def test_the_sweep_deletes_a_killed_attempts_files_from_the_bucket(project, cast, bucket, media_root):
    job = create_job(project=project, author=cast.bob)
    claimed = Job.objects.claim(job.pk, worker="test")
    folder = f"projects/{project.pk}/jobs/{job.pk}"
    # What the dead attempt wrote, and a file of the job that is not the attempt's.
    leftovers = [f"{folder}/a{claimed.attempts}-0.png", f"{folder}/a{claimed.attempts}-preview-0.png"]
    for name in [*leftovers, f"{folder}/mask.png"]:
        default_storage.save(name, io.BytesIO(b"half"))
    assert set(leftovers) <= bucket.names()
    Job.objects.filter(pk=job.pk).update(lease_expires_at=claimed.lease_expires_at.replace(year=2000))

    assert worker.jobs_sweep()["requeued"] == 1
    assert bucket.names() == {f"{folder}/mask.png"}
    assert empty(media_root)


# --- Serving -------------------------------------------------------------------------------------------


def test_members_are_redirected_to_a_short_lived_signed_url_and_strangers_get_404(
    client, project, cast, bucket
):
    image = run(create_job(project=project, author=cast.bob)).images.get()
    original = bucket.read(image.file.name)

    client.force_login(cast.charlie)
    for route in ("image_file", "image_thumb", "image_download"):
        refused = client.get(reverse(route, args=[project.pk, image.pk]))
        assert refused.status_code == 404
        assert "Location" not in refused

    client.force_login(cast.vera)  # a viewer
    response = client.get(reverse("image_file", args=[project.pk, image.pk]))
    assert response.status_code == 302
    url = response["Location"]
    assert url.startswith(f"{bucket.endpoint}/{bucket.name}/{image.file.name}?")
    query = parse_qs(urlparse(url).query)
    assert query["X-Amz-Expires"] == ["300"]
    assert "X-Amz-Signature" in query
    status, headers, body = fetch(url)
    assert (status, headers["Content-Type"], body) == (200, "image/png", original)

    thumb = client.get(reverse("image_thumb", args=[project.pk, image.pk]))
    status, headers, body = fetch(thumb["Location"])
    assert (status, headers["Content-Type"]) == (200, "image/webp")
    assert body == bucket.read(image.thumbnail.name)

    download = client.get(reverse("image_download", args=[project.pk, image.pk]))
    status, headers, body = fetch(download["Location"])
    assert status == 200 and body == original
    assert headers["Content-Disposition"] == f'attachment; filename="{image.download_name}"'

    # Stored without an ACL of its own: private, like the bucket (moto does not enforce it; S3 does).
    grants = bucket.client.get_object_acl(Bucket=bucket.name, Key=image.file.name)["Grants"]
    assert [grant["Grantee"].get("URI") for grant in grants if grant["Grantee"].get("URI")] == []


def test_without_redirects_the_web_streams_from_the_bucket_with_its_safety_headers(
    client, project, cast, bucket, settings
):
    settings.MEDIA_REDIRECT = False
    image = run(create_job(project=project, author=cast.bob)).images.get()
    client.force_login(cast.vera)
    response = client.get(reverse("image_file", args=[project.pk, image.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == bucket.read(image.file.name)
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"


def test_the_zip_export_reads_originals_from_the_bucket(client, project, cast, bucket, settings):
    # Files past AWS_S3_MAX_MEMORY_SIZE are read through a temporary file (settings.py: 10 MB): here all.
    settings.AWS_S3_MAX_MEMORY_SIZE = 1024
    settings.STORAGES = settings.STORAGES | {}  # a new backend, built with that size
    assert default_storage.max_memory_size == 1024
    images = [run(create_job(project=project, author=cast.bob)).images.get() for _ in range(2)]
    client.force_login(cast.vera)
    response = client.post(
        reverse("bulk", args=[project.pk]), {"action": "download", "ids": [image.pk for image in images]}
    )
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    members = [info for info in archive.infolist() if info.filename != "metadata.json"]
    assert sorted(archive.read(info) for info in members) == sorted(bucket.read(i.file.name) for i in images)
    assert json.loads(archive.read("metadata.json"))["missing"] == []


# --- Configuration and several hosts -----------------------------------------------------------------


def test_a_bucket_name_puts_media_on_s3_with_private_short_lived_urls(tmp_path):
    script = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "from django.core.files.storage import default_storage as d; print(json.dumps([d.__class__.__name__]"
        " + [getattr(d, name, None) for name in ('bucket_name', 'endpoint_url', 'region_name', "
        "'querystring_auth', 'querystring_expire', 'default_acl', 'file_overwrite')] + [s.MEDIA_REDIRECT]))"
    )
    base = clean_env(DEBUG="true", VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    on_s3 = (
        base
        | ACCESS
        | {
            "AWS_STORAGE_BUCKET_NAME": "media",
            "AWS_S3_ENDPOINT_URL": "http://minio:9000",
            "AWS_S3_REGION_NAME": "eu-west-1",
        }
    )
    answers = []
    for env in (on_s3, base):
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        answers.append(result.stdout.strip())
    assert json.loads(answers[0]) == [
        "S3Storage",
        "media",
        "http://minio:9000",
        "eu-west-1",
        True,
        300,
        None,
        True,
        True,
    ]
    assert json.loads(answers[1]) == ["FileSystemStorage", *[None] * 7, False]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_web_and_worker_with_different_empty_media_folders_share_the_bucket(
    client, project, cast, bucket, standin, settings, tmp_path
):
    from tests.helpers import Processes
    from tests.helpers import purge_queue as _purge

    web_media, worker_media = tmp_path / "web-media", tmp_path / "worker-media"
    web_media.mkdir()
    worker_media.mkdir()
    settings.MEDIA_ROOT = str(web_media)
    _purge()
    (tmp_path / "var").mkdir()
    processes = Processes(tmp_path, standin)
    processes.env |= bucket.env() | {"MEDIA_ROOT": str(worker_media)}
    try:
        processes.worker("elsewhere")
        client.force_login(cast.bob)
        response = client.post(
            reverse("job_create", args=[project.pk]), GENERATION_POST, HTTP_HX_REQUEST="true"
        )
        assert response.status_code == 200
        job = Job.objects.get()
        deadline = time.monotonic() + 60
        while Job.objects.values_list("status", flat=True).get(pk=job.pk) != Job.Status.SUCCEEDED:
            assert time.monotonic() < deadline, "the worker did not finish the job in 60 s"
            time.sleep(0.2)
    finally:
        processes.stop()
        _purge()

    image = job.images.get()
    assert image.file.name in bucket.names()
    response = client.get(reverse("image_file", args=[project.pk, image.pk]))
    assert response.status_code == 302
    status, headers, body = fetch(response["Location"])
    assert (status, headers["Content-Type"]) == (200, "image/png")
    assert hashlib.sha256(body).hexdigest() == image.sha256
    assert list(web_media.iterdir()) == []
    assert list(worker_media.iterdir()) == []
