"""A queued campaign while it runs: its progress, pause, resume, cancel the rest, retry the failed,
its end (campaign.finished), and its images as a ZIP named by a column.

Jobs change state only through Job.objects' transitions; a campaign's own status changes here, each
one conditional UPDATE naming the state it leaves, so two owners clicking at once never both win.
Pausing leaves the jobs queued, holding their reservation: the claims skip jobs of a paused campaign
(models._not_paused), and resuming wakes the workers again.
"""

import re
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from workspace import jobs, queue, webhooks
from workspace.campaign_models import Campaign
from workspace.models import Image, Job, LedgerEntry

ZERO = Decimal(0)


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    running: int
    waiting: int
    failed: int
    canceled: int
    cost: Decimal  # charged so far, from the ledger
    held: Decimal  # still reserved by unfinished jobs

    @property
    def ended(self) -> int:
        return self.done + self.failed + self.canceled

    @property
    def percent(self) -> int:
        return int(self.ended * 100 / self.total) if self.total else 0


def progress(campaign: Campaign) -> Progress:
    """Counts by state and the money, in two aggregate queries whatever the campaign's size."""
    by = Job.Status
    counts = Job.objects.filter(campaign=campaign).aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(status=by.SUCCEEDED)),
        running=Count("id", filter=Q(status=by.RUNNING)),
        waiting=Count("id", filter=Q(status__in=Job.WAITING_STATUSES)),
        failed=Count("id", filter=Q(status=by.FAILED)),
        canceled=Count("id", filter=Q(status=by.CANCELED)),
        held=Coalesce(Sum("reserved_cost"), ZERO),
    )
    cost = LedgerEntry.objects.filter(job__campaign=campaign).aggregate(total=Coalesce(Sum("cost"), ZERO))
    return Progress(cost=cost["total"], **counts)


def _wake(campaign: Campaign) -> None:
    waiting = list(
        Job.objects.filter(campaign=campaign, status__in=Job.WAITING_STATUSES)
        .order_by("id")
        .values_list("pk", flat=True)[: queue.WAKE_MESSAGES]
    )
    transaction.on_commit(lambda: [queue.send_job(job_id) for job_id in waiting])


def campaign_pause(*, campaign: Campaign) -> bool:
    """active → paused: no waiting job of it is claimed until it resumes; running ones finish."""
    return Campaign.objects.pause(campaign.pk)


def campaign_resume(*, campaign: Campaign) -> bool:
    """paused → active, and wake the workers for its waiting jobs."""
    with transaction.atomic():
        won = Campaign.objects.resume(campaign.pk)
        if won:
            _wake(campaign)
    if won:
        campaign_settle(campaign_id=campaign.pk)  # paused while its last job ended
    return bool(won)


def campaign_cancel(*, campaign: Campaign) -> int:
    """Cancel every job not yet started (their reservations go back to the budgets); running ones
    finish. Returns how many were canceled. The campaign ends as canceled once nothing runs."""
    with transaction.atomic():
        Campaign.objects.cancel(campaign.pk)
        canceled = Job.objects.cancel_campaign(campaign.pk)
    _finish_if_done(campaign.pk, canceled=True)
    return canceled


def campaign_retry_failed(*, campaign: Campaign, actor) -> int:
    """Queue the failed jobs again (jobs.job_retry each: its estimate reserved, `actor` charged,
    the campaign running again with the first one queued; see campaign_reopen). Raises
    spend.BudgetExceeded at the first that no longer fits (the ones before it stay queued; if none
    was, the campaign is left as it was). A row whose model has been retired since is left failed
    (it would only fail again). Returns how many were queued."""
    failed = list(
        Job.objects.filter(campaign=campaign, status=Job.Status.FAILED).order_by("campaign_row", "id")
    )
    if not failed:
        return 0
    retried = 0
    try:
        for job in failed:
            try:
                retried += jobs.job_retry(job=job, actor=actor)
            except jobs.ModelRetired:
                continue
    finally:
        campaign_settle(campaign_id=campaign.pk)
    return retried


def campaign_reopen(*, campaign_id: int) -> bool:
    """A finished or canceled campaign runs again: called by jobs.job_retry for one of its jobs, in
    that transaction, so a refused reservation (or a job someone else queued first) rolls it back."""
    return Campaign.objects.reopen(campaign_id)


def job_requeued(*, job_id: int) -> None:
    """A person queued a campaign's job again (jobs.job_retry, in its transaction). Job.objects.retry
    gives the Studio's deadline; the row waits behind the rest of the bulk lane as when it was first
    queued, so it gets a campaign row's time to wait (before the commit that wakes a worker)."""
    Job.objects.filter(pk=job_id).update(deadline_at=campaign_deadline())


def campaign_deadline():
    return timezone.now() + timedelta(seconds=settings.CAMPAIGN_JOB_DEADLINE_SECONDS)


def _unfinished(campaign_id: int) -> Exists:
    return Exists(Job.objects.filter(campaign_id=campaign_id, status__in=Job.ACTIVE_STATUSES))


def _finish_if_done(campaign_id: int, *, canceled: bool) -> bool:
    """With no job left to run, the campaign ends (Campaign.objects.finish), with the
    campaign.finished event in the same transaction."""
    with transaction.atomic():
        won = Campaign.objects.finish(
            campaign_id, unfinished_jobs=_unfinished(campaign_id), canceled=canceled
        )
        if won:
            campaign = Campaign.objects.get(pk=campaign_id)
            webhooks.campaign_finished(campaign=campaign, progress=progress(campaign))
    return won


def campaign_settle(*, campaign_id: int) -> bool:
    """After one of its jobs ended: if none is left to run, the campaign is finished (or, if it was
    canceled, ends canceled). Called after the job's transition commits, so of the last jobs ending
    at once the last to commit sees all of them ended."""
    current = Campaign.objects.filter(pk=campaign_id).values_list("status", flat=True).first()
    if current is None:
        return False
    return _finish_if_done(campaign_id, canceled=current == Campaign.Status.CANCELED)


def job_ended(*, job_id: int, campaign_id: int | None = None) -> None:
    """The worker's hook after a job's final transition commits (outside its transaction)."""
    if campaign_id is None:
        campaign_id = Job.objects.filter(pk=job_id).values_list("campaign_id", flat=True).first()
    if campaign_id is not None:
        campaign_settle(campaign_id=campaign_id)


# --- The ZIP -------------------------------------------------------------------------------------------

UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 80


# Windows opens a device, not a file, for these names whatever follows the first dot ("nul.png").
RESERVED = {"con", "prn", "aux", "nul", *(f"{port}{n}" for port in ("com", "lpt") for n in range(10))}


def safe_name(text: str) -> str:
    """A file name from a cell: ASCII letters, digits, ".", "_" and "-", no leading dot, not empty,
    not a name Windows reserves (those get a leading "_")."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = UNSAFE.sub("-", ascii_text).strip("-.")[:MAX_NAME].strip("-.")
    if cleaned.split(".")[0].lower() in RESERVED:
        cleaned = f"_{cleaned}"
    return cleaned or "row"


def zip_names(campaign: Campaign, images: list[Image], *, column: str = "") -> dict[int, str]:
    """{image id: file name in the archive}: the chosen column's value (e.g. the SKU), sanitized,
    then "-2", "-3" for a name already taken; a job's second image gets "-2" too. Without a column
    (or for a grid): the row number, or the cell's values."""
    names: dict[int, str] = {}
    taken: set[str] = set()
    for image in images:
        job = image.job
        if column and column in job.variables:
            stem = safe_name(job.variables[column])
        elif job.campaign_row is not None:
            stem = f"row-{job.campaign_row}"
        else:
            stem = (
                safe_name("-".join(f"{value}" for value in job.cell.values()))
                if job.cell
                else f"job-{job.pk}"
            )
        extension = image.format if image.format in ("png", "jpeg", "webp") else "bin"
        extension = "jpg" if extension == "jpeg" else extension
        candidate, suffix = stem, 1
        while f"{candidate}.{extension}".lower() in taken:
            suffix += 1
            candidate = f"{stem}-{suffix}"
        taken.add(f"{candidate}.{extension}".lower())
        names[image.pk] = f"{candidate}.{extension}"
    return names


def campaign_images(campaign: Campaign):
    """The campaign's visible images, in row (or cell) order."""
    return (
        Image.objects.visible()
        .filter(job__campaign=campaign)
        .order_by("job__campaign_row", "job_id", "index")
    )
