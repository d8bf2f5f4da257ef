"""Webhook rows: a project's endpoints, the messages owed to them, and every attempt to deliver one.

Imported at the bottom of models.py (so Django registers them with the app); the logic is in
`workspace.webhooks`. Kept apart so the job models and these change independently.
"""

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import F
from django.utils import timezone


class WebhookEvent(models.TextChoices):
    """What an endpoint may subscribe to; PING is sent only by the "Send test" button."""

    JOB_SUCCEEDED = "job.succeeded", "Job succeeded"
    JOB_FAILED = "job.failed", "Job failed"
    # Reserved: campaigns do not exist yet, but endpoints may already subscribe.
    CAMPAIGN_FINISHED = "campaign.finished", "Campaign finished"
    PING = "webhook.ping", "Test ping"


SUBSCRIBABLE = [event for event in WebhookEvent if event != WebhookEvent.PING]


class WebhookEndpoint(models.Model):
    """An HTTPS URL an owner registered, the events it wants, and the secret its messages are signed with.

    After a rotation the previous secret signs too until `previous_secret_expires_at`, so a receiver
    can switch secrets without dropping a message.
    """

    project = models.ForeignKey("workspace.Project", on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=120, blank=True)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=80)
    previous_secret = models.CharField(max_length=80, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.url

    def signing_secrets(self, *, now: datetime) -> list[str]:
        """The secrets a message sent `now` is signed with: the current one, and the previous one
        while its overlap lasts."""
        secrets = [self.secret]
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            secrets.append(self.previous_secret)
        return secrets

    @property
    def overlap_until(self) -> datetime | None:
        """Until when the previous secret signs too, while that is still ahead."""
        if self.previous_secret and len(self.signing_secrets(now=timezone.now())) > 1:
            return self.previous_secret_expires_at
        return None

    def event_labels(self) -> list[str]:
        return [WebhookEvent(event).label for event in self.events if event in WebhookEvent.values]


class WebhookDeliveryQuerySet(models.QuerySet):
    """The delivery's state changes, each one conditional UPDATE that says whether it won (as on Job)."""

    def claim(self, delivery_id: int, *, now: datetime, lease_seconds: float) -> uuid.UUID | None:
        """pending and due → sending: one attempt, with a fresh token. None if it is not ours to send."""
        token = uuid.uuid4()
        won = self.filter(
            pk=delivery_id,
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now + timedelta(seconds=1),
            attempts__lt=F("max_attempts"),
        ).update(
            status=WebhookDelivery.Status.SENDING,
            attempts=F("attempts") + 1,
            claim_token=token,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
        )
        return token if won else None

    def _mine(self, delivery_id: int, token: uuid.UUID) -> "WebhookDeliveryQuerySet":
        return self.filter(pk=delivery_id, status=WebhookDelivery.Status.SENDING, claim_token=token)

    def delivered(self, delivery_id: int, *, token: uuid.UUID, now: datetime) -> bool:
        """sending (this claim) → succeeded."""
        return bool(
            self._mine(delivery_id, token).update(
                status=WebhookDelivery.Status.SUCCEEDED,
                finished_at=now,
                next_attempt_at=None,
                claim_token=None,
                lease_expires_at=None,
            )
        )

    def retry_at(self, delivery_id: int, *, token: uuid.UUID, at: datetime) -> bool:
        """sending (this claim) → pending until `at`, after a failed attempt with attempts left."""
        return bool(
            self._mine(delivery_id, token).update(
                status=WebhookDelivery.Status.PENDING,
                next_attempt_at=at,
                claim_token=None,
                lease_expires_at=None,
            )
        )

    def give_up(self, delivery_id: int, *, token: uuid.UUID, now: datetime) -> bool:
        """sending (this claim) → failed, after the last attempt."""
        return bool(
            self._mine(delivery_id, token).update(
                status=WebhookDelivery.Status.FAILED,
                finished_at=now,
                next_attempt_at=None,
                claim_token=None,
                lease_expires_at=None,
            )
        )

    def redeliver(self, delivery_id: int, *, now: datetime) -> bool:
        """succeeded or failed → pending now, for exactly one more attempt (the Redeliver button)."""
        return bool(
            self.filter(
                pk=delivery_id, status__in=[WebhookDelivery.Status.SUCCEEDED, WebhookDelivery.Status.FAILED]
            ).update(
                status=WebhookDelivery.Status.PENDING,
                next_attempt_at=now,
                max_attempts=F("attempts") + 1,
                finished_at=None,
            )
        )

    def release_expired(self, *, now: datetime) -> int:
        """sending with an expired lease (a killed worker) → pending now; the lost attempt still counts,
        and a delivery out of attempts fails."""
        expired = self.filter(status=WebhookDelivery.Status.SENDING, lease_expires_at__lt=now)
        failed = expired.filter(attempts__gte=F("max_attempts")).update(
            status=WebhookDelivery.Status.FAILED, finished_at=now, claim_token=None, lease_expires_at=None
        )
        pending = expired.update(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at=now,
            claim_token=None,
            lease_expires_at=None,
        )
        return failed + pending


class WebhookDelivery(models.Model):
    """One message owed to one endpoint: its id and body never change, so every attempt (and a
    redelivery) carries the same `webhook-id` and bytes; only the timestamp and signatures are new.

    pending ──claim──▶ sending ──delivered──▶ succeeded
       ▲                 │ ├──retry_at (attempts left)──▶ pending (next_attempt_at)
       │                 │ └──give_up (last attempt)──▶ failed
       └──redeliver (one more attempt, by an owner)── succeeded / failed
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        SENDING = "sending", "Sending"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(max_length=40, unique=True)
    event_type = models.CharField(max_length=40)
    body = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["endpoint", "-created_at", "-id"], name="webhook_delivery_recent"),
            models.Index(
                fields=["status", "next_attempt_at"],
                name="webhook_delivery_waiting",
                condition=models.Q(status__in=["pending", "sending"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.message_id} to endpoint {self.endpoint_id} ({self.status})"

    @property
    def can_redeliver(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


class WebhookAttempt(models.Model):
    """One HTTP request for a delivery, as the delivery log shows it."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    ok = models.BooleanField(default=False)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    # At most 1 KB of what the receiver answered, as text.
    response_excerpt = models.TextField(blank=True)
    # Why it failed, in words (empty when it succeeded).
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"
