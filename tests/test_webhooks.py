"""Webhooks: signed job events delivered to a real HTTP receiver on 127.0.0.1, retries, rotation, refusals.

The receiver is an http.server thread, so these tests set WEBHOOK_ALLOW_PRIVATE (it is on loopback and
plain HTTP); the refusal tests turn it off again. Celery messages are not sent: the on-commit callbacks
are captured and the task is called directly, as a worker would.
"""

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import WebhookDeliveryFactory, WebhookEndpointFactory
from tests.helpers import create_job, run
from workspace import tasks, webhooks
from workspace.models import AuditEvent, Job
from workspace.webhook_models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


# --- A receiver, and the spec's verification written from the spec --------------------------------------


class Receiver:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self.location = ""
        self.answer = b'{"ok": true}'
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.SITE_URL = "https://atelier.example.com"
    served = Receiver()
    yield served
    served.close()


def verifies(*, secret: str, headers: dict, body: bytes) -> list[bool]:
    """For each signature in the header, whether it is the spec's HMAC-SHA256 of id.timestamp.body
    keyed with the base64-decoded secret after `whsec_` (written here from the spec, not the app)."""
    key = base64.b64decode(secret[len("whsec_") :])
    content = b".".join([headers["webhook-id"].encode(), headers["webhook-timestamp"].encode(), body])
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    results = []
    for signature in headers["webhook-signature"].split(" "):
        version, _, value = signature.partition(",")
        results.append(version == "v1" and hmac.compare_digest(value, expected))
    return results


def deliver(delivery: WebhookDelivery) -> WebhookDelivery:
    tasks.deliver_webhook(delivery.pk)
    delivery.refresh_from_db()
    return delivery


@pytest.fixture
def sent(monkeypatch):
    """The (delivery id, countdown) of every message the app sends, instead of sending it."""
    messages: list[tuple[int, float | None]] = []
    monkeypatch.setattr(
        webhooks, "_send", lambda delivery_id, *, countdown=None: messages.append((delivery_id, countdown))
    )
    return messages


# --- Delivering a job's event --------------------------------------------------------------------------


def test_it_delivers_one_signed_message_when_a_job_succeeds(
    cast, project, receiver, sent, django_capture_on_commit_callbacks
):
    endpoint = webhooks.endpoint_add(
        project=project, url=receiver.url, events=["job.succeeded"], actor=cast.alice
    )
    job = create_job(project=project, author=cast.bob)
    with django_capture_on_commit_callbacks(execute=True):
        job = run(job)
    assert job.status == Job.Status.SUCCEEDED
    delivery = WebhookDelivery.objects.get()
    assert (delivery.endpoint, delivery.event_type, delivery.status) == (endpoint, "job.succeeded", "pending")
    assert sent == [(delivery.pk, None)]  # enqueued once, on commit

    delivery = deliver(delivery)
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    assert request["path"] == "/hook"
    assert headers["webhook-id"] == delivery.message_id
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 30
    assert verifies(secret=endpoint.secret, headers=headers, body=body) == [True]
    assert verifies(secret=webhooks.secret_new(), headers=headers, body=body) == [False]
    payload = json.loads(body)
    image = job.images.get()
    assert payload["type"] == "job.succeeded"
    assert payload["timestamp"].endswith("Z")
    assert payload["data"] == {
        "job_id": job.pk,
        "project_id": project.pk,
        "status": "succeeded",
        "prompt": job.prompt,
        "images": [
            {
                "id": image.pk,
                "width": image.width,
                "height": image.height,
                "format": image.format,
                "url": f"https://atelier.example.com/p/{project.pk}/images/{image.pk}/file",
            }
        ],
        "error": None,
    }
    attempt = WebhookAttempt.objects.get()
    assert (attempt.number, attempt.ok, attempt.http_status, attempt.error) == (1, True, 200, "")
    assert attempt.response_excerpt == '{"ok": true}'


def test_it_sends_job_failed_with_the_error_and_nothing_to_endpoints_that_did_not_ask(
    cast, project, receiver, image_service, sent, django_capture_on_commit_callbacks
):
    failures = WebhookEndpointFactory(project=project, url=receiver.url, events=["job.failed"])
    WebhookEndpointFactory(project=project, url=receiver.url, events=["job.succeeded"])
    image_service.inject("moderation")
    with django_capture_on_commit_callbacks(execute=True):
        job = run(create_job(project=project, author=cast.bob))
    assert job.status == Job.Status.FAILED
    delivery = WebhookDelivery.objects.get()  # one: the job.succeeded endpoint gets nothing
    assert delivery.endpoint == failures
    deliver(delivery)
    payload = json.loads(receiver.requests[0]["body"])
    assert payload["type"] == "job.failed"
    assert payload["data"]["status"] == "failed"
    assert payload["data"]["images"] == []
    assert payload["data"]["error"] == {"code": job.error_code, "message": job.error_message}


def test_a_project_without_endpoints_gets_no_delivery(
    cast, project, receiver, django_capture_on_commit_callbacks
):
    WebhookEndpointFactory(url=receiver.url)  # another project's
    with django_capture_on_commit_callbacks(execute=True):
        run(create_job(project=project, author=cast.bob))
    assert not WebhookDelivery.objects.exists()


# --- Retries ------------------------------------------------------------------------------------------------


def test_a_failing_receiver_is_retried_with_backoff_and_logged_then_marked_failed(
    project, receiver, settings, sent, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_SCHEDULE = [0.2, 0.4]
    receiver.status, receiver.answer = 500, b"boom " * 400  # 2 KB: the log keeps 1 KB
    endpoint = WebhookEndpointFactory(project=project, url=receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        delivery = webhooks.endpoint_ping(project=project, endpoint_id=endpoint.pk)
    assert delivery.max_attempts == 3
    for number, wait in [(1, 0.2), (2, 0.4)]:
        with django_capture_on_commit_callbacks(execute=True):
            delivery = deliver(delivery)
        attempt = WebhookAttempt.objects.get(delivery=delivery, number=number)
        assert delivery.status == WebhookDelivery.Status.PENDING
        waited = (delivery.next_attempt_at - attempt.created_at).total_seconds()
        assert wait * 0.8 <= waited <= wait * 1.2, (number, waited)
        assert sent[-1][0] == delivery.pk and wait * 0.8 <= sent[-1][1] <= wait * 1.2  # countdown
    delivery = deliver(delivery)
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.finished_at is not None
    attempts = list(delivery.attempt_log.order_by("number"))
    assert [a.number for a in attempts] == [1, 2, 3]
    assert all(
        a.http_status == 500 and not a.ok and a.error == "The endpoint answered HTTP 500." for a in attempts
    )
    assert all(len(a.response_excerpt) == 1024 for a in attempts)
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1  # the same message each time
    assert webhooks.deliveries_attempt(delivery_id=delivery.pk) is None  # over: not sent again
    assert len(receiver.requests) == 3


def test_a_retry_waits_for_its_time(project, receiver, settings, sent):
    settings.WEBHOOK_RETRY_SCHEDULE = [300]
    receiver.status = 503
    delivery = webhooks.endpoint_ping(
        project=project, endpoint_id=WebhookEndpointFactory(project=project, url=receiver.url).pk
    )
    deliver(delivery)
    assert webhooks.deliveries_attempt(delivery_id=delivery.pk) is None  # not due for five minutes
    assert len(receiver.requests) == 1
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    receiver.status = 204
    assert deliver(delivery).status == WebhookDelivery.Status.SUCCEEDED


def test_the_default_schedule_backs_off_for_about_a_day_with_jitter():
    delays = [webhooks.retry_delay(attempt=n) for n in range(1, 9)]
    assert delays[-1] is None
    for delay, base in zip(delays[:-1], [5, 300, 1800, 7200, 18000, 36000, 36000], strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert len({webhooks.retry_delay(attempt=4) for _ in range(5)}) > 1  # jittered
    assert 20 * 3600 < sum([5, 300, 1800, 7200, 18000, 36000, 36000]) < 30 * 3600


def test_a_redirect_is_not_followed_and_counts_as_a_failed_attempt(project, receiver, sent):
    receiver.status, receiver.location = 302, f"http://127.0.0.1:{receiver.port}/elsewhere"
    endpoint = WebhookEndpointFactory(project=project, url=receiver.url)
    delivery = deliver(webhooks.endpoint_ping(project=project, endpoint_id=endpoint.pk))
    assert [r["path"] for r in receiver.requests] == ["/hook"]
    attempt = delivery.attempt_log.get()
    assert (attempt.ok, attempt.http_status) == (False, 302)
    assert "redirected" in attempt.error and "/elsewhere" in attempt.error
    assert delivery.status == WebhookDelivery.Status.PENDING  # retried later


def test_a_receiver_that_does_not_answer_in_time_is_a_logged_failed_attempt(project, settings, sent):
    import socket

    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts the connection, never answers
    try:
        endpoint = WebhookEndpointFactory(project=project, url=f"http://127.0.0.1:{silent.getsockname()[1]}/")
        delivery = deliver(webhooks.endpoint_ping(project=project, endpoint_id=endpoint.pk))
    finally:
        silent.close()
    attempt = delivery.attempt_log.get()
    assert attempt.error == "No answer within 0.3 seconds."
    assert delivery.status == WebhookDelivery.Status.PENDING


# --- Rotation ----------------------------------------------------------------------------------------------


def test_after_rotation_both_secrets_sign_until_the_overlap_ends(cast, project, receiver, settings, sent):
    settings.WEBHOOK_ROTATION_OVERLAP_HOURS = 24
    endpoint = webhooks.endpoint_add(
        project=project, url=receiver.url, events=["job.failed"], actor=cast.alice
    )
    old = endpoint.secret
    endpoint = webhooks.endpoint_rotate(project=project, endpoint_id=endpoint.pk, actor=cast.alice)
    assert endpoint.secret != old and endpoint.secret.startswith("whsec_")
    assert len(base64.b64decode(endpoint.secret[6:])) == 24
    deliver(webhooks.endpoint_ping(project=project, endpoint_id=endpoint.pk))
    request = receiver.requests[-1]
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    assert verifies(secret=endpoint.secret, **_signed(request)) == [True, False]
    assert verifies(secret=old, **_signed(request)) == [False, True]

    # A day later only the new secret signs.
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    deliver(webhooks.endpoint_ping(project=project, endpoint_id=endpoint.pk))
    assert verifies(secret=endpoint.secret, **_signed(receiver.requests[-1])) == [True]
    actions = list(AuditEvent.objects.filter(project=project).values_list("action", flat=True))
    assert sorted(actions) == ["webhook.added", "webhook.rotated"]
    assert old not in json.dumps(list(AuditEvent.objects.values("before", "after")), default=str)


def _signed(request: dict) -> dict:
    return {"headers": request["headers"], "body": request["body"]}


# --- Where endpoints may lead ----------------------------------------------------------------------------


REFUSED_URLS = [
    "https://127.0.0.1/hook",
    "https://10.1.2.3/hook",
    "https://192.168.0.10/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://[::1]/hook",
    "https://[fd00::1]/hook",
    "https://224.0.0.1/hook",
    "https://240.0.0.1/hook",
    "https://0.0.0.0/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "http://93.184.215.14/hook",  # public, but plain HTTP
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_registration_refuses_private_and_plain_http_endpoints(client, cast, project, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    client.force_login(cast.alice)
    response = client.post(
        reverse("webhook_add", args=[project.pk]), {"url": url, "events": ["job.succeeded"]}
    )
    assert response.status_code == 400
    assert response.context["webhook_form"].errors["url"], url
    assert not WebhookEndpoint.objects.exists()


def test_registration_refuses_a_name_that_resolves_to_a_private_address(
    client, cast, project, settings, monkeypatch
):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: ["93.184.215.14", "10.0.0.7"])
    client.force_login(cast.alice)
    data = {"url": "https://hooks.example.test/in", "events": ["job.succeeded"]}
    response = client.post(reverse("webhook_add", args=[project.pk]), data)
    assert response.status_code == 400
    assert "10.0.0.7" in response.context["webhook_form"].errors["url"][0]
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: ["93.184.215.14"])
    assert client.post(reverse("webhook_add", args=[project.pk]), data).status_code == 302
    assert WebhookEndpoint.objects.get().url == "https://hooks.example.test/in"


def test_delivery_refuses_a_name_that_now_resolves_to_a_private_address(project, settings, monkeypatch, sent):
    """DNS rebinding: the name was public when registered; at delivery it points inside."""
    settings.WEBHOOK_ALLOW_PRIVATE = False
    endpoint = WebhookEndpointFactory(project=project, url="https://hooks.example.test/in")
    lookups = []
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: lookups.append((host, port)) or ["10.0.0.7"])
    monkeypatch.setattr(webhooks.httpx2, "Client", None)  # any connection attempt would raise
    delivery = deliver(webhooks.endpoint_ping(project=project, endpoint_id=endpoint.pk))
    attempt = delivery.attempt_log.get()
    assert lookups == [("hooks.example.test", 443)]
    assert not attempt.ok and "10.0.0.7" in attempt.error and "private" in attempt.error
    assert delivery.status == WebhookDelivery.Status.PENDING


def test_delivery_connects_to_the_address_it_checked_with_the_original_host(
    project, receiver, monkeypatch, sent
):
    """The name is resolved once, by us; the request goes to that address with the name as Host."""
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: ["127.0.0.1"])
    url = f"http://hooks.example.test:{receiver.port}/in?x=1"
    endpoint = WebhookEndpointFactory(project=project, url=url)
    delivery = deliver(webhooks.endpoint_ping(project=project, endpoint_id=endpoint.pk))
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    [request] = receiver.requests
    assert request["path"] == "/in?x=1"
    assert request["headers"]["host"] == f"hooks.example.test:{receiver.port}"


# --- Owners only, the settings page, redelivery -------------------------------------------------------------


def test_only_owners_use_the_webhook_forms(client, cast, project, other_project):
    endpoint = WebhookEndpointFactory(project=project)
    delivery = WebhookDeliveryFactory(endpoint=endpoint)
    urls = [
        reverse("webhook_add", args=[project.pk]),
        reverse("webhook_remove", args=[project.pk, endpoint.pk]),
        reverse("webhook_rotate", args=[project.pk, endpoint.pk]),
        reverse("webhook_ping", args=[project.pk, endpoint.pk]),
        reverse("webhook_redeliver", args=[project.pk, delivery.pk]),
        reverse("project_settings", args=[project.pk]),
    ]
    data = {"url": "https://93.184.215.14/hook", "events": ["job.succeeded"]}
    before = list(WebhookEndpoint.objects.values_list("pk", "secret")), list(WebhookDelivery.objects.values())
    for user, status in [(cast.bob, 403), (cast.vera, 403), (cast.charlie, 404)]:
        client.force_login(user)
        for url in urls:
            assert client.post(url, data).status_code == status, (user, url)
        assert client.get(urls[-1]).status_code == status
    assert (
        list(WebhookEndpoint.objects.values_list("pk", "secret")),
        list(WebhookDelivery.objects.values()),
    ) == before
    client.force_login(cast.alice)
    theirs = WebhookEndpointFactory(project=other_project)
    assert client.post(reverse("webhook_rotate", args=[project.pk, theirs.pk])).status_code == 404


def test_an_owner_adds_sees_the_log_and_removes_an_endpoint(client, cast, project, receiver, sent):
    client.force_login(cast.alice)
    response = client.post(
        reverse("webhook_add", args=[project.pk]),
        {"url": receiver.url, "description": "Zapier", "events": ["job.succeeded", "campaign.finished"]},
    )
    assert response["Location"] == reverse("project_settings", args=[project.pk]) + "#webhooks"
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["job.succeeded", "campaign.finished"]
    receiver.status = 500
    deliver(webhooks.endpoint_ping(project=project, endpoint_id=endpoint.pk))
    page = client.get(reverse("project_settings", args=[project.pk])).content.decode()
    assert receiver.url in page and endpoint.secret in page
    assert "The endpoint answered HTTP 500." in page and "1 of 8" in page
    assert f'action="/p/{project.pk}/webhooks/{endpoint.pk}/rotate"' in page
    client.post(reverse("webhook_remove", args=[project.pk, endpoint.pk]))
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()
    assert list(AuditEvent.objects.values_list("action", flat=True).order_by("pk")) == [
        "webhook.added",
        "webhook.removed",
    ]


def test_redeliver_queues_one_new_attempt_of_the_same_message(
    client, cast, project, receiver, settings, sent, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_SCHEDULE = []
    receiver.status = 500
    endpoint = WebhookEndpointFactory(project=project, url=receiver.url)
    delivery = deliver(webhooks.endpoint_ping(project=project, endpoint_id=endpoint.pk))
    assert delivery.status == WebhookDelivery.Status.FAILED
    client.force_login(cast.alice)
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("webhook_redeliver", args=[project.pk, delivery.pk]))
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.max_attempts) == (WebhookDelivery.Status.PENDING, 2)
    assert sent == [(delivery.pk, None)]
    receiver.status = 200
    delivery = deliver(delivery)
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert [a.number for a in delivery.attempt_log.order_by("number")] == [1, 2]
    assert receiver.requests[0]["headers"]["webhook-id"] == receiver.requests[1]["headers"]["webhook-id"]
    # A delivery still in flight is not redelivered.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.PENDING)
    client.post(reverse("webhook_redeliver", args=[project.pk, delivery.pk]))
    delivery.refresh_from_db()
    assert delivery.max_attempts == 2


def test_the_api_redelivers_a_finished_message_once_to_its_owner(
    cast, project, receiver, settings, sent, django_capture_on_commit_callbacks
):
    from django.test import Client

    from workspace.api.tokens import token_create

    settings.WEBHOOK_RETRY_SCHEDULE = []
    receiver.status = 500
    endpoint = WebhookEndpointFactory(project=project, url=receiver.url)
    other = WebhookEndpointFactory(project=project, url=receiver.url)
    delivery = deliver(webhooks.endpoint_ping(project=project, endpoint_id=endpoint.pk))
    assert delivery.status == WebhookDelivery.Status.FAILED
    secret = token_create(user=cast.alice, name="hooks", scopes=["read", "generate"]).secret
    headers = {"Authorization": f"Bearer {secret}"}

    def redeliver(endpoint_id: int, delivery_id: int):
        url = reverse("api:webhook-redeliver", args=[project.pk, endpoint_id, delivery_id])
        return client.post(url, headers=headers)

    client = Client()
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = redeliver(endpoint.pk, delivery.pk)
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending" and response.json()["max_attempts"] == 2
    assert sent == [(delivery.pk, None)]
    receiver.status = 200
    delivery = deliver(delivery)
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert receiver.requests[0]["headers"]["webhook-id"] == receiver.requests[1]["headers"]["webhook-id"]
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]

    # Still in flight: a 409 in the error shape, and nothing changes.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.PENDING)
    refused = redeliver(endpoint.pk, delivery.pk)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "still_delivering"
    # Another endpoint's delivery named under this endpoint: not found.
    assert redeliver(other.pk, delivery.pk).status_code == 404
    delivery.refresh_from_db()
    assert delivery.max_attempts == 2


def test_the_sweep_recovers_a_dead_attempt_and_sends_what_is_due(project, sent):
    endpoint = WebhookEndpointFactory(project=project)
    now = timezone.now()
    stuck = WebhookDeliveryFactory(
        endpoint=endpoint,
        status="sending",
        attempts=1,
        max_attempts=3,
        lease_expires_at=now - timedelta(seconds=1),
    )
    spent = WebhookDeliveryFactory(
        endpoint=endpoint,
        status="sending",
        attempts=3,
        max_attempts=3,
        lease_expires_at=now - timedelta(seconds=1),
    )
    due = WebhookDeliveryFactory(
        endpoint=endpoint, status="pending", attempts=2, max_attempts=8, next_attempt_at=now
    )
    later = WebhookDeliveryFactory(
        endpoint=endpoint,
        status="pending",
        attempts=2,
        max_attempts=8,
        next_attempt_at=now + timedelta(hours=5),
    )
    assert webhooks.deliveries_sweep() == {"released": 2, "resent": 2}
    assert {delivery_id for delivery_id, _ in sent} == {stuck.pk, due.pk}
    spent.refresh_from_db()
    later.refresh_from_db()
    assert spent.status == "failed" and later.status == "pending"


# --- HTTPS: the pinned address, with the name as SNI and for the certificate check ----------------------


def _certificates(folder, *, names: list[str], ips: list[str] = ()) -> tuple[str, str, str]:
    """A test CA and a server certificate it signed for `names` (and `ips`), as PEM files in `folder`.
    Returns (ca.pem, server.pem, server.key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = timezone.now()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Atelier test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    alternative = [x509.DNSName(name) for name in names] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips
    ]
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (names or ips)[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return tuple(str(path) for path in paths)


class TlsReceiver(Receiver):
    """The receiver behind TLS on 127.0.0.1, noting the server name (SNI) each handshake asked for and
    the address each connection came in on."""

    def __init__(self, *, cert: str, key: str) -> None:
        import ssl

        super().__init__()
        self.server_names: list[str | None] = []
        self.local_addresses: list[str] = []
        self.handshake_errors: list[str] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
        plain_accept = self.server.get_request

        def accept():
            sock, peer = plain_accept()
            self.local_addresses.append(sock.getsockname()[0])
            try:
                return context.wrap_socket(sock, server_side=True), peer
            except (ssl.SSLError, OSError) as error:
                self.handshake_errors.append(str(error))
                sock.close()
                raise

        self.server.get_request = accept


@pytest.fixture
def tls(tmp_path, settings, monkeypatch, sent):
    """A factory: an HTTPS receiver whose certificate names `names`, and an endpoint on
    https://hooks.example.test:<port>/in that `resolve` answers with 127.0.0.1 only (the .test name is
    reserved: no DNS server knows it, so the pinned address is the only way there)."""
    settings.WEBHOOK_ALLOW_PRIVATE = True  # 127.0.0.1 is loopback
    lookups: list[tuple[str, int]] = []
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: lookups.append((host, port)) or ["127.0.0.1"])
    started: list[TlsReceiver] = []

    def make(*, names: list[str], ips: list[str] = (), trusted: bool = True) -> TlsReceiver:
        ca, cert, key = _certificates(tmp_path, names=names, ips=ips)
        settings.WEBHOOK_CA_FILE = ca if trusted else ""
        receiver = TlsReceiver(cert=cert, key=key)
        receiver.lookups = lookups
        receiver.url = f"https://hooks.example.test:{receiver.port}/in"
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.close()


def test_https_delivery_connects_to_the_pinned_address_with_the_name_as_sni_and_verified(project, tls):
    receiver = tls(names=["hooks.example.test"])
    endpoint = WebhookEndpointFactory(project=project, url=receiver.url)

    delivery = deliver(webhooks.endpoint_ping(project=project, endpoint_id=endpoint.pk))

    assert delivery.status == WebhookDelivery.Status.SUCCEEDED, delivery.attempt_log.get().error
    assert receiver.lookups == [("hooks.example.test", receiver.port)]  # resolved once, by us
    assert receiver.local_addresses == ["127.0.0.1"]  # the connection went to the checked address
    assert receiver.server_names == ["hooks.example.test"]  # the handshake named the host (SNI)
    [request] = receiver.requests
    assert request["headers"]["host"] == f"hooks.example.test:{receiver.port}"
    assert request["path"] == "/in"


def test_https_delivery_checks_the_certificate_against_the_name_not_the_pinned_address(project, tls):
    """A certificate valid for 127.0.0.1 but not for the endpoint's name is refused: the check is the
    name's, so pinning the address cannot be used to pass off another server as the endpoint."""
    receiver = tls(names=["elsewhere.example.test"], ips=["127.0.0.1"])
    endpoint = WebhookEndpointFactory(project=project, url=receiver.url)

    delivery = deliver(webhooks.endpoint_ping(project=project, endpoint_id=endpoint.pk))

    attempt = delivery.attempt_log.get()
    assert not attempt.ok and delivery.status == WebhookDelivery.Status.PENDING  # retried later
    assert "certificate" in attempt.error.lower() and "hooks.example.test" in attempt.error, attempt.error
    assert receiver.server_names == ["hooks.example.test"] and receiver.requests == []


def test_https_delivery_refuses_a_certificate_from_an_untrusted_authority(project, tls):
    receiver = tls(names=["hooks.example.test"], trusted=False)  # WEBHOOK_CA_FILE left empty
    endpoint = WebhookEndpointFactory(project=project, url=receiver.url)

    delivery = deliver(webhooks.endpoint_ping(project=project, endpoint_id=endpoint.pk))

    attempt = delivery.attempt_log.get()
    assert not attempt.ok and "certificate verify failed" in attempt.error, attempt.error
    assert receiver.requests == []
