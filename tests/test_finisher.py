"""A worker's call threads hand answered images to the finisher, and streams are read by our own reader."""

import base64
import binascii
import threading

import httpx2
import openai
import pytest

from tests.helpers import create_job
from workspace import imageapi, worker
from workspace.models import Job, LedgerEntry


@pytest.mark.django_db(transaction=True)
def test_the_call_returns_once_charged_and_the_images_land_on_the_finisher(
    project, cast, seeded_prices, monkeypatch
):
    let_it_store = threading.Event()
    real_store = worker._store_and_finish

    def store_when_allowed(job, answer):
        let_it_store.wait(timeout=30)
        real_store(job, answer)

    monkeypatch.setattr(worker, "_store_and_finish", store_when_allowed)
    finisher = worker.Finisher(threads=1, backlog=4)
    job = create_job(project=project, author=cast.bob)

    worker.job_run(job_id=job.pk, finisher=finisher)

    # The slot is free: the call is recorded and charged, the images are not stored yet, and the lease
    # is still renewed for the job while it waits.
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING
    assert LedgerEntry.objects.filter(job=job).count() == 1
    assert not job.images.exists()
    token = job.claim_token
    assert token is not None
    assert worker.lease_keeper.holds(token)

    let_it_store.set()
    finisher.drain()
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.images.count() == 1
    assert not worker.lease_keeper.holds(token)
    assert LedgerEntry.objects.filter(job=job).count() == 1  # storing charges nothing more


def test_a_full_backlog_holds_the_next_caller_until_there_is_room():
    finisher = worker.Finisher(threads=1, backlog=1)
    first_may_end = threading.Event()
    done: list[str] = []
    finisher.submit(lambda: (first_may_end.wait(timeout=30), done.append("first")))

    second = threading.Thread(target=finisher.submit, args=(lambda: done.append("second"),))
    second.start()
    second.join(timeout=0.3)
    assert second.is_alive()  # still waiting for room

    first_may_end.set()
    second.join(timeout=30)
    assert not second.is_alive()
    finisher.drain()
    assert done == ["first", "second"]


def test_a_failure_while_storing_is_logged_and_frees_its_room(caplog):
    finisher = worker.Finisher(threads=1, backlog=1)

    def broken() -> None:
        raise OSError("disk full")

    finisher.submit(broken)
    ran = threading.Event()
    finisher.submit(ran.set)  # would wait forever if the failure had kept its room
    finisher.drain()
    assert ran.is_set()
    assert "storing a job's images failed" in caplog.text


class FakeStream:
    """Just enough of an httpx response: chunks as the network might cut them, or an error mid-way."""

    def __init__(self, chunks, error: Exception | None = None) -> None:
        self.chunks, self.error = chunks, error
        self.request = httpx2.Request("POST", "http://127.0.0.1/v1/images/generations")

    def iter_bytes(self):
        yield from self.chunks
        if self.error is not None:
            raise self.error


def events(chunks, error=None):
    return list(imageapi._sse_events(FakeStream(chunks, error)))


def test_events_are_read_however_the_bytes_are_cut():
    body = (
        b'event: image_generation.partial_image\ndata: {"type": "a", "n": 1}\n\n'
        b'event: image_generation.completed\r\ndata:{"type": "b",\r\ndata: "n": 2}\r\n\r\n'
        b"data: [DONE]\n\n"
    )
    expected = [{"type": "a", "n": 1}, {"type": "b", "n": 2}]
    assert events([body]) == expected
    for size in (1, 2, 3, 7, 64):
        assert events([body[i : i + size] for i in range(0, len(body), size)]) == expected, size
    # An event cut off by the end of the stream is not an event.
    assert events([b'data: {"type": "a"}\n\ndata: {"type": "b"}']) == [{"type": "a"}]


def test_image_base64_is_decoded_strictly():
    data = bytes(range(256)) * 4096
    assert imageapi._b64decode(base64.b64encode(data).decode()) == data
    for broken in ("YWJj\n", "YW Jj", "ab$=", "abc", "Y"):  # a newline, a space, a stray sign, short padding
        with pytest.raises(binascii.Error):
            imageapi._b64decode(broken)
    assert imageapi.classify(binascii.Error("bad")).code == "unreadable"


def test_stream_errors_become_the_sdk_errors_that_classify_understands():
    with pytest.raises(openai.APIError) as refused:
        events([b'event: error\ndata: {"error": {"message": "Your request was rejected", "code": "x"}}\n\n'])
    assert "rejected" in str(refused.value)
    with pytest.raises(ValueError):
        events([b"data: [1, 2]\n\n"])
    with pytest.raises(ValueError):
        events([b"data: <html>oops\n\n"])
    with pytest.raises(openai.APIConnectionError) as dropped:
        events([b'data: {"type": "a"}\n\n'], error=httpx2.RemoteProtocolError("peer closed"))
    assert imageapi.classify(dropped.value).code == "connection"
    with pytest.raises(openai.APITimeoutError) as slow:
        events([], error=httpx2.ReadTimeout("read timed out"))
    assert imageapi.classify(slow.value).code == "timeout"


def test_each_thread_keeps_to_one_connection_pool_and_every_pool_serves_some(settings):
    transport = imageapi.ShardedTransport(shards=3)
    together = threading.Barrier(6)  # all alive at once, so no thread reuses another's identity
    seen: list[set[int]] = []

    def use() -> None:
        together.wait(timeout=30)
        pools = {id(transport._pool()) for _ in range(5)}
        together.wait(timeout=30)
        seen.append(pools)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 6
    assert all(len(pools) == 1 for pools in seen)  # a thread never switches pools
    assert len(set().union(*seen)) == 3
    transport.close()


def test_a_proxy_in_the_environment_keeps_the_sdk_s_own_transport(settings, monkeypatch):
    settings.OPENAI_CONNECTION_SHARDS = 4
    client = imageapi._http_client()
    assert isinstance(client._transport, imageapi.ShardedTransport)
    client.close()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert imageapi._http_client() is None
