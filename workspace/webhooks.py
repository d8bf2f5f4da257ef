"""Webhooks: owners register HTTPS endpoints; job (and later campaign) events are signed and delivered.

Signed to the Standard Webhooks specification (https://www.standardwebhooks.com/): every message has a
`webhook-id` that stays the same across retries and redeliveries, a `webhook-timestamp` (unix seconds,
per attempt) and a `webhook-signature` of `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed
with the base64-decoded part of the endpoint's `whsec_` secret. During a rotation's overlap the previous
secret signs too: two space-separated signatures, each one valid on its own.

The event rows are written in the transaction of the job's final transition (`job_ended`), and the
Celery message goes out on commit. `deliveries_attempt` (the task `deliver_webhook`) claims a delivery
with a conditional UPDATE, makes one request and records it; a failure waits out the retry schedule
(WEBHOOK_RETRY_SCHEDULE, with jitter) and the last one marks the delivery failed. The sweep resends
what is due and recovers an attempt whose worker died.

Server-side request forgery: an endpoint must be HTTPS on a public address. The URL is checked when it
is registered and again at every attempt, which resolves the name once (`resolve`, the one seam),
refuses it if any address is loopback, private, link-local, multicast or reserved, and then connects to
the address it checked (the URL's host replaced by that IP; the original name goes in the Host header
and as TLS SNI, and the certificate is verified against it), so a DNS answer that changes between the
check and the connection (rebinding) cannot reach the internal network. No proxy from the environment,
no redirects followed. WEBHOOK_ALLOW_PRIVATE=true lifts the address and HTTPS rules.

Imports run one way: worker → webhooks → models, audit; tasks are sent by name.
"""

import base64
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx2
from celery import current_app
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from workspace import audit
from workspace.models import Image, Job, Project
from workspace.webhook_models import (
    SUBSCRIBABLE,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

logger = logging.getLogger(__name__)

DELIVER_WEBHOOK = "workspace.tasks.deliver_webhook"
BROKER_ERRORS = (KombuError, RedisError, OSError)
SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's prefix, not a secret
EXCERPT_BYTES = 1024
# Longer waits than this are not put on the broker with a countdown (Redis redelivers unacknowledged
# messages after its visibility timeout); the sweep sends them once they are due.
MAX_COUNTDOWN_SECONDS = 3000
JITTER = 0.2  # each wait is the schedule's ±20 %


class WebhookRefused(Exception):
    """The endpoint may not be used; the message says why, for the owner who typed the URL."""


# --- Signing (Standard Webhooks) ---------------------------------------------------------------------


def secret_new() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(*, secret: str, message_id: str, timestamp: int, body: str) -> str:
    """One `v1,<base64>` signature of `{id}.{timestamp}.{body}` with the secret's decoded bytes."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_header(*, secrets: list[str], message_id: str, timestamp: int, body: str) -> str:
    return " ".join(sign(secret=s, message_id=message_id, timestamp=timestamp, body=body) for s in secrets)


# --- Addresses -------------------------------------------------------------------------------------------


def resolve(host: str, port: int) -> list[str]:
    """Every address the name resolves to (an IP literal resolves to itself). The one seam tests patch."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def address_allowed(address: str) -> bool:
    """Public unicast only: not loopback, private, link-local, multicast, reserved or unspecified."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_multicast or ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
    )


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    url: str


def _target(url: str) -> Target:
    parts = urlsplit(url)
    allowed_schemes = ("https", "http") if settings.WEBHOOK_ALLOW_PRIVATE else ("https",)
    if parts.scheme not in allowed_schemes:
        raise WebhookRefused("Use an https:// address: messages carry your project's data.")
    if not parts.hostname:
        raise WebhookRefused("That address has no host name.")
    if parts.username or parts.password:
        raise WebhookRefused("Put no user name or password in the address; check the signature instead.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookRefused("That address has an impossible port.") from None
    return Target(scheme=parts.scheme, host=parts.hostname, port=port, url=url)


def _checked_addresses(target: Target) -> list[str]:
    """The addresses to connect to, all of them public unless WEBHOOK_ALLOW_PRIVATE."""
    try:
        addresses = resolve(target.host, target.port)
    except (OSError, UnicodeError):
        raise WebhookRefused(f"The host {target.host} could not be found.") from None
    if not addresses:
        raise WebhookRefused(f"The host {target.host} could not be found.")
    if not settings.WEBHOOK_ALLOW_PRIVATE:
        refused = [address for address in addresses if not address_allowed(address)]
        if refused:
            raise WebhookRefused(
                f"{target.host} leads to {refused[0]}, a private, local or reserved address; "
                "webhooks go only to public internet addresses."
            )
    return addresses


def url_check(*, url: str) -> None:
    """Raise WebhookRefused unless the URL may be registered (the same rules as at delivery)."""
    _checked_addresses(_target(url))


# --- Endpoints (owners, from the settings page) ---------------------------------------------------------


def _events_clean(events: list[str]) -> list[str]:
    chosen = [event for event in SUBSCRIBABLE if event in set(events)]
    if not chosen:
        raise WebhookRefused("Choose at least one event.")
    return [str(event) for event in chosen]


def endpoint_add(
    *, project: Project, url: str, events: list[str], description: str = "", actor: AbstractBaseUser | None
) -> WebhookEndpoint:
    url_check(url=url)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            project=project,
            url=url,
            events=_events_clean(events),
            description=description,
            secret=secret_new(),
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        audit.record(
            actor=actor,
            action=audit.Action.WEBHOOK_ADDED,
            target=endpoint,
            before=None,
            after={"url": url, "events": endpoint.events},
            project=project,
        )
    return endpoint


def _endpoint(project: Project, endpoint_id: int) -> WebhookEndpoint:
    """Raises WebhookEndpoint.DoesNotExist for another project's endpoint (the view's 404)."""
    return WebhookEndpoint.objects.select_for_update().get(project=project, pk=endpoint_id)


def endpoint_remove(*, project: Project, endpoint_id: int, actor: AbstractBaseUser | None) -> WebhookEndpoint:
    """Delete the endpoint and its delivery log; nothing more is sent to it."""
    with transaction.atomic():
        endpoint = _endpoint(project, endpoint_id)
        audit.record(
            actor=actor,
            action=audit.Action.WEBHOOK_REMOVED,
            target=endpoint,
            before={"url": endpoint.url, "events": endpoint.events},
            after=None,
            project=project,
        )
        endpoint.delete()
    return endpoint


def endpoint_rotate(
    *, project: Project, endpoint_id: int, actor: AbstractBaseUser | None, now: datetime | None = None
) -> WebhookEndpoint:
    """A new secret; the old one keeps signing for WEBHOOK_ROTATION_OVERLAP_HOURS. The audit trail
    records that it happened, never a secret."""
    now = now or timezone.now()
    with transaction.atomic():
        endpoint = _endpoint(project, endpoint_id)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + timedelta(hours=settings.WEBHOOK_ROTATION_OVERLAP_HOURS)
        endpoint.secret = secret_new()
        endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
        audit.record(
            actor=actor,
            action=audit.Action.WEBHOOK_ROTATED,
            target=endpoint,
            before=None,
            after={"previous_secret_valid_until": endpoint.previous_secret_expires_at},
            project=project,
        )
    return endpoint


def endpoint_ping(*, project: Project, endpoint_id: int) -> WebhookDelivery:
    """Queue a `webhook.ping` message to one endpoint, whatever events it chose."""
    with transaction.atomic():
        endpoint = _endpoint(project, endpoint_id)
        data = {"project_id": project.pk, "endpoint_id": endpoint.pk, "message": "A test from Atelier."}
        return _deliveries_create(endpoints=[endpoint], event_type=WebhookEvent.PING, data=data)[0]


def delivery_redeliver(
    *, project: Project, delivery_id: int, endpoint_id: int | None = None
) -> WebhookDelivery:
    """One more attempt of a finished delivery, same id and body, sent now. Raises
    WebhookDelivery.DoesNotExist for another project's delivery (or, given `endpoint_id`, another
    endpoint's: the API names both), WebhookRefused for one still in flight."""
    mine = {"endpoint_id": endpoint_id} if endpoint_id is not None else {}
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(
            endpoint__project=project, pk=delivery_id, **mine
        )
        if not WebhookDelivery.objects.redeliver(delivery.pk, now=timezone.now()):
            raise WebhookRefused("That message is still being delivered.")
        transaction.on_commit(lambda: _send(delivery.pk))
        delivery.refresh_from_db()
    return delivery


def endpoints_for_settings(*, project: Project, log_size: int = 10) -> list[WebhookEndpoint]:
    """The project's endpoints, each with `recent_attempts` (newest first) for the delivery log."""
    endpoints = list(WebhookEndpoint.objects.filter(project=project))
    for endpoint in endpoints:
        endpoint.recent_attempts = list(
            WebhookAttempt.objects.filter(delivery__endpoint=endpoint)
            .select_related("delivery")
            .order_by("-created_at", "-id")[:log_size]
        )
        endpoint.waiting = list(
            endpoint.deliveries.filter(
                status__in=[WebhookDelivery.Status.PENDING, WebhookDelivery.Status.SENDING], attempts=0
            )[:log_size]
        )
    return endpoints


def endpoint_deliveries(*, project: Project, endpoint_id: int, limit: int = 20) -> list[WebhookDelivery]:
    """One endpoint's recent messages, newest first, each with its `attempt_log` prefetched. Raises
    WebhookEndpoint.DoesNotExist for another project's endpoint (the API's 404)."""
    endpoint = WebhookEndpoint.objects.get(project=project, pk=endpoint_id)
    return list(endpoint.deliveries.prefetch_related("attempt_log").order_by("-created_at", "-id")[:limit])


# --- Events ----------------------------------------------------------------------------------------------


def _body(event_type: str, data: dict) -> str:
    stamp = timezone.now().isoformat().replace("+00:00", "Z")
    return json.dumps({"type": str(event_type), "timestamp": stamp, "data": data}, separators=(",", ":"))


def _deliveries_create(
    *, endpoints: list[WebhookEndpoint], event_type: str, data: dict
) -> list[WebhookDelivery]:
    """One delivery per endpoint, sent once the surrounding transaction commits."""
    body = _body(event_type, data)
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                endpoint=endpoint,
                message_id=f"msg_{uuid.uuid4().hex}",
                event_type=str(event_type),
                body=body,
                max_attempts=1 + len(settings.WEBHOOK_RETRY_SCHEDULE),
                next_attempt_at=now,
                created_at=now,
            )
            for endpoint in endpoints
        ]
    )
    ids = [delivery.pk for delivery in deliveries]
    transaction.on_commit(lambda: [_send(delivery_id) for delivery_id in ids])
    return deliveries


def event_emit(*, project_id: int, event_type: str, data: dict) -> list[WebhookDelivery]:
    """Queue `event_type` to every endpoint of the project that subscribed to it. Call it inside the
    transaction that made the event happen (campaign.finished will, too)."""
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(project_id=project_id)
        if str(event_type) in endpoint.events
    ]
    if not endpoints:
        return []
    return _deliveries_create(endpoints=endpoints, event_type=event_type, data=data)


def _image_url(image: Image) -> str:
    return settings.SITE_URL + reverse("image_file", args=[image.project_id, image.pk])


def job_payload(*, job: Job) -> dict:
    images = [
        {
            "id": image.pk,
            "width": image.width,
            "height": image.height,
            "format": image.format,
            "url": _image_url(image),
        }
        for image in job.images.order_by("index")
    ]
    error = None
    if job.status == Job.Status.FAILED:
        error = {"code": job.error_code, "message": job.error_message}
    return {
        "job_id": job.pk,
        "project_id": job.project_id,
        "status": job.status,
        "prompt": job.prompt,
        "images": images,
        "error": error,
    }


def job_ended(*, job_id: int) -> list[WebhookDelivery]:
    """The job just succeeded or failed: queue job.succeeded / job.failed to the endpoints that want it.

    The worker calls this in the transaction of the final transition, so the event exists if and only
    if the transition committed. A project without endpoints costs one query.
    """
    job = Job.objects.get(pk=job_id)
    event_type = {
        Job.Status.SUCCEEDED: WebhookEvent.JOB_SUCCEEDED,
        Job.Status.FAILED: WebhookEvent.JOB_FAILED,
    }.get(job.status)
    if event_type is None:
        return []
    endpoints = [
        e for e in WebhookEndpoint.objects.filter(project_id=job.project_id) if event_type in e.events
    ]
    if not endpoints:
        return []
    return _deliveries_create(endpoints=endpoints, event_type=event_type, data=job_payload(job=job))


def campaign_finished(*, campaign, progress) -> list[WebhookDelivery]:
    """The campaign's last job ended (or it was canceled and nothing runs): queue campaign.finished.
    Called in the transaction that marks it finished (workspace.campaign_runs), as job_ended is."""
    return event_emit(
        project_id=campaign.project_id,
        event_type=WebhookEvent.CAMPAIGN_FINISHED,
        data={
            "campaign_id": campaign.pk,
            "project_id": campaign.project_id,
            "kind": campaign.kind,
            "name": campaign.name,
            "status": campaign.status,
            "jobs": {
                "total": progress.total,
                "succeeded": progress.done,
                "failed": progress.failed,
                "canceled": progress.canceled,
            },
            "cost": str(progress.cost),
        },
    )


# --- Delivering (the Celery task) ----------------------------------------------------------------------


def _send(delivery_id: int, *, countdown: float | None = None) -> None:
    try:
        current_app.send_task(DELIVER_WEBHOOK, args=(delivery_id,), countdown=countdown)
    except BROKER_ERRORS:
        # The row is the truth: the sweep sends a pending delivery whose message never arrived.
        logger.warning("webhook delivery %s: the broker refused its message", delivery_id, exc_info=True)


def retry_delay(*, attempt: int) -> float | None:
    """Seconds before the next try after failed attempt number `attempt` (1-based), with jitter; None
    after the last."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempt > len(schedule):
        return None
    base = schedule[attempt - 1]
    return base * random.uniform(1 - JITTER, 1 + JITTER)


@dataclass
class Outcome:
    ok: bool
    http_status: int | None = None
    excerpt: str = ""
    error: str = ""


def _post(*, url: str, headers: dict[str, str], body: bytes) -> Outcome:
    """One POST to the address checked just now, never to whatever the name resolves to later."""
    try:
        target = _target(url)
        address = _checked_addresses(target)[0]
    except WebhookRefused as refusal:
        return Outcome(ok=False, error=str(refusal))
    host_for_url = f"[{address}]" if ":" in address else address
    parts = urlsplit(url)
    pinned = urlunsplit((parts.scheme, f"{host_for_url}:{target.port}", parts.path or "/", parts.query, ""))
    host_header = f"[{target.host}]" if ":" in target.host else target.host
    if parts.port is not None:
        host_header += f":{parts.port}"
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    try:
        # trust_env off: a proxy from the environment would resolve the name again, past our check.
        with (
            httpx2.Client(
                timeout=timeout,
                follow_redirects=False,
                trust_env=False,
                verify=_tls(settings.WEBHOOK_CA_FILE),
            ) as client,
            client.stream(
                "POST",
                pinned,
                content=body,
                headers={**headers, "Host": host_header},
                extensions={"sni_hostname": target.host},
            ) as response,
        ):
            return _answer(response)
    except httpx2.TimeoutException:
        return Outcome(ok=False, error=f"No answer within {timeout:g} seconds.")
    except httpx2.HTTPError as error:
        return Outcome(ok=False, error=f"Could not connect: {type(error).__name__} {error}"[:300])


@functools.lru_cache(maxsize=4)
def _tls(ca_file: str) -> ssl.SSLContext:
    """The client's TLS context: the system's authorities, plus WEBHOOK_CA_FILE's. Built once per process
    (loading the store costs milliseconds); hostname checking stays on, and it checks the endpoint's
    name, which _post hands over as SNI while the socket goes to the pinned address."""
    context = httpx2.create_ssl_context(trust_env=False)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def _answer(response: httpx2.Response) -> Outcome:
    """What the receiver said: 2xx is delivered; anything else, a redirect included, a failed attempt."""
    excerpt = b""
    for chunk in response.iter_bytes():
        excerpt += chunk
        if len(excerpt) >= EXCERPT_BYTES:
            break  # the first KB is all the log keeps; the rest is never read
    text = excerpt[:EXCERPT_BYTES].decode("utf-8", errors="replace")
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(ok=True, http_status=status, excerpt=text)
    if 300 <= status < 400:
        where = response.headers.get("location", "")[:150] or "nowhere"
        error = f"The endpoint redirected (HTTP {status}) to {where}; redirects are not followed."
    else:
        error = f"The endpoint answered HTTP {status}."
    return Outcome(ok=False, http_status=status, excerpt=text, error=error)


def deliveries_attempt(*, delivery_id: int) -> WebhookAttempt | None:
    """Claim the delivery, send it once, log the attempt, then succeed, schedule a retry, or give up.
    Returns the attempt, or None when the delivery was not ours to send (not due, taken, or over)."""
    now = timezone.now()
    lease = settings.WEBHOOK_TIMEOUT_SECONDS * 3 + 30
    token = WebhookDelivery.objects.claim(delivery_id, now=now, lease_seconds=lease)
    if token is None:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "Atelier-Webhooks/1",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            secrets=endpoint.signing_secrets(now=timezone.now()),
            message_id=delivery.message_id,
            timestamp=timestamp,
            body=delivery.body,
        ),
    }
    started = time.monotonic()
    outcome = _post(url=endpoint.url, headers=headers, body=delivery.body.encode())
    latency_ms = int((time.monotonic() - started) * 1000)
    finished = timezone.now()
    with transaction.atomic():
        attempt = WebhookAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            ok=outcome.ok,
            http_status=outcome.http_status,
            latency_ms=latency_ms,
            response_excerpt=outcome.excerpt,
            error=outcome.error[:300],
            created_at=finished,
        )
        if outcome.ok:
            WebhookDelivery.objects.delivered(delivery_id, token=token, now=finished)
            return attempt
        delay = retry_delay(attempt=delivery.attempts) if delivery.attempts < delivery.max_attempts else None
        if delay is None:
            WebhookDelivery.objects.give_up(delivery_id, token=token, now=finished)
        else:
            won = WebhookDelivery.objects.retry_at(
                delivery_id, token=token, at=finished + timedelta(seconds=delay)
            )
            if won and delay <= MAX_COUNTDOWN_SECONDS:
                transaction.on_commit(lambda: _send(delivery_id, countdown=delay))
    logger.info(
        "webhook delivery %s attempt %s to endpoint %s failed: %s",
        delivery_id,
        delivery.attempts,
        endpoint.pk,
        outcome.error,
    )
    return attempt


def deliveries_sweep() -> dict[str, int]:
    """Beat, every minute: give back attempts whose worker died, and send what is due but unsent (a
    retry too long for a countdown, a lost message)."""
    now = timezone.now()
    released = WebhookDelivery.objects.release_expired(now=now)
    due = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
    # A message may also be on its way for some of these: the claim lets only one of them send.
    resent = 0
    for delivery_id in due.values_list("pk", flat=True)[:500]:
        _send(delivery_id)
        resent += 1
    return {"released": released, "resent": resent}
