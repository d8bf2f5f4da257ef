import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from workspace import formats


class ProjectQuerySet(models.QuerySet):
    def for_user(self, user) -> "ProjectQuerySet":
        """Projects a user may see: their memberships, or all of them for staff."""
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self.all()
        return self.filter(memberships__user=user)


class Project(models.Model):
    name = models.CharField(max_length=120)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("project", args=[self.pk])

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    EDITOR = "editor", "Editor"
    VIEWER = "viewer", "Viewer"


ROLE_RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.OWNER: 2}


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.EDITOR)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"

    def allows(self, role: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(role)]


class ImageQuerySet(models.QuerySet):
    def visible(self) -> "ImageQuerySet":
        return self.filter(deleted_at__isnull=True)


def _image_path(instance, filename):  # pragma: no cover - names are always given explicitly
    return filename


# What a job must not carry out of a state: the preview of an attempt that is over (its files are about to
# be deleted) and the claim of a worker that no longer runs it.
NO_PREVIEW = {"preview": "", "preview_count": 0}
NO_CLAIM = {"claim_token": None, "lease_expires_at": None}


# Campaign.Status.PAUSED (campaign_models imports this module, so the value is repeated here).
PAUSED = "paused"


def _not_paused(alias: str) -> str:
    """SQL: the job (table alias `alias`) is in no paused campaign. A paused campaign's jobs stay
    queued, holding their reservation, but no claim takes them; resuming makes them due again. One
    condition in the claims, rather than another status every reader of `status` would have to know.
    Takes one parameter, PAUSED."""
    campaign = apps.get_model("workspace", "Campaign")._meta.db_table
    column = connection.ops.quote_name(Job._meta.get_field("campaign").column)
    # Names come from the models; the status is a parameter.
    return (
        f"({alias}.{column} IS NULL OR NOT EXISTS (SELECT 1 FROM {connection.ops.quote_name(campaign)} c "  # noqa: S608
        f"WHERE c.id = {alias}.{column} AND c.status = %s))"
    )


class JobQuerySet(models.QuerySet):
    """The job's state changes, one method per arrow of the state machine drawn on `Job`.

    Each is one conditional UPDATE naming the state(s) it leaves from (and, for a worker's own arrows,
    the claim token), so of two racing callers exactly one wins; each returns whether it won and writes
    every field the target state must not keep. Nothing else writes `status`.
    """

    def active(self) -> "JobQuerySet":
        return self.filter(status__in=Job.ACTIVE_STATUSES)

    def _mine(self, job_id: int, token) -> "JobQuerySet":
        return self.filter(pk=job_id, status=Job.Status.RUNNING, claim_token=token)

    def claim(self, job_id: int, *, worker: str) -> "Job | None":
        """queued, or retrying and due → running: take this job with a fresh token and lease.

        Returns the claimed row, or None if another worker has it, it is done, or its retry is not due.
        One UPDATE … RETURNING (Postgres, and SQLite since 3.35): the statement that decides who runs the
        job also returns the row, where update() would need a SELECT after it. This is on the path from
        one answered call to the next call, which dozens of threads share.
        """
        return self._claim("%s", [job_id], worker=worker)

    def claim_next(self, *, worker: str, calls_per_user: int) -> "Job | None":
        """queued, or retrying and due → running: the next job in turn, whichever it is (a worker's
        message only wakes it). None when nothing is due, or everyone waiting has `calls_per_user` jobs
        running (0: no limit).

        In turn: the Studio's lane before bulk work, then the person with the fewest jobs running, then
        the longest waiting. On Postgres each person's next job is found through the waiting-jobs index
        (a loose index scan over the people with jobs waiting, then one probe each) and locked with
        SKIP LOCKED, so claimers racing for the same person's next job do not queue behind each other.
        """
        table = connection.ops.quote_name(Job._meta.db_table)
        fields = {field.name: field for field in Job._meta.concrete_fields}
        author, status, lane = (
            connection.ops.quote_name(fields[n].column) for n in ("author", "status", "lane")
        )
        enqueued_at, attempts, max_attempts, next_attempt_at, pk = (
            connection.ops.quote_name(fields[n].column)
            for n in ("enqueued_at", "attempts", "max_attempts", "next_attempt_at", "id")
        )
        limit = calls_per_user if calls_per_user > 0 else 2**31 - 1
        due_at = fields["next_attempt_at"].get_db_prep_value(
            timezone.now() + timedelta(seconds=1), connection
        )
        waiting = [Job.Status.QUEUED.value, Job.Status.RETRYING.value]

        def due(alias: str) -> str:
            # The overnight lane is never claimed: its jobs wait for the overnight dispatcher.
            return (
                f"{alias}.{attempts} < {alias}.{max_attempts} AND {alias}.{lane} < {Job.Lane.OVERNIGHT:d} "
                f"AND ({alias}.{status} = %s OR ({alias}.{status} = %s AND {alias}.{next_attempt_at} <= %s)) "
                f"AND {_not_paused(alias)}"
            )

        def running(alias: str) -> str:
            return f"(SELECT COUNT(*) FROM {table} r WHERE r.{author} = {alias} AND r.{status} = %s)"  # noqa: S608

        if connection.vendor == "postgresql":
            # Names come from the model and every value is a parameter.
            pick = (
                f"WITH RECURSIVE people(id) AS ("  # noqa: S608
                f"(SELECT {author} FROM {table} WHERE {status} IN (%s, %s) ORDER BY {author} LIMIT 1) "
                f"UNION ALL SELECT (SELECT {author} FROM {table} WHERE {status} IN (%s, %s) "
                f"AND {author} > people.id ORDER BY {author} LIMIT 1) "
                f"FROM people WHERE people.id IS NOT NULL) "
                f"SELECT nxt.{pk} FROM people "
                f"CROSS JOIN LATERAL {running('people.id')} AS busy(n) "
                f"CROSS JOIN LATERAL (SELECT w.{pk}, w.{lane}, w.{enqueued_at} FROM {table} w "
                f"WHERE w.{author} = people.id AND {due('w')} "
                f"ORDER BY w.{lane}, w.{enqueued_at}, w.{pk} LIMIT 1 FOR UPDATE SKIP LOCKED) AS nxt "
                f"WHERE people.id IS NOT NULL AND busy.n < %s "
                f"ORDER BY nxt.{lane}, busy.n, nxt.{enqueued_at}, nxt.{pk} LIMIT 1"
            )
            params = [*waiting, *waiting, Job.Status.RUNNING.value, *waiting, due_at, PAUSED, limit]
        else:
            # SQLite runs one writer at a time: no locks to skip, and a laptop's few rows.
            pick = (
                f"SELECT w.{pk} FROM {table} w WHERE {due('w')} "  # noqa: S608
                f"AND {running('w.' + author)} < %s "
                f"ORDER BY w.{lane}, {running('w.' + author)}, w.{enqueued_at}, w.{pk} LIMIT 1"
            )
            params = [*waiting, due_at, PAUSED, Job.Status.RUNNING.value, limit, Job.Status.RUNNING.value]
        return self._claim(f"({pick})", params, worker=worker)

    def _claim(self, target: str, target_params: list, *, worker: str) -> "Job | None":
        now = timezone.now()
        fields = {field.name: field for field in Job._meta.concrete_fields}

        def column(name: str) -> str:
            return connection.ops.quote_name(fields[name].column)

        def value(name: str, python_value):
            return fields[name].get_db_prep_value(python_value, connection)

        status, attempts = column("status"), column("attempts")
        # Names come from the model and every value is a parameter. The target state keeps no preview
        # and no retry time (its source states hold none either; writing them keeps that true).
        sql = (
            f"UPDATE {connection.ops.quote_name(Job._meta.db_table)} SET {status} = %s, "  # noqa: S608
            f"{column('claim_token')} = %s, {column('lease_expires_at')} = %s, {attempts} = {attempts} + 1, "
            f"{column('started_at')} = %s, {column('worker')} = %s, {column('next_attempt_at')} = NULL, "
            f"{column('preview')} = '', {column('preview_count')} = 0 "
            f"WHERE {column('id')} = {target} AND {attempts} < {column('max_attempts')} "
            f"AND {column('lane')} < {Job.Lane.OVERNIGHT:d} "
            f"AND ({status} = %s OR ({status} = %s AND {column('next_attempt_at')} <= %s)) "
            f"AND {_not_paused(connection.ops.quote_name(Job._meta.db_table))} RETURNING *"
        )
        params = [
            Job.Status.RUNNING.value,
            value("claim_token", Job.new_claim_token()),
            value("lease_expires_at", now + timedelta(seconds=settings.JOB_LEASE_SECONDS)),
            value("started_at", now),
            worker,
            *target_params,
            Job.Status.QUEUED.value,
            Job.Status.RETRYING.value,
            # A message may arrive a moment before the time it was sent for.
            value("next_attempt_at", now + timedelta(seconds=1)),
            PAUSED,
        ]
        claimed = list(self.raw(sql, params))
        return claimed[0] if claimed else None

    def waiting_ahead(self, job: "Job") -> int:
        """How many of the author's waiting jobs will be taken before this one (its card says so)."""
        if job.enqueued_at is None:  # unsent: last in its lane (Postgres sorts NULLs last)
            same_lane = Q(enqueued_at__isnull=False) | Q(enqueued_at__isnull=True, pk__lt=job.pk)
        else:
            same_lane = Q(enqueued_at__lt=job.enqueued_at) | Q(enqueued_at=job.enqueued_at, pk__lt=job.pk)
        ahead = Q(lane__lt=job.lane) | (Q(lane=job.lane) & same_lane)
        return self.filter(ahead, author_id=job.author_id, status__in=Job.WAITING_STATUSES).count()

    def renew(self, tokens: list[str]) -> int:
        """running → running: extend the leases of the claims a worker still holds. Returns how many."""
        if not tokens:
            return 0
        return self.filter(status=Job.Status.RUNNING, claim_token__in=tokens).update(
            lease_expires_at=timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS)
        )

    def show_preview(self, job_id: int, *, token, name: str, count: int) -> bool:
        """running → running: the newest partial image of this claim's attempt, for the card."""
        return bool(self._mine(job_id, token).update(preview=name, preview_count=count))

    def finish(self, job_id: int, *, token, now: datetime) -> bool:
        """running (this claim) → succeeded. The caller adds the images in the same transaction.

        preview_count stays: how many partial images the attempt that made the images streamed.
        """
        return bool(
            self._mine(job_id, token).update(
                status=Job.Status.SUCCEEDED,
                finished_at=now,
                reserved_cost=0,
                preview="",
                next_attempt_at=None,
                retry_reason="",
                error_code="",
                error_message="",
                **NO_CLAIM,
            )
        )

    def fail(
        self, job_id: int, *, token, code: str, message: str, lease_expired_by: datetime | None = None
    ) -> bool:
        """running (this claim) → failed, by its worker; or by the sweep, given `lease_expired_by`, only
        while the lease is still expired then (a worker that renewed in the meantime keeps its job)."""
        mine = self._mine(job_id, token)
        if lease_expired_by is not None:
            mine = mine.filter(lease_expires_at__lt=lease_expired_by)
        return bool(
            mine.update(
                status=Job.Status.FAILED,
                finished_at=timezone.now(),
                reserved_cost=0,
                error_code=code,
                error_message=message,
                retry_reason="",
                next_attempt_at=None,
                **NO_PREVIEW,
                **NO_CLAIM,
            )
        )

    def schedule_retry(self, job_id: int, *, token, code: str, reason: str, at: datetime) -> bool:
        """running (this claim) → retrying at `at`, after a transient error. The reservation stays."""
        return bool(
            self._mine(job_id, token).update(
                status=Job.Status.RETRYING,
                next_attempt_at=at,
                retry_reason=reason,
                error_code=code,
                error_message="",
                **NO_PREVIEW,
                **NO_CLAIM,
            )
        )

    def requeue(
        self, job_id: int, *, token, reason: str, lease_expired_by: datetime, extra_attempt: bool = False
    ) -> bool:
        """running with an expired lease → queued (the sweep, for a killed worker's job).

        The dead attempt's preview goes with its files, which the sweep deletes next. `extra_attempt`
        raises max_attempts by one: the dead attempt was the last but had been paid for, and the next
        one stores that answer rather than calling (the claim refuses a job out of attempts).
        """
        more = {"max_attempts": models.F("max_attempts") + 1} if extra_attempt else {}
        return bool(
            self._mine(job_id, token)
            .filter(lease_expires_at__lt=lease_expired_by)
            .update(
                **more,
                status=Job.Status.QUEUED,
                enqueued_at=lease_expired_by,
                retry_reason=reason,
                error_code="interrupted",
                next_attempt_at=None,
                **NO_PREVIEW,
                **NO_CLAIM,
            )
        )

    def resend(self, job_id: int, *, now: datetime) -> bool:
        """queued or retrying, whose message the broker refused (unsent: enqueued_at is empty) → the
        same, stamped enqueued_at `now`, so only one sweep sends it. A retrying one keeps its due time."""
        return bool(
            self.filter(pk=job_id, status__in=Job.WAITING_STATUSES, enqueued_at__isnull=True).update(
                enqueued_at=now
            )
        )

    def unsent(self, job_id: int) -> bool:
        """queued or retrying, whose message the broker refused → the same, with enqueued_at cleared, so
        the sweep's next tick sends it."""
        waiting = [Job.Status.QUEUED, Job.Status.RETRYING]
        return bool(self.filter(pk=job_id, status__in=waiting).update(enqueued_at=None))

    def cancel(self, job_id: int) -> bool:
        """queued or retrying → canceled, by a person. No worker holds it, and it holds nothing back."""
        return bool(self.filter(pk=job_id)._cancel_waiting())

    def cancel_campaign(self, campaign_id: int) -> int:
        """queued or retrying → canceled, for every waiting job of a campaign ("cancel the rest"): the
        same arrow as `cancel`, many rows in one UPDATE. Returns how many; running ones finish."""
        return self.filter(campaign_id=campaign_id)._cancel_waiting()

    def _cancel_waiting(self) -> int:
        return self.filter(status__in=[Job.Status.QUEUED, Job.Status.RETRYING]).update(
            status=Job.Status.CANCELED,
            finished_at=timezone.now(),
            reserved_cost=0,
            next_attempt_at=None,
            retry_reason="",
            error_code="",
            error_message="",
            **NO_PREVIEW,
            **NO_CLAIM,
        )

    def retry(self, job_id: int, *, reserve: Decimal, author_id: int) -> bool:
        """failed or canceled → queued, by a person: fresh attempts, deadline and `reserve` held back.

        The person who retries becomes the author: the hold, the charge and "made by" follow whoever
        spent the money. The caller has reserved `reserve` against their budgets in the same transaction.
        """
        now = timezone.now()
        return bool(
            self.filter(pk=job_id, status__in=[Job.Status.FAILED, Job.Status.CANCELED]).update(
                status=Job.Status.QUEUED,
                author_id=author_id,
                reserved_cost=reserve,
                attempts=0,
                deadline_at=Job.new_deadline(),
                enqueued_at=now,
                finished_at=None,
                overnight_batch=None,
                next_attempt_at=None,
                retry_reason="",
                error_code="",
                error_message="",
                **NO_PREVIEW,
                **NO_CLAIM,
            )
        )

    # --- The overnight lane (workspace/overnight.py): its jobs stay queued, never claimed, until their
    # batch's results are collected; a batch, not a worker's claim token, is what owns them meanwhile.

    def overnight_waiting(self) -> "JobQuerySet":
        """Overnight-lane jobs not yet in a batch: what the dispatcher gathers (not a paused campaign's)."""
        return self.filter(
            lane=Job.Lane.OVERNIGHT, status=Job.Status.QUEUED, overnight_batch__isnull=True
        ).exclude(campaign__status=PAUSED)

    def batch_assign(self, job_ids: list[int], *, batch_id: int) -> int:
        """queued (overnight, in no batch) → queued in batch `batch_id`, attempts + 1 (the batch line is
        the attempt: its files go under that attempt's prefix). Returns how many it took."""
        return (
            self.overnight_waiting()
            .filter(pk__in=job_ids)
            .update(overnight_batch_id=batch_id, attempts=models.F("attempts") + 1, started_at=timezone.now())
        )

    def batch_unassign(self, *, batch_id: int, job_ids: list[int] | None = None) -> int:
        """queued in batch `batch_id` → queued in no batch: the batch could not be sent (or these jobs
        did not fit its input file), so they wait for the next one."""
        jobs = self.filter(status=Job.Status.QUEUED, overnight_batch_id=batch_id)
        if job_ids is not None:
            jobs = jobs.filter(pk__in=job_ids)
        return jobs.update(overnight_batch=None, attempts=models.F("attempts") - 1, started_at=None)

    def _in_batch(self, job_id: int, batch_id: int) -> "JobQuerySet":
        return self.filter(pk=job_id, status=Job.Status.QUEUED, overnight_batch_id=batch_id)

    def batch_finish(self, job_id: int, *, batch_id: int, now: datetime) -> bool:
        """queued in batch `batch_id` → succeeded, when its line came back with images. The caller adds
        the images, the call and its charge in the same transaction; the batch stays named."""
        return bool(
            self._in_batch(job_id, batch_id).update(
                status=Job.Status.SUCCEEDED,
                finished_at=now,
                reserved_cost=0,
                retry_reason="",
                error_code="",
                error_message="",
                next_attempt_at=None,
            )
        )

    def batch_fail(self, job_id: int, *, batch_id: int, code: str, message: str) -> bool:
        """queued in batch `batch_id` → failed: its line failed, or the batch ended without it."""
        return bool(
            self._in_batch(job_id, batch_id).update(
                status=Job.Status.FAILED,
                finished_at=timezone.now(),
                reserved_cost=0,
                error_code=code,
                error_message=message,
                retry_reason="",
                next_attempt_at=None,
            )
        )


class Job(models.Model):
    """One request to the image service, and everything that happened to it.

    queued ──claim──▶ running ──finish──▶ succeeded
      ▲  │  ▲            │ ├──schedule_retry (transient error)──▶ retrying ──claim (when due)──▶ running
      │  │  │            │ └──fail (permanent error, out of attempts or time)──▶ failed
      │  │  └─requeue────┘  sweep: lease expired (a killed worker); or fail when out of attempts or time
      │  └──cancel──▶ canceled ◀──cancel── retrying
      └──retry (by hand)── failed / canceled

    Each arrow is one method on `Job.objects` (JobQuerySet), a single conditional UPDATE:

      claim           queued, or retrying when due → running    fresh token and lease, attempts + 1
      claim_next      the same, for the next job in turn        what a worker's message runs (fair share)
      renew           running → running                         lease keeper: a later lease_expires_at
      show_preview    running (token) → running                 the newest partial image
      finish          running (token) → succeeded               with the images, in one transaction
      fail            running (token) → failed                  worker; or sweep, if the lease expired
      schedule_retry  running (token) → retrying                next_attempt_at from the backoff
      requeue         running (token, lease expired) → queued   sweep, after a killed worker
      unsent          queued / retrying → same                  the broker refused the message: clears
                                                                enqueued_at, so the sweep sends one
      resend          queued / retrying, unsent → same          sweep: stamps enqueued_at, then sends
      cancel          queued / retrying → canceled              by a person
      retry           failed / canceled → queued                by a person: attempts, deadline, reserve
                                                                (an overnight job goes to the next batch)

    The overnight lane (Lane.OVERNIGHT) is never claimed: its jobs stay queued until beat's dispatcher
    puts them in an OpenAI batch, and leave from there by the batch's results (workspace/overnight.py):

      batch_assign    queued, in no batch → queued in a batch   attempts + 1
      batch_unassign  queued in a batch → queued, in no batch   the batch could not be sent
      batch_finish    queued in a batch → succeeded             its line's images, call and charge
      batch_fail      queued in a batch → failed                its line failed, or the batch ended
      cancel          as above                                  the batch is cancelled once none waits

    Each names its source state(s), and the claim token for a worker's own arrows, and returns whether it
    won, so two workers, a duplicate message or a sweep racing a worker never both win. The row is the
    truth; a Celery message only wakes a worker, which must win `claim` before it calls anything.

    What each state keeps: only running has a claim token and a lease, and only its attempt's preview
    (succeeded keeps the count); retrying has next_attempt_at; failed has error_message; the final states
    have finished_at and hold no reservation; an active job's retry_reason and error_code say why it is on
    a later attempt.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        RETRYING = "retrying", "Retrying"
        SUCCEEDED = "succeeded", "Done"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    class Kind(models.TextChoices):
        GENERATE = "generate", "Generation"
        EDIT = "edit", "Edit"
        # One message of a conversation (workspace.conversations): a Responses API call with the
        # image_generation tool, editing the previous turn's image.
        CONVERSE = "converse", "Conversation turn"

    class Lane(models.IntegerChoices):
        # Claimed in this order; a person waiting at the Studio goes before work nobody watches.
        INTERACTIVE = 0, "Studio"
        BULK = 1, "Bulk"
        # Never claimed by a worker: sent to OpenAI's Batch API at half price (workspace/overnight.py).
        OVERNIGHT = 2, "Overnight (Batch API)"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING, Status.RETRYING)
    WAITING_STATUSES = (Status.QUEUED, Status.RETRYING)
    FINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)
    # What was asked of the API besides the prompt, inputs and mask, in one list: the form fills these,
    # reproduce copies them, lineage compares them and the ZIP's metadata lists them.
    REQUEST_FIELDS = (
        "model",
        "size",
        "size_preset",
        "quality",
        "output_format",
        "output_compression",
        "background",
        "moderation",
        "complexity",
        "n",
        "input_fidelity",
        "frame_count",
        "frame_duration_ms",
        "svg_model",
        "svg_effort",
    )

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GENERATE)
    lane = models.PositiveSmallIntegerField(choices=Lane.choices, default=Lane.INTERACTIVE)
    # The overnight lane's batch this job was sent in (it stays named once the job ends).
    overnight_batch = models.ForeignKey(
        "OvernightBatch", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    prompt = models.TextField()

    # What was asked for: exactly the parameters sent to the API ('' means "not sent").
    model = models.CharField(max_length=64)
    size = models.CharField(max_length=16)
    size_preset = models.CharField(max_length=16, blank=True)
    quality = models.CharField(max_length=10, default="auto")
    output_format = models.CharField(max_length=8, default="png")
    output_compression = models.PositiveSmallIntegerField(null=True, blank=True)
    background = models.CharField(max_length=12, default="auto")
    moderation = models.CharField(max_length=8, default="auto")
    complexity = models.CharField(max_length=8, blank=True)
    n = models.PositiveSmallIntegerField(default=1)
    # Edits only: sent only to models that take it (never gpt-image-2).
    input_fidelity = models.CharField(max_length=8, blank=True)
    mask = models.FileField(upload_to=_image_path, max_length=255, blank=True)
    # Edits only: circles, arrows and labels drawn over the first input (a transparent PNG its size),
    # sent as `markup` to models that take it; never with a mask.
    markup = models.FileField(upload_to=_image_path, max_length=255, blank=True)
    # GIF output only (null: not sent): 2-16 frames, and each frame's delay.
    frame_count = models.PositiveSmallIntegerField(null=True, blank=True)
    frame_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # SVG output only ('' : not sent): the model that writes the SVG and its reasoning effort.
    svg_model = models.CharField(max_length=64, blank=True)
    svg_effort = models.CharField(max_length=10, blank=True)
    # Partial images streamed while a single-image job runs; the card shows the newest.
    preview = models.FileField(upload_to=_image_path, max_length=255, blank=True)
    preview_count = models.PositiveSmallIntegerField(default=0)

    # What submitting this job held back from the budgets until it ends (the estimate, in dollars).
    estimated_cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    reserved_cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=5)
    # In words a marketer understands; the technical detail is on the ApiCall rows.
    error_message = models.TextField(blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    retry_reason = models.CharField(max_length=300, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    claim_token = models.UUIDField(null=True, blank=True)
    # host:pid of the worker holding the claim, for operators chasing a stuck job.
    worker = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # What made it (workspace/campaign_models.py), kept so an output can say so for ever: the template
    # version and the values of its variables, the brand kit version, and for bulk work the campaign
    # with the CSV row (1-based) or the grid cell ({axis: value}) this job is.
    template_version = models.ForeignKey(
        "workspace.TemplateVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    brand_kit_version = models.ForeignKey(
        "workspace.BrandKitVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    variables = models.JSONField(default=dict, blank=True)
    campaign = models.ForeignKey(
        "workspace.Campaign", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    campaign_row = models.PositiveIntegerField(null=True, blank=True)
    cell = models.JSONField(default=dict, blank=True)

    objects = JobQuerySet.as_manager()

    # The fields that record what made a job, which job_create and edit_create accept as `origin`.
    ORIGIN_FIELDS = (
        "template_version",
        "brand_kit_version",
        "variables",
        "campaign",
        "campaign_row",
        "cell",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at", "-id"], name="job_project_recent"),
            models.Index(fields=["campaign", "status"], name="job_campaign_status"),
            models.Index(
                fields=["status", "lease_expires_at"],
                name="job_unfinished",
                condition=Q(status__in=["queued", "running", "retrying"]),
            ),
            # claim_next: each person's next job in turn, and how many they have running.
            models.Index(
                fields=["author", "lane", "enqueued_at", "id"],
                name="job_waiting_turn",
                condition=Q(status__in=["queued", "retrying"]),
            ),
            models.Index(fields=["author"], name="job_running_author", condition=Q(status="running")),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("job_detail", args=[self.project_id, self.pk])

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def waiting_behind(self) -> int:
        """The author's waiting jobs that go before this queued one (a person's jobs go in order). The
        polled card's query brings it along (hot_queries.job_card); elsewhere it is one count."""
        if "_waiting_behind" not in self.__dict__:
            queued = self.status == self.Status.QUEUED
            self.__dict__["_waiting_behind"] = Job.objects.waiting_ahead(self) if queued else 0
        return self.__dict__["_waiting_behind"]

    @waiting_behind.setter
    def waiting_behind(self, value: int) -> None:
        self.__dict__["_waiting_behind"] = value

    @property
    def can_cancel(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RETRYING)

    @property
    def can_retry(self) -> bool:
        return self.status in (self.Status.FAILED, self.Status.CANCELED)

    @property
    def width(self) -> int:
        return int(self.size.partition("x")[0]) if self.size != "auto" else 1024

    @property
    def height(self) -> int:
        return int(self.size.partition("x")[2]) if self.size != "auto" else 1024

    @property
    def is_edit(self) -> bool:
        return self.kind == self.Kind.EDIT

    @property
    def is_overnight(self) -> bool:
        return self.lane == self.Lane.OVERNIGHT

    @property
    def is_turn(self) -> bool:
        return self.kind == self.Kind.CONVERSE

    @property
    def streams_previews(self) -> bool:
        """Single-image jobs stream a partial image to show while the final one is drawn; GIF and SVG
        answers cannot be streamed at all."""
        if self.n != 1 or self.output_format in formats.UNSTREAMABLE:
            return False
        from workspace import imagemodels  # imagemodels reads this module's rows

        model = imagemodels.get_model(self.model)
        return model is None or model.streaming

    def variable_items(self) -> list[tuple[str, str]]:
        """The template's variables and their values, in the template's order (JSONB keeps keys in its
        own order, not the order they were written)."""
        names = self.template_version.variables if self.template_version_id else []
        values = self.variables or {}
        return [(name, values[name]) for name in names if name in values] + [
            (name, value) for name, value in values.items() if name not in names
        ]

    def request_fields(self) -> dict:
        """This job's REQUEST_FIELDS and their values, as a form's job_params() gives them."""
        return {name: getattr(self, name) for name in self.REQUEST_FIELDS}

    def api_params(self) -> dict:
        """The request exactly as sent: only parameters this model and endpoint accept, model always."""
        params: dict = {
            "model": self.model,
            "prompt": self.prompt,
            "n": self.n,
            "size": self.size,
            "quality": self.quality,
            "output_format": self.output_format,
            "background": self.background,
        }
        if self.is_edit:
            # The edits endpoint has no moderation field; input_fidelity only where the model takes it.
            if self.input_fidelity:
                params["input_fidelity"] = self.input_fidelity
        else:
            params["moderation"] = self.moderation
        if self.output_compression is not None and self.output_format in formats.COMPRESSIBLE:
            params["output_compression"] = self.output_compression
        if self.complexity:
            params["complexity"] = self.complexity
        if self.output_format == "gif":
            if self.frame_count is not None:
                params["frame_count"] = self.frame_count
            if self.frame_duration_ms is not None:
                params["frame_duration_ms"] = self.frame_duration_ms
        if self.output_format == "svg" and self.svg_model:
            svg: dict = {"model": self.svg_model}
            if self.svg_effort:
                svg["reasoning"] = {"effort": self.svg_effort}
            params["svg"] = svg
        return params

    @classmethod
    def new_deadline(cls):
        return timezone.now() + timedelta(seconds=settings.JOB_DEADLINE_SECONDS)

    @classmethod
    def new_claim_token(cls) -> uuid.UUID:
        return uuid.uuid4()

    @property
    def folder(self) -> str:
        """Where the job's files are stored: derived from ids, never from anything a user typed."""
        return f"projects/{self.project_id}/jobs/{self.pk}"

    def attempt_prefix(self, attempt: int) -> str:
        # The attempt is in the name so a late, abandoned attempt can never overwrite or delete the files of
        # the attempt that won, and the files of a killed attempt can be found and removed.
        return f"{self.folder}/a{attempt}-"

    def answer_prefix(self, attempt: int) -> str:
        """Where an attempt keeps the raw images it was paid for until they are stored: outside its
        attempt_prefix, so the sweep's clean-up of a killed attempt leaves them for the next one."""
        return f"{self.folder}/received-a{attempt}-"


class ApiCall(models.Model):
    """One HTTP call to the image service: what it cost in tokens and what the service said."""

    class Outcome(models.TextChoices):
        OK = "ok", "Succeeded"
        TRANSIENT = "transient", "Failed, retried"
        PERMANENT = "permanent", "Failed"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="api_calls")
    attempt = models.PositiveSmallIntegerField()
    endpoint = models.CharField(max_length=40)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    request_id = models.CharField(max_length=100, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField()
    error_type = models.CharField(max_length=80, blank=True)
    error_code = models.CharField(max_length=80, blank=True)
    error_detail = models.TextField(blank=True)
    usage = models.JSONField(null=True, blank=True)
    input_text_tokens = models.PositiveIntegerField(null=True, blank=True)
    input_image_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_image_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_text_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    # What the service says it produced (it resolves "auto" and may differ from what was asked).
    response_size = models.CharField(max_length=16, blank=True)
    response_quality = models.CharField(max_length=10, blank=True)
    response_background = models.CharField(max_length=12, blank=True)
    response_format = models.CharField(max_length=8, blank=True)
    # The answered images' raw bytes, as storage names, written with this row and its charge and cleared
    # once the job's images are stored: an attempt that finds them here stores them instead of paying for
    # another call (its worker died between the charge and the store).
    received = models.JSONField(default=list, blank=True)
    # A line of this overnight batch rather than a call of our own: one row per job and batch, so
    # collecting the batch's results again (a poll that died halfway) never records or charges twice.
    overnight_batch = models.ForeignKey(
        "OvernightBatch", null=True, blank=True, on_delete=models.PROTECT, related_name="calls"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "attempt", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "overnight_batch"],
                condition=Q(overnight_batch__isnull=False),
                name="one_call_per_batch_line",
            )
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} for job {self.job_id} attempt {self.attempt}: {self.outcome}"


class OvernightBatchQuerySet(models.QuerySet):
    """An overnight batch's state changes (drawn on OvernightBatch), each one conditional UPDATE."""

    def open(self) -> "OvernightBatchQuerySet":
        return self.filter(collected_at__isnull=True)

    def sent(self, batch_id: int, *, openai_batch_id: str, status: str) -> bool:
        """preparing → OpenAI's status: the batch was created there."""
        return bool(
            self.open()
            .filter(pk=batch_id, status=OvernightBatch.PREPARING)
            .update(openai_batch_id=openai_batch_id, status=status, sent_at=timezone.now())
        )

    def not_sent(self, batch_id: int, *, errors: str, files: list[str]) -> bool:
        """preparing → not_sent, closed: the upload or the create was refused (its jobs wait again).
        `files`: what was uploaded for it before then, to be deleted."""
        now = timezone.now()
        return bool(
            self.open()
            .filter(pk=batch_id, status=OvernightBatch.PREPARING)
            .update(
                status=OvernightBatch.NOT_SENT,
                errors=errors,
                finished_at=now,
                collected_at=now,
                files_to_delete=files,
            )
        )

    def polled(self, batch_id: int, *, status: str, completed: int, failed: int, errors: str) -> bool:
        """open → what OpenAI says now (its status and counts)."""
        fields = {"status": status, "completed_count": completed, "failed_count": failed}
        if errors:
            fields["errors"] = errors
        return bool(
            self.open()
            .exclude(status__in=[OvernightBatch.PREPARING, OvernightBatch.NOT_SENT])
            .filter(pk=batch_id)
            .update(polled_at=timezone.now(), **fields)
        )

    def collected(
        self,
        batch_id: int,
        *,
        output_file_id: str,
        error_file_id: str,
        finished_at: datetime,
        files: list[str],
    ) -> bool:
        """ended at OpenAI → collected: every line's result is stored and charged, every job has ended.
        `files`: every file at OpenAI the batch leaves (its input, images, output and error files), to
        be deleted from now on."""
        return bool(
            self.open()
            .filter(pk=batch_id, status__in=OvernightBatch.FINAL_STATUSES)
            .update(
                output_file_id=output_file_id,
                error_file_id=error_file_id,
                finished_at=finished_at,
                collected_at=timezone.now(),
                files_to_delete=files,
            )
        )

    def with_files_to_delete(self) -> "OvernightBatchQuerySet":
        """Closed batches that still leave files at OpenAI (an open batch's files are in use)."""
        return self.filter(collected_at__isnull=False).exclude(files_to_delete=[])

    def files_deleted(self, batch_id: int, *, left: list[str]) -> bool:
        """Closed → the files still to delete are `left` (those whose delete failed, tried again later)."""
        return bool(self.filter(pk=batch_id, collected_at__isnull=False).update(files_to_delete=left))


class OvernightBatch(models.Model):
    """One OpenAI batch (the Batch API) carrying overnight-lane jobs of one project to one endpoint.

    preparing ──sent──▶ validating / in_progress / finalizing / cancelling (OpenAI's words, polled)
        │                   └──▶ completed / expired / cancelled / failed ──collected──▶ (collected_at)
        └──▶ not_sent (the upload or the create was refused; its jobs went back to wait)

    The row is written, and its jobs linked to it, before anything is uploaded, so a crash never leaves
    jobs in a batch nobody records. `collected_at` is set once every line's result is stored and charged.
    Each arrow is a method of `OvernightBatch.objects`: sent, not_sent, polled, collected. Once closed,
    the files it left at OpenAI are deleted (`files_to_delete`, emptied by `files_deleted`).
    """

    PREPARING = "preparing"
    NOT_SENT = "not_sent"
    # OpenAI's final statuses: the output and error files are ready to collect.
    FINAL_STATUSES = ("completed", "expired", "cancelled", "failed")
    STATUS_LABELS = {
        "preparing": "being sent",
        "not_sent": "not sent",
        "validating": "checked by OpenAI",
        "in_progress": "in progress at OpenAI",
        "finalizing": "finishing at OpenAI",
        "cancelling": "being cancelled",
        "completed": "done",
        "expired": "expired",
        "cancelled": "cancelled",
        "failed": "refused by OpenAI",
    }

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="overnight_batches")
    endpoint = models.CharField(max_length=40)
    status = models.CharField(max_length=20, default=PREPARING)
    openai_batch_id = models.CharField(max_length=100, blank=True)
    input_file_id = models.CharField(max_length=100, blank=True)
    output_file_id = models.CharField(max_length=100, blank=True)
    error_file_id = models.CharField(max_length=100, blank=True)
    # Files uploaded for edit lines' input images and masks (the lines name them by file_id).
    image_file_ids = models.JSONField(default=list, blank=True)
    # Once closed: the ids of its files still stored at OpenAI (billed storage, customers' images),
    # deleted by the poll; a delete that fails stays here and is tried again at the next poll.
    files_to_delete = models.JSONField(default=list, blank=True)
    line_count = models.PositiveIntegerField(default=0)
    input_bytes = models.PositiveBigIntegerField(default=0)
    completed_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    # Why OpenAI refused or could not run the batch as a whole, in its words (operators read this).
    errors = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    polled_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    collected_at = models.DateTimeField(null=True, blank=True)

    objects = OvernightBatchQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["created_at"], name="overnight_open", condition=Q(collected_at__isnull=True))
        ]

    def __str__(self) -> str:
        return f"Overnight batch {self.pk} ({self.status})"

    @property
    def status_label(self) -> str:
        return self.STATUS_LABELS.get(self.status, self.status.replace("_", " "))


# Columns the database keeps but no model declares, so the ORM never selects or inserts them; the
# database fills them itself. workspace_image.search: the job's prompt as a tsvector for the gallery's
# search, Postgres only (migration 0007, read by gallery._matching).
UNDECLARED_COLUMNS = {"workspace_image": {"search"}}


class Image(models.Model):
    """An output of a job. Its parents are its job's inputs; its children, outputs of jobs that used it."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="images")
    # Denormalised so galleries filter by project without a join.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    index = models.PositiveSmallIntegerField()
    file = models.FileField(upload_to=_image_path, max_length=255)
    thumbnail = models.FileField(upload_to=_image_path, max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8)
    bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    # After a masked edit: the output pasted onto the original so every pixel outside the mask is
    # the original's. The raw model output stays in `file`.
    composite = models.FileField(upload_to=_image_path, max_length=255, blank=True)
    composite_thumbnail = models.FileField(upload_to=_image_path, max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    # Copied from the job so the gallery filters on one table with its indexes.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="images"
    )
    model = models.CharField(max_length=64, blank=True)
    kind = models.CharField(max_length=10, blank=True)

    class Review(models.TextChoices):
        DRAFT = "draft", "Draft"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    review_state = models.CharField(max_length=10, choices=Review.choices, default=Review.DRAFT)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    # Deleting hides an image at once and can be undone for a while; lineage keeps the row.
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When beat deleted its files, DELETE_UNDO_MINUTES after the delete (review.images_purge). The row
    # stays, its file names emptied, so lineage still shows where later images came from.
    purged_at = models.DateTimeField(null=True, blank=True)

    objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="one_image_per_job_index")]
        indexes = [
            models.Index(
                fields=["project", "-created_at", "-id"],
                name="image_project_recent",
                condition=Q(deleted_at__isnull=True),
            ),
            models.Index(fields=["project", "author", "-created_at", "-id"], name="image_project_author"),
            models.Index(
                fields=["project", "review_state", "-created_at", "-id"], name="image_project_review"
            ),
        ]

    def __str__(self) -> str:
        return f"Image {self.pk} of job {self.job_id}"

    def get_absolute_url(self) -> str:
        return reverse("image_detail", args=[self.project_id, self.pk])

    @property
    def content_type(self) -> str:
        return formats.content_type(self.format)

    @property
    def credential(self) -> "ContentCredential | None":
        try:
            return self.content_credential
        except ObjectDoesNotExist:
            return None

    @property
    def download_name(self) -> str:
        return f"atelier-{self.project_id}-{self.job_id}-{self.index + 1}.{formats.extension(self.format)}"

    @property
    def editable(self) -> bool:
        """Only still raster images can be an edit's input: a GIF or SVG is what a model makes, not takes."""
        return self.format in formats.RASTER


class ImageModelSpec(models.Model):
    """One image model the workspace can call: what it accepts, as rows an admin adds and edits.

    Seeded (migration 0015) from the installed SDK's type docstrings. `workspace.imagemodels` reads these
    rows (cached briefly) for the forms, the browser script, the request, the estimate and the stand-in.
    A retired model stays so old jobs and lineage still read, but it cannot be chosen. Prices stay in
    `Price`, by the same name (or the family's name for a snapshot without one of its own).
    """

    name = models.CharField(
        max_length=64, unique=True, help_text="The model name sent to OpenAI, e.g. gpt-image-2-2026-04-21."
    )
    label = models.CharField(max_length=80)
    blurb = models.CharField(max_length=200, blank=True)
    family = models.CharField(
        max_length=64,
        blank=True,
        help_text="The model this is a snapshot of: its token tables (and price, if none of its own) apply.",
    )
    position = models.PositiveSmallIntegerField(default=100, help_text="Order in the model menu.")
    sizes = models.JSONField(default=list, help_text='Standard sizes, e.g. ["1024x1024", "1536x1024"].')
    custom_sizes = models.BooleanField(default=False, help_text="Takes any WIDTHxHEIGHT within the rules.")
    size_multiple = models.PositiveSmallIntegerField(default=16)
    min_pixels = models.PositiveIntegerField(default=655_360)
    max_pixels = models.PositiveIntegerField(default=8_294_400)
    max_edge = models.PositiveSmallIntegerField(default=3840)
    max_ratio = models.PositiveSmallIntegerField(default=3)
    qualities = models.JSONField(default=list)
    transparent = models.BooleanField(default=True)
    input_fidelity = models.JSONField(
        default=list, blank=True, help_text="Values edits may send; empty: the parameter is never sent."
    )
    complexity = models.JSONField(
        default=list, blank=True, help_text="Planning-effort values; empty: not offered."
    )
    gif = models.BooleanField(default=False, help_text="Animated GIF output (a preview OpenAI gates).")
    svg = models.BooleanField(default=False, help_text="SVG output (a preview OpenAI gates).")
    svg_authors = models.JSONField(
        default=list, blank=True, help_text="Models that may author the SVG; the first is the default."
    )
    markup = models.BooleanField(default=False, help_text="Edits take a markup overlay.")
    streaming = models.BooleanField(default=True)
    batch = models.BooleanField(default=True, help_text="Accepted by the Batch API.")
    retired_on = models.DateField(
        null=True, blank=True, help_text="From this day the model cannot be chosen; old images stay."
    )
    retired_note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["position", "name"]
        verbose_name = "image model"

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        _registry_changed()

    def delete(self, *args, **kwargs):
        result = super().delete(*args, **kwargs)
        _registry_changed()
        return result


def _registry_changed() -> None:
    from workspace import imagemodels  # imagemodels reads this model; imported here to avoid a cycle

    imagemodels.invalidate()


MONEY = {"max_digits": 14, "decimal_places": 6}
RATE = {
    "max_digits": 12,
    "decimal_places": 6,
    "validators": [MinValueValidator(0, "A price cannot be negative.")],
    "help_text": "US dollars per million tokens, up to 6 decimal places.",
}
MAX_MONTHLY_BUDGET = 1_000_000


class Price(models.Model):
    """What OpenAI charges a model per million tokens, from a date on. Edited by admins."""

    model = models.CharField(max_length=64)
    effective_from = models.DateField()
    text_input = models.DecimalField(**RATE)
    cached_text_input = models.DecimalField(**RATE)
    image_input = models.DecimalField(**RATE)
    cached_image_input = models.DecimalField(**RATE)
    image_output = models.DecimalField(**RATE)
    text_output = models.DecimalField(**RATE)
    # OpenAI's Batch API charges a fixed share of these rates (half, since it launched) for every model:
    # one factor per price row rather than six more rates that must always be half of the six above.
    batch_factor = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.5"),
        validators=[
            MinValueValidator(0, "A share cannot be negative."),
            MaxValueValidator(1, "The batch price is a share of the price, at most 1."),
        ],
        help_text="What the Batch API (the overnight lane) charges, as a share of these rates: 0.5 is half.",
    )
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="one_price_per_model_day")
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from}"

    RATE_FIELDS = (
        "text_input",
        "cached_text_input",
        "image_input",
        "cached_image_input",
        "image_output",
        "text_output",
    )

    def rates(self, *, batch: bool = False) -> dict[str, str]:
        """The rates as charged: with `batch`, the Batch API's share of each, and the share itself."""
        if not batch:
            return {name: str(getattr(self, name)) for name in self.RATE_FIELDS}
        rates = {name: str(getattr(self, name) * self.batch_factor) for name in self.RATE_FIELDS}
        return rates | {"batch_factor": str(self.batch_factor)}


class LedgerEntry(models.Model):
    """One charge: an API call that returned usage. Append-only; unique per call and line, so never charged
    twice. Most calls have one line (the image model's tokens); an SVG answer has a second for its author
    model's own usage (`svg_usage`), priced at that model's rates."""

    class Part(models.TextChoices):
        # A call is priced in parts: an Images API call has one; a Responses API call has the image
        # tool's tokens at the image model's rates and the mainline model's tokens at its own.
        IMAGE = "image", "Image model"
        MAINLINE = "mainline", "Mainline model"
        # An SVG output's author model (svg_usage), priced at its own text rates.
        SVG_AUTHOR = "svg_author", "SVG author"

    api_call = models.ForeignKey(ApiCall, on_delete=models.PROTECT, related_name="charges")
    part = models.CharField(max_length=12, choices=Part.choices, default=Part.IMAGE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="charges")
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="charges")
    job = models.ForeignKey(Job, on_delete=models.PROTECT, related_name="charges")
    model = models.CharField(max_length=64)
    request_id = models.CharField(max_length=100, blank=True)
    text_input_tokens = models.PositiveIntegerField(default=0)
    cached_text_input_tokens = models.PositiveIntegerField(default=0)
    image_input_tokens = models.PositiveIntegerField(default=0)
    cached_image_input_tokens = models.PositiveIntegerField(default=0)
    image_output_tokens = models.PositiveIntegerField(default=0)
    text_output_tokens = models.PositiveIntegerField(default=0)
    image_count = models.PositiveSmallIntegerField(default=0)
    # The rates used, copied, so a later price change never rewrites history.
    price = models.ForeignKey(Price, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    rates = models.JSONField(default=dict, blank=True)
    # False: the model had no price in force, so the call was charged at a stand-in price (see spend.charge).
    priced = models.BooleanField(default=True)
    # True: made in demo mode by the local stand-in, so no one paid OpenAI; kept apart from real money.
    simulated = models.BooleanField(default=False)
    # True: a line of an overnight batch, charged at the price's batch_factor (rates holds what applied).
    batch = models.BooleanField(default=False)
    cost = models.DecimalField(**MONEY)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        # Never charged twice: one line per part of a call, whoever writes it how often.
        constraints = [models.UniqueConstraint(fields=["api_call", "part"], name="one_charge_per_call_part")]
        indexes = [
            models.Index(fields=["user", "created_at"], name="ledger_user_time"),
            models.Index(fields=["project", "created_at"], name="ledger_project_time"),
            models.Index(fields=["created_at"], name="ledger_time"),
        ]

    def __str__(self) -> str:
        return f"${self.cost} for call {self.api_call_id}"

    @property
    def total_tokens(self) -> int:
        return (
            self.text_input_tokens
            + self.cached_text_input_tokens
            + self.image_input_tokens
            + self.cached_image_input_tokens
            + self.image_output_tokens
            + self.text_output_tokens
        )


class Budget(models.Model):
    """A monthly limit in dollars, for one user, one project, or (neither) the whole workspace.

    The row is also the lock that makes check-and-reserve one atomic step: submits for the same budget
    queue on SELECT ... FOR UPDATE, and each computes what is used from the ledger and the reservations
    of unfinished jobs, so there is no running total that could drift.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="budget"
    )
    project = models.OneToOneField(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="budget"
    )
    monthly_limit = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        validators=[
            MinValueValidator(0, "A budget cannot be negative."),
            MaxValueValidator(
                MAX_MONTHLY_BUDGET, f"That is more than ${MAX_MONTHLY_BUDGET:,} a month; check it."
            ),
        ],
        help_text="US dollars per calendar month. 0 stops all new jobs.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # Neither user nor project is the workspace-wide cap; both at once means nothing.
            models.CheckConstraint(
                condition=Q(user__isnull=True) | Q(project__isnull=True),
                name="budget_for_user_or_project",
                violation_error_message="Choose a person or a project, not both.",
            ),
            # At most one workspace-wide row: a unique index over a constant, on those rows alone.
            models.UniqueConstraint(
                models.Value(True),
                condition=Q(user__isnull=True, project__isnull=True),
                name="one_workspace_budget",
                violation_error_message="There is already a workspace budget; change that one instead.",
            ),
            models.CheckConstraint(condition=Q(monthly_limit__gte=0), name="budget_not_negative"),
        ]

    def __str__(self) -> str:
        return f"${self.monthly_limit}/month for {self.user or self.project or 'the whole workspace'}"

    @property
    def is_workspace(self) -> bool:
        return self.user_id is None and self.project_id is None


class ReferenceQuerySet(models.QuerySet):
    def in_library(self) -> "ReferenceQuerySet":
        return self.filter(removed_at__isnull=True)


class Reference(models.Model):
    """An image uploaded to a project's library, verified and re-encoded without metadata.

    Removing it from the library hides it there; images made from it still show it in their lineage.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="references")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=120)
    file = models.FileField(upload_to=_image_path, max_length=255)
    thumbnail = models.FileField(upload_to=_image_path, max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8)
    bytes = models.PositiveBigIntegerField()
    uploaded_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)

    objects = ReferenceQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def content_type(self) -> str:
        return formats.content_type(self.format)


class JobInput(models.Model):
    """One input of an edit job, in the order sent (the first is the image being edited)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="inputs")
    position = models.PositiveSmallIntegerField()
    image = models.ForeignKey(
        Image, null=True, blank=True, on_delete=models.PROTECT, related_name="used_as_input"
    )
    reference = models.ForeignKey(
        Reference, null=True, blank=True, on_delete=models.PROTECT, related_name="used_as_input"
    )

    class Meta:
        ordering = ["job", "position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="one_input_per_position"),
            models.CheckConstraint(
                condition=Q(image__isnull=False, reference__isnull=True)
                | Q(image__isnull=True, reference__isnull=False),
                name="input_is_image_or_reference",
            ),
        ]
        indexes = [models.Index(fields=["image"], name="jobinput_image")]

    def __str__(self) -> str:
        return f"input {self.position} of job {self.job_id}"

    @property
    def source(self):
        return self.image or self.reference


class Favourite(models.Model):
    """One person's star on an image; everyone has their own."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="favourites")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="favourites")
    created_at = models.DateTimeField(default=timezone.now)
    # Copied from the image (neither ever changes) so "my favourites" walks one person's stars in
    # gallery order on favourite_user_recent, instead of fetching every starred image to sort them.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    image_created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "image"], name="one_star_per_person")]
        indexes = [
            models.Index(
                fields=["user", "project", "-image_created_at", "-image"], name="favourite_user_recent"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} likes image {self.image_id}"

    @classmethod
    def of(cls, *, user, image: Image) -> "Favourite":
        return cls(user=user, image=image, project_id=image.project_id, image_created_at=image.created_at)


class Comment(models.Model):
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField(max_length=4000)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"comment by {self.author} on image {self.image_id}"


class AuditEvent(models.Model):
    """One action that moved money or access: who did what to which object, when, before and after.

    Append-only: written by `workspace.audit.record` alone, never changed or deleted (save refuses an
    update, delete refuses outright; the admin only reads). Actor and project survive their rows'
    deletion as names, so the trail outlives what it is about.
    """

    class Action(models.TextChoices):
        MEMBER_ADDED = "member.added", "Member added"
        MEMBER_ROLE = "member.role", "Role changed"
        MEMBER_REMOVED = "member.removed", "Member removed"
        BUDGET_CHANGED = "budget.changed", "Budget changed"
        BUDGET_DELETED = "budget.deleted", "Budget deleted"
        PRICE_CHANGED = "price.changed", "Price changed"
        PRICE_DELETED = "price.deleted", "Price deleted"
        IMAGE_DELETED = "image.deleted", "Image deleted"
        IMAGE_RESTORED = "image.restored", "Image restored"
        IMAGE_PURGED = "image.purged", "Image files purged"
        LOCKOUT = "auth.lockout", "Sign-in locked out"
        WEBHOOK_ADDED = "webhook.added", "Webhook added"
        WEBHOOK_REMOVED = "webhook.removed", "Webhook removed"
        WEBHOOK_ROTATED = "webhook.rotated", "Webhook secret rotated"

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Empty for the system (beat's purge); kept as written if the user is later deleted.
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=40, choices=Action.choices)
    target_type = models.CharField(max_length=40)
    target_id = models.CharField(max_length=64)
    target_label = models.CharField(max_length=200, blank=True)
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    project_name = models.CharField(max_length=120, blank=True)
    before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="audit_recent"),
            models.Index(fields=["action", "-created_at", "-id"], name="audit_action_recent"),
            models.Index(fields=["project", "-created_at", "-id"], name="audit_project_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.action} on {self.target_type} {self.target_id} by {self.actor_name or 'system'}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only.")

    def changes(self) -> list[tuple[str, object, object]]:
        """(field, before, after) for every field either side names, for the audit page."""
        before, after = self.before or {}, self.after or {}
        return [
            (name, before.get(name, "–"), after.get(name, "–")) for name in dict.fromkeys([*before, *after])
        ]


class Conversation(models.Model):
    """A thread of directed edits of one image through the Responses API (workspace.conversations).

    Each turn is a job; the thread names the mainline model that reads the messages and the image model
    the image_generation tool is told to use (always explicit: the tool's default has changed under
    people before). A thread branched from a turn of another starts from that turn's image and response.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="conversations")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    root_image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="conversations")
    branched_from = models.ForeignKey(
        "Turn", null=True, blank=True, on_delete=models.SET_NULL, related_name="branches"
    )
    mainline_model = models.CharField(max_length=64)
    image_model = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Conversation {self.pk} on image {self.root_image_id}"

    def get_absolute_url(self) -> str:
        return reverse("conversation", args=[self.project_id, self.pk])


class Turn(models.Model):
    """One message of a conversation and what came back: its job, its response id and its image.

    `parent` is the turn whose response this one continues (previous_response_id) and whose image it
    edits; the first turn of a fresh thread has none and sends `source_image` itself.
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveSmallIntegerField()
    message = models.TextField(max_length=4000)
    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="turn")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    source_image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="+")
    response_id = models.CharField(max_length=100, blank=True)
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["conversation", "index"]
        constraints = [models.UniqueConstraint(fields=["conversation", "index"], name="one_turn_per_index")]

    def __str__(self) -> str:
        return f"turn {self.index} of conversation {self.conversation_id}"


class ContentCredential(models.Model):
    """What OpenAI's content provenance check said about one original (an output or an upload).

    Checked once, after the file is stored, by its own task (workspace.provenance): a failed check is
    retried with backoff and never touches the job. `checked_at` empty means not (yet) answered.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Not checked yet"
        CHECKED = "checked", "Checked"
        FAILED = "failed", "Could not be checked"

    image = models.OneToOneField(
        Image, null=True, blank=True, on_delete=models.CASCADE, related_name="content_credential"
    )
    reference = models.OneToOneField(
        "Reference", null=True, blank=True, on_delete=models.CASCADE, related_name="content_credential"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    c2pa_outcome = models.CharField(max_length=20, blank=True)
    validation_state = models.CharField(max_length=20, blank=True)
    issuer = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=64, blank=True)
    generated_at = models.CharField(max_length=40, blank=True)
    synthid_outcome = models.CharField(max_length=20, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # When a pending check's message is due to have run (sent + its delay): past this and still pending,
    # the message was lost (a Redis restart), and the credentials sweep sends it again.
    next_check_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(image__isnull=False, reference__isnull=True)
                | Q(image__isnull=True, reference__isnull=False),
                name="credential_of_image_or_reference",
            )
        ]

    def __str__(self) -> str:
        owner = f"image {self.image_id}" if self.image_id else f"upload {self.reference_id}"
        return f"credential of {owner}"

    @property
    def verdict(self) -> str:
        """verified, invalid, missing, pending or unknown: what a person is told first."""
        if self.state == self.State.PENDING:
            return "pending"
        if self.state == self.State.FAILED:
            return "unknown"
        if self.validation_state in ("trusted", "valid"):
            return "verified"
        if self.validation_state == "invalid":
            return "invalid"
        return "missing"

    def as_metadata(self) -> dict:
        return {
            "verdict": self.verdict,
            "c2pa_outcome": self.c2pa_outcome,
            "validation_state": self.validation_state,
            "issuer": self.issuer,
            "model": self.model,
            "generated_at": self.generated_at,
            "synthid_outcome": self.synthid_outcome,
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
        }


# Webhook endpoints, deliveries and attempts live in their own module; imported here so Django finds them.
# So do brand kits, prompt templates and campaigns (campaign_models).
# The API's rows live with the API (workspace/api/models.py); imported here so the app registers them.
from workspace.api.models import ApiToken, ApiTokenJob, IdempotencyRecord  # noqa: E402, F401
from workspace.campaign_models import (  # noqa: E402, F401
    BrandKit,
    BrandKitVersion,
    Campaign,
    PromptTemplate,
    TemplateVersion,
)
from workspace.webhook_models import WebhookAttempt, WebhookDelivery, WebhookEndpoint  # noqa: E402, F401
