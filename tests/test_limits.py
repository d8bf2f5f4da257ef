"""Work that could hold every web thread: decodes and ZIPs take a slot, conversions are made once."""

import threading
import time
from io import BytesIO

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_finished
from django.db import close_old_connections, connection
from django.urls import reverse
from PIL import Image as PILImage

from tests.factories import ImageFactory, picture
from workspace import limits, outputs, uploads
from workspace.models import Reference

pytestmark = pytest.mark.django_db

BUSY = "The workspace is busy right now; try again in a moment."


@pytest.fixture
def one_decode(settings):
    settings.MAX_CONCURRENT_DECODES = 1
    settings.DECODE_WAIT_SECONDS = 0.05


def test_it_answers_busy_when_no_decode_slot_frees_up_and_stores_nothing(client, cast, project, one_decode):
    client.force_login(cast.bob)
    url = reverse("references", args=[project.pk])
    release = limits.DECODES.take()  # another request is decoding
    try:
        response = client.post(url, {"files": SimpleUploadedFile("a.png", picture())})
    finally:
        release()
    assert (response.status_code, response.content.decode()) == (503, BUSY)
    assert response["Retry-After"] == "5"
    assert Reference.objects.count() == 0
    assert client.post(url, {"files": SimpleUploadedFile("a.png", picture())}).status_code == 302


def test_a_mask_and_a_conversion_wait_for_a_decode_slot_too(client, cast, project, one_decode):
    image = ImageFactory(job__project=project, job__author=cast.bob)
    client.force_login(cast.bob)
    release = limits.DECODES.take()
    try:
        convert = client.get(reverse("image_convert", args=[project.pk, image.pk, "webp"]))
        with pytest.raises(limits.Busy):
            uploads.clean_mask(SimpleUploadedFile("m.png", picture()), width=64, height=48)
    finally:
        release()
    assert (convert.status_code, convert.content.decode()) == (503, BUSY)


def test_a_decode_waits_a_moment_for_a_slot_rather_than_failing_at_once(settings):
    settings.MAX_CONCURRENT_DECODES = 1
    settings.DECODE_WAIT_SECONDS = 5
    release = limits.DECODES.take()
    threading.Timer(0.2, release).start()
    started = time.monotonic()
    assert uploads.clean_reference(SimpleUploadedFile("a.png", picture())).width == 64
    assert 0.15 < time.monotonic() - started < 4


def test_no_more_decodes_run_at_once_than_the_setting(settings, monkeypatch):
    settings.MAX_CONCURRENT_DECODES = 2
    settings.DECODE_WAIT_SECONDS = 10
    running, most, lock = [0], [0], threading.Lock()
    real = uploads._decode

    def slow_decode(*args):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        return real(*args)

    monkeypatch.setattr(uploads, "_decode", slow_decode)
    threads = [
        threading.Thread(target=uploads.clean_reference, args=(SimpleUploadedFile(f"{n}.png", picture()),))
        for n in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 2


def test_a_header_bomb_is_refused_without_waiting_for_a_slot(one_decode):
    release = limits.DECODES.take()
    try:
        bomb = SimpleUploadedFile("huge.png", picture(width=16_385, height=1))
        with pytest.raises(uploads.UploadRejected, match="no side may be longer"):
            uploads.clean_reference(bomb)
    finally:
        release()


# --- Conversions --------------------------------------------------------------------------------------


def test_a_conversion_is_made_once_stored_next_to_the_original_then_served(
    client, cast, project, monkeypatch
):
    image = ImageFactory(job__project=project, job__author=cast.bob)
    client.force_login(cast.vera)
    url = reverse("image_convert", args=[project.pk, image.pk, "webp"])
    calls = []
    real = outputs.convert
    monkeypatch.setattr(outputs, "convert", lambda **kw: calls.append(kw) or real(**kw))

    first = b"".join(client.get(url).streaming_content)
    second = client.get(url)
    assert b"".join(second.streaming_content) == first
    assert len(calls) == 1
    stem = image.file.name.rsplit(".", 1)[0]
    cached = f"{stem}.as-{image.sha256[:16]}.webp"
    assert default_storage.exists(cached)
    assert second["Content-Disposition"].startswith("attachment;")
    assert second["X-Content-Type-Options"] == "nosniff"
    with PILImage.open(BytesIO(first)) as converted:
        assert (converted.format, converted.size) == ("WEBP", (image.width, image.height))
    folder = image.file.name.rsplit("/", 1)[0]
    assert not [name for name in default_storage.listdir(folder)[1] if name.endswith(".partial")]

    # The original replaced (another checksum): the old conversion is never served for it.
    replacement = picture(colour=(0, 0, 255))
    default_storage.delete(image.file.name)
    default_storage.save(image.file.name, BytesIO(replacement))
    image.sha256 = "f" * 64
    image.save(update_fields=["sha256"])
    third = b"".join(client.get(url).streaming_content)
    assert len(calls) == 2
    with PILImage.open(BytesIO(third)) as converted:
        assert converted.convert("RGB").getpixel((1, 1))[2] > 200


def test_a_conversion_of_a_missing_original_is_not_found(client, cast, project):
    image = ImageFactory(job__project=project, job__author=cast.bob)
    default_storage.delete(image.file.name)
    client.force_login(cast.vera)
    assert client.get(reverse("image_convert", args=[project.pk, image.pk, "png"])).status_code == 404


# --- ZIP downloads -------------------------------------------------------------------------------------


def download(client, project, images):
    return client.post(
        reverse("bulk", args=[project.pk]), {"action": "download", "ids": [i.pk for i in images]}
    )


def close(response) -> None:
    """What the server does when a response ends, as the test client does it: the test's connection stays."""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def test_zip_downloads_beyond_the_limit_are_busy_until_one_ends(client, cast, project, settings):
    settings.MAX_CONCURRENT_ZIPS = 1
    settings.MAX_CONCURRENT_DECODES = 1
    settings.DECODE_WAIT_SECONDS = 0.05
    images = [ImageFactory(job__project=project, job__author=cast.bob) for _ in range(2)]
    client.force_login(cast.bob)

    first = download(client, project, images)
    assert first.status_code == 200
    stream = iter(first.streaming_content)
    assert next(stream).startswith(b"PK")  # downloading, not finished

    second = download(client, project, images)
    assert (second.status_code, second.content.decode()) == (503, BUSY)
    # The download holds no decode slot: uploads and conversions go on beside it.
    upload = client.post(
        reverse("references", args=[project.pk]), {"files": SimpleUploadedFile("a.png", picture())}
    )
    assert upload.status_code == 302

    assert b"".join(stream)  # the first download ends; the server closes its response
    third = download(client, project, images)
    assert third.status_code == 200
    assert b"".join(third.streaming_content).startswith(b"PK")


def test_a_zip_never_read_gives_its_slot_back_when_closed(client, cast, project, settings):
    settings.MAX_CONCURRENT_ZIPS = 1
    image = ImageFactory(job__project=project, job__author=cast.bob)
    client.force_login(cast.bob)
    close(download(client, project, [image]))
    assert download(client, project, [image]).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_zip_streams_without_holding_a_database_connection(client, cast, project):
    images = [ImageFactory(job__project=project, job__author=cast.bob) for _ in range(3)]
    client.force_login(cast.bob)
    response = download(client, project, images)
    assert response.status_code == 200
    assert connection.connection is None  # given back before the first byte
    body = b"".join(response.streaming_content)
    assert connection.connection is None  # and no query opened one while streaming
    assert body.startswith(b"PK")
