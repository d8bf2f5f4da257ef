"""The API's rows: personal access tokens, which jobs each token created, and idempotency records.

Imported at the end of workspace/models.py so Django registers them with the app.
"""

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

SECRET_PREFIX = "atl_"  # noqa: S105 - the public prefix of every secret, not a secret
DISPLAY_PREFIX_CHARS = 12  # "atl_" and 8 characters: enough to tell tokens apart in a list


class ApiToken(models.Model):
    """A secret that acts as its owner, inside their memberships, roles and budgets, within its scopes.

    Only the SHA-256 of the secret is stored; the secret is shown once, when the token is made.
    """

    class Scope(models.TextChoices):
        READ = "read", "Read"
        GENERATE = "generate", "Generate and edit"
        ADMIN = "admin", "Admin (staff)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=DISPLAY_PREFIX_CHARS)
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Dollars a calendar month that jobs made with this token may spend, on top of the owner's budgets.
    monthly_limit = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"

    @staticmethod
    def new_secret() -> str:
        return SECRET_PREFIX + secrets.token_urlsafe(30)  # 30 bytes: 40 url-safe characters

    @staticmethod
    def hash(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    def allows(self, scope: str) -> bool:
        # generate includes read: a script that submits jobs needs to poll them.
        granted = set(self.scopes)
        if self.Scope.GENERATE in granted or self.Scope.ADMIN in granted:
            granted.add(self.Scope.READ)
        return scope in granted


class ApiTokenJob(models.Model):
    """A job created (or retried) with a token: what the token's own monthly limit counts.

    A row of its own rather than a column on Job: the job row belongs to the queue's code.
    """

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="job_links")
    job = models.OneToOneField("workspace.Job", on_delete=models.CASCADE, related_name="api_token_link")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"job {self.job_id} by token {self.token_id}"


class IdempotencyRecord(models.Model):
    """The first answer to a POST that creates work, replayed for the same key and body within 24 h.

    `status_code` is empty while the first request is still being answered. One row per (user, key): the
    unique constraint is what makes two concurrent requests with one key race-safe.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="one_idempotency_key_per_user")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"{self.key} of user {self.user_id}"
