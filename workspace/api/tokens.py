"""Token services: make one (the secret is returned once), revoke it, and hold jobs to its own limit."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from workspace import batches, hot_queries, jobs, spend
from workspace.api.models import DISPLAY_PREFIX_CHARS, ApiToken, ApiTokenJob
from workspace.models import Job, Project

ZERO = Decimal(0)


class TokenLimitExceeded(Exception):
    """A job would take the token past its own monthly limit; answered 402 like a budget."""

    def __init__(self, *, token: ApiToken, used: Decimal, needed: Decimal) -> None:
        self.remaining = max(ZERO, (token.monthly_limit or ZERO) - used)
        super().__init__(
            f"This job would cost about ${needed:.2f}, but only ${self.remaining:.2f} is left of the "
            f"token “{token.name}”'s ${token.monthly_limit:.2f} limit this month."
        )


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown once; only its hash is stored


def token_create(
    *,
    user,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    monthly_limit: Decimal | None = None,
) -> NewToken:
    """A token for `user`. Admin is for staff only: anyone else asking for it gets ValueError."""
    unknown = set(scopes) - set(ApiToken.Scope.values)
    if unknown or not scopes:
        raise ValueError(f"Unknown scopes: {', '.join(sorted(unknown))}" if unknown else "Choose a scope.")
    if ApiToken.Scope.ADMIN in scopes and not user.is_staff:
        raise ValueError("Only staff can make admin tokens.")
    secret = ApiToken.new_secret()
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=secret[:DISPLAY_PREFIX_CHARS],
        key_hash=ApiToken.hash(secret),
        scopes=[s for s in ApiToken.Scope.values if s in scopes],
        expires_at=expires_at,
        monthly_limit=monthly_limit,
    )
    return NewToken(token=token, secret=secret)


def token_revoke(*, token: ApiToken) -> bool:
    """Revoke at once: the next request with it is a 401. False if it was revoked already."""
    return bool(
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    )


def token_used(*, token: ApiToken) -> Decimal:
    """This month's charges of the token's jobs plus what its unfinished jobs hold back (one query)."""
    spent, held = hot_queries.token_used(
        token_id=token.pk, since=spend.month_start(), simulated=spend.simulated_now()
    )
    return spent + held


def _hold(token: ApiToken | None, amount: Decimal) -> None:
    """Check the token's own limit, under a lock on its row; inside the caller's transaction."""
    if token is None or token.monthly_limit is None:
        return
    locked = hot_queries.token_lock(token.pk)  # with its limit as it is now, not as authenticated
    if locked is None or locked.monthly_limit is None:  # deleted or unlimited meanwhile
        return
    # A statement of its own, after the lock: in READ COMMITTED each statement sees what committed
    # before it began, so this one sees the job of a request that held the lock before us. Summed in
    # the locking statement itself, it would read the snapshot taken before the wait, and miss that job.
    used = token_used(token=locked)
    if used + amount > locked.monthly_limit:
        raise TokenLimitExceeded(token=locked, used=used, needed=amount)


def api_job_create(
    *,
    token: ApiToken | None,
    project: Project,
    author,
    prompt: str,
    params: dict,
    inputs: list | None = None,
    mask: bytes | None = None,
) -> Job:
    """jobs.job_create (or edit_create, given inputs and a checked mask) held to the token's limit and
    linked to it.

    Raises TokenLimitExceeded or spend.BudgetExceeded, creating nothing.
    """
    estimate = jobs.job_estimate(prompt=prompt, params=params, input_images=len(inputs or []))
    # No savepoint: nothing in here catches an error to carry on in the transaction, and an error
    # rolls back the caller's whole transaction (the idempotency record's) anyway. Two round trips.
    with transaction.atomic(savepoint=False):
        _hold(token, estimate.cost)
        if inputs:
            job = jobs.edit_create(
                project=project,
                author=author,
                prompt=prompt,
                params=params,
                inputs=inputs,
                mask=mask,
                estimate=estimate,
            )
        else:
            job = jobs.job_create(
                project=project, author=author, prompt=prompt, params=params, estimate=estimate
            )
        if token is not None:
            ApiTokenJob.objects.create(token=token, job=job)
    return job


def api_job_retry(*, token: ApiToken | None, job: Job, actor) -> bool:
    """jobs.job_retry held to the token's limit; the retried job counts against the token from now on."""
    with transaction.atomic():
        _hold(token, job.estimated_cost or ZERO)
        won = jobs.job_retry(job=job, actor=actor)
        if won and token is not None:
            ApiTokenJob.objects.update_or_create(job=job, defaults={"token": token})
    return won


def api_batch_confirm(*, token: ApiToken | None, campaign, author) -> None:
    """batches.batch_confirm held to the token's limit for the whole estimate, its jobs linked to the
    token. Raises TokenLimitExceeded, spend.BudgetExceeded, batches.BatchRefused, creating nothing."""
    with transaction.atomic():
        _hold(token, campaign.estimated_cost or ZERO)
        batches.batch_confirm(campaign=campaign, author=author)
        if token is not None:
            ApiTokenJob.objects.bulk_create(
                [ApiTokenJob(token=token, job_id=pk) for pk in campaign.jobs.values_list("pk", flat=True)]
            )
