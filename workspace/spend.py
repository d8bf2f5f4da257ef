"""Money: prices, exact costs from the API's usage, estimates before a job, budgets that hold.

Every amount is a Decimal. A charge is written once per API call that returned usage (the ledger's
unique key is the call), and budgets are checked and reserved in one step under a row lock.
"""

import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from workspace import audit, hot_queries, imagemodels, observability
from workspace.models import ApiCall, Budget, Job, LedgerEntry, Price, Project

logger = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
MICRO_DOLLAR = Decimal("0.000001")
ZERO = Decimal(0)
WARN_AT = Decimal("0.8")


def money(value: Decimal) -> Decimal:
    return value.quantize(MICRO_DOLLAR, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Tokens:
    text_input: int = 0
    cached_text_input: int = 0
    image_input: int = 0
    cached_image_input: int = 0
    image_output: int = 0
    text_output: int = 0

    @classmethod
    def from_usage(cls, usage: dict) -> "Tokens":
        """Split the API's usage into the kinds it is priced by; cached tokens are part of the inputs."""
        inputs = usage.get("input_tokens_details") or {}
        outputs = usage.get("output_tokens_details") or {}
        text = int(inputs.get("text_tokens") or 0)
        image = int(inputs.get("image_tokens") or 0)
        if not inputs:
            text = int(usage.get("input_tokens") or 0)
        # Not in the SDK's types yet, but reported by some responses; priced at the cached rate when present.
        cached_text = min(text, int(inputs.get("cached_text_tokens") or inputs.get("cached_tokens") or 0))
        cached_image = min(image, int(inputs.get("cached_image_tokens") or 0))
        image_out = outputs.get("image_tokens")
        text_out = int(outputs.get("text_tokens") or 0)
        if image_out is None:
            # No breakdown: every output token of an images call is an image token.
            image_out = int(usage.get("output_tokens") or 0) - text_out
        # Never negative, whatever a malformed usage says: a count below zero is no charge at all.
        return cls(
            text_input=max(0, text - cached_text),
            cached_text_input=max(0, cached_text),
            image_input=max(0, image - cached_image),
            cached_image_input=max(0, cached_image),
            image_output=max(0, int(image_out)),
            text_output=max(0, text_out),
        )


def cost(tokens: Tokens, price: Price, *, batch: bool = False) -> Decimal:
    """Dollars for these tokens at this price; with `batch`, at the Batch API's share of it.

    Rounded once, at the end: a batch line costs exactly the synchronous amount times the share,
    rounded to the micro-dollar, never a sum of rounded halves."""
    total = sum(
        (Decimal(getattr(tokens, kind)) * getattr(price, kind) for kind in Price.RATE_FIELDS),
        start=ZERO,
    )
    if batch:
        total *= price.batch_factor
    return money(total / MILLION)


SNAPSHOT = re.compile(r"^(?P<base>.+)-\d{4}-\d{2}-\d{2}$")


def _base_model(model: str) -> str:
    """gpt-image-2-2026-04-21 is priced as gpt-image-2 unless it has a price of its own: the registry
    row's family, or for a name the registry does not know, the name without its date."""
    row = imagemodels.get_model(model)
    if row is not None and row.family:
        return row.family
    match = SNAPSHOT.match(model)
    return match.group("base") if match else model


def price_for(model: str, on: date | None = None) -> Price | None:
    """The model's price in force on `on` (today), as the table holds it now: what a charge uses."""
    on = on or timezone.localdate()
    for name in dict.fromkeys([model, _base_model(model)]):
        price = Price.objects.filter(model=name, effective_from__lte=on).order_by("-effective_from").first()
        if price is not None:
            return price
    return None


# Every form and every estimate reads the prices in force; an admin changes them a few times a year.
# So each process keeps today's for PRICE_CACHE_SECONDS, like the model registry (imagemodels): a price
# saved or deleted in this process is seen at once (the signals below), one saved in another process
# (the admin on another web process) within that many seconds. Only estimates and the form's "no price
# set" read this copy; a charge always reads the table (price_for, in _charge_price).
PRICE_CACHE_SECONDS = 10.0
_in_force_cache: tuple[float, date, dict[str, Price]] | None = None
_in_force_lock = threading.Lock()


def prices_invalidate(**_signal) -> None:
    """Forget the prices read: the next estimate reads the table as it is."""
    global _in_force_cache
    with _in_force_lock:
        _in_force_cache = None


post_save.connect(prices_invalidate, sender=Price, dispatch_uid="spend.prices_invalidate.save")
post_delete.connect(prices_invalidate, sender=Price, dispatch_uid="spend.prices_invalidate.delete")


def _read_in_force(on: date) -> dict[str, Price]:
    latest: dict[str, Price] = {}
    for price in Price.objects.filter(effective_from__lte=on).order_by("model", "-effective_from"):
        latest.setdefault(price.model, price)
    return latest


def prices_in_force(on: date | None = None) -> dict[str, Price]:
    """Each priced model's price in force on `on` (today), by model name: one query, and for today
    one per PRICE_CACHE_SECONDS per process. Callers must not change the rows."""
    global _in_force_cache
    today = timezone.localdate()
    on = on or today
    if on != today:
        return _read_in_force(on)
    cached = _in_force_cache
    if cached is not None and cached[1] == on and cached[0] > time.monotonic():
        return cached[2]
    loaded = _read_in_force(on)
    with _in_force_lock:
        _in_force_cache = (time.monotonic() + PRICE_CACHE_SECONDS, on, loaded)
    return loaded


def quoted_price(model: str) -> Price | None:
    """price_for today, from prices_in_force: what an estimate uses."""
    prices = prices_in_force()
    for name in dict.fromkeys([model, _base_model(model)]):
        if name in prices:
            return prices[name]
    return None


def unpriced_models(on: date | None = None) -> set[str]:
    """The offered (not retired) models with no price in force: the form refuses these."""
    priced = prices_in_force(on)
    return {
        model.id
        for model in imagemodels.selectable()
        if model.id not in priced and _base_model(model.id) not in priced
    }


def _charge_price(model: str, on: date) -> tuple[Price | None, bool]:
    """The price to charge a finished call at, and whether it is the model's own price in force.

    The form refuses unpriced models, so this only misses when a price was deleted (or moved to a later
    date) while a job ran. By then OpenAI has charged us, so failing here would lose the call's record
    and let the sweep call, and pay, again; and $0 would quietly open every budget. So the call is
    charged at the nearest price we know, flagged unpriced for the dashboard: the model's latest price
    of any date, else the default model's price in force.
    """
    price = price_for(model, on)
    if price is not None:
        return price, True
    for name in dict.fromkeys([model, _base_model(model)]):
        latest = Price.objects.filter(model=name).order_by("-effective_from").first()
        if latest is not None:
            return latest, False
    return price_for(imagemodels.DEFAULT_MODEL, on), False


def simulated_now() -> bool:
    """Demo mode: the local stand-in makes the images, so no one pays OpenAI for them."""
    return bool(settings.DEMO_MODE)


def charge(*, api_call: ApiCall, job: Job, batch: bool = False) -> None:
    """Write the charge for a call that returned usage. Calling it again for the same call changes nothing.

    One INSERT … ON CONFLICT DO NOTHING on the ledger's unique (call, part): idempotent without a SELECT
    and a savepoint first, which every finished image would otherwise pay for. A conversation turn's
    Responses API call is two lines: the image tool's tokens at the image model's rates, the mainline
    model's tokens at its own (see `turn_usage_parts`); an SVG answer's author model is a part of its own
    at that model's price (`svg_usage`). `batch`: the call is a line of an overnight batch
    (one ApiCall per line), charged from its own usage at the price's batch share.
    """
    if not api_call.usage:
        return
    if job.is_turn:
        parts = turn_usage_parts(api_call.usage)
    else:
        parts = [(LedgerEntry.Part.IMAGE, job.model, Tokens.from_usage(api_call.usage))]
        svg_usage = api_call.usage.get("svg_usage")
        if isinstance(svg_usage, dict) and svg_usage.get("model"):
            # The SVG's author model: its reasoning tokens are output tokens (they are billed so).
            author = Tokens(
                text_input=max(0, int(svg_usage.get("input_tokens") or 0)),
                text_output=max(0, int(svg_usage.get("output_tokens") or 0)),
            )
            parts.append((LedgerEntry.Part.SVG_AUTHOR, str(svg_usage["model"])[:64], author))
    entries = []
    for part, model, tokens in parts:
        price, priced = _charge_price(model, api_call.created_at.date())
        if price is None:
            # No price at all (the table is empty): keep the tokens, but say so loudly.
            logger.error("no price for %s: call %s recorded in tokens at $0", model, api_call.pk)
        entries.append(
            LedgerEntry(
                api_call=api_call,
                part=part,
                user_id=job.author_id,
                project_id=job.project_id,
                job=job,
                model=model,
                request_id=api_call.request_id,
                text_input_tokens=tokens.text_input,
                cached_text_input_tokens=tokens.cached_text_input,
                image_input_tokens=tokens.image_input,
                cached_image_input_tokens=tokens.cached_image_input,
                image_output_tokens=tokens.image_output,
                text_output_tokens=tokens.text_output,
                image_count=(
                    job.n if api_call.outcome == ApiCall.Outcome.OK and part == LedgerEntry.Part.IMAGE else 0
                ),
                price=price,
                rates=price.rates(batch=batch) if price else {},
                priced=priced,
                simulated=simulated_now(),
                batch=batch,
                cost=cost(tokens, price, batch=batch) if price else ZERO,
                created_at=api_call.created_at,
            )
        )
    LedgerEntry.objects.bulk_create(entries, ignore_conflicts=True)
    for entry in entries:
        observability.observe_charge(cost=entry.cost, simulated=entry.simulated)


def turn_usage_parts(usage: dict) -> list[tuple[str, str, Tokens]]:
    """A Responses API call's usage as priced parts: (part, model, tokens).

    The worker stores {"model": mainline, "image_model": …, "response": <Response.usage>,
    "image_gen": <Response.tool_usage.image_gen>}. The mainline's input is one count with the cached
    share beside it (its images are inside the input tokens, so they are priced as input); its output,
    reasoning included, is text output. The tool's usage has the Images API's breakdown.
    """
    parts: list[tuple[str, str, Tokens]] = []
    image_gen = usage.get("image_gen")
    if image_gen:
        cached = image_gen.get("cached_tokens_details") or {}
        details = dict(image_gen.get("input_tokens_details") or {})
        details["cached_text_tokens"] = cached.get("cached_text_tokens") or 0
        details["cached_image_tokens"] = cached.get("cached_image_tokens") or 0
        tokens = Tokens.from_usage({**image_gen, "input_tokens_details": details})
        parts.append((LedgerEntry.Part.IMAGE, usage.get("image_model") or "", tokens))
    response = usage.get("response")
    if response:
        total_in = int(response.get("input_tokens") or 0)
        cached = min(total_in, int((response.get("input_tokens_details") or {}).get("cached_tokens") or 0))
        tokens = Tokens(
            text_input=max(0, total_in - cached),
            cached_text_input=max(0, cached),
            text_output=max(0, int(response.get("output_tokens") or 0)),
        )
        parts.append((LedgerEntry.Part.MAINLINE, usage.get("model") or "", tokens))
    return parts


# --- Estimates ---------------------------------------------------------------------------------------

# Image output tokens per image at 1024x1024 and at 1536x1024 (either way round), from OpenAI's
# published per-image examples (openai-images-api.md §5). "auto" is estimated as high: the worst case.
OUTPUT_TOKENS: dict[str, dict[str, tuple[int, int]]] = {
    "gpt-image-2": {"low": (200, 167), "medium": (1767, 1367), "high": (7024, 5488)},
    "gpt-image-1.5": {"low": (281, 406), "medium": (1063, 1563), "high": (4156, 6250)},
    "gpt-image-1-mini": {"low": (625, 750), "medium": (1375, 1875), "high": (4500, 6500)},
}
QUALITY_FACTOR = {"xhigh": Decimal("1.5"), "max": Decimal(2)}
INPUT_IMAGE_TOKENS = 1_300  # a typical reference image; edits send every input at high fidelity


@dataclass(frozen=True)
class Estimate:
    cost: Decimal
    priced: bool
    output_tokens: int
    note: str = ""


def _output_tokens_per_image(model: str, quality: str, width: int, height: int) -> int:
    # A new snapshot uses its family's table; a model with no table of its own, gpt-image-2's.
    table = OUTPUT_TOKENS.get(model) or OUTPUT_TOKENS.get(_base_model(model)) or OUTPUT_TOKENS["gpt-image-2"]
    level = "high" if quality in ("auto", "xhigh", "max") else quality
    square, oblong = table.get(level, table["high"])
    if width == height:
        base, base_pixels = square, 1024 * 1024
    else:
        base, base_pixels = oblong, 1536 * 1024
    tokens = Decimal(base) * Decimal(width * height) / Decimal(base_pixels)
    return math.ceil(tokens * QUALITY_FACTOR.get(quality, Decimal(1)))


# What a conversation turn's mainline model reads and writes, for the estimate: the thread so far and
# the image it is shown, then a short reply and its reasoning. Settled from usage as always.
TURN_MAINLINE_INPUT_TOKENS = 3_000
TURN_MAINLINE_OUTPUT_TOKENS = 1_000


def turn_estimate(*, mainline_model: str, image_model: str, message: str, size: str) -> Estimate:
    """A conversation turn: one edited image at the image model's rates plus the mainline's tokens."""
    image = estimate(model=image_model, quality="auto", size=size, n=1, prompt=message, input_images=1)
    tokens = Tokens(
        text_input=TURN_MAINLINE_INPUT_TOKENS + max(1, math.ceil(len(message) / 4)),
        text_output=TURN_MAINLINE_OUTPUT_TOKENS,
    )
    price = quoted_price(mainline_model)
    if price is None:
        # The image part still holds budget back; the mainline's is unknown and said so.
        return Estimate(
            cost=image.cost,
            priced=False,
            output_tokens=image.output_tokens,
            note=f"No price is set for {mainline_model}; its tokens are not in this estimate.",
        )
    return Estimate(
        cost=image.cost + cost(tokens, price),
        priced=image.priced,
        output_tokens=image.output_tokens,
        note=image.note,
    )


# The SVG author's tokens, charged at the author's own price (svg_usage). No published figure: budget
# the prompt and reference it reads, the document it writes, and its reasoning (output tokens) at twice
# what the stand-in reports per effort. An omitted effort is the author's default, budgeted as high.
SVG_AUTHOR_INPUT_TOKENS = 1_500
SVG_DOCUMENT_TOKENS = 2_000
SVG_REASONING_TOKENS = {
    "none": 0,
    "minimal": 400,
    "low": 1_600,
    "medium": 4_000,
    "high": 8_000,
    "xhigh": 12_000,
    "max": 16_000,
}


def _svg_author_cost(*, author: str, effort: str, prompt: str, fallback: Price, batch: bool) -> Decimal:
    tokens = Tokens(
        text_input=SVG_AUTHOR_INPUT_TOKENS + max(1, math.ceil(len(prompt) / 4)),
        text_output=SVG_DOCUMENT_TOKENS + SVG_REASONING_TOKENS.get(effort, SVG_REASONING_TOKENS["high"]),
    )
    # An author with no price of its own still holds budget back, at the image model's rates.
    price = (price_for(author) if author else None) or fallback
    return cost(tokens, price, batch=batch)


def estimate(
    *,
    model: str,
    quality: str,
    size: str,
    n: int,
    prompt: str = "",
    input_images: int = 0,
    batch: bool = False,
    output_format: str = "png",
    frame_count: int | None = None,
    svg_model: str = "",
    svg_effort: str = "",
) -> Estimate:
    """What a job will probably cost: the budget holds this much back until the job ends.

    `batch`: the job goes through the overnight lane (OpenAI's Batch API), at the price's batch share.
    """
    # "auto" follows the first input for edits; budget for the largest standard size.
    width, height = imagemodels.parse_size(size) if size != "auto" else (1536, 1024)
    per_image = _output_tokens_per_image(model, quality, width, height)
    if output_format == "gif":
        # SDK 3.57 documents no per-frame usage (only 2-16 frames, default 9, and one `usage` per call),
        # so each frame is budgeted as a whole image: the worst case. The charge comes from `usage`; a
        # test keeps this within 2.5x of what the stand-in bills per frame count.
        per_image *= frame_count or imagemodels.DEFAULT_FRAMES
    tokens = Tokens(
        text_input=max(1, math.ceil(len(prompt) / 4)),
        image_input=input_images * INPUT_IMAGE_TOKENS,
        image_output=per_image * n,
    )
    price = quoted_price(model)
    note = ""
    if price is None:
        # An unpriced model still holds budget back, at the default model's rates, so budgets stay shut.
        price = quoted_price(imagemodels.DEFAULT_MODEL)
        note = f"No price is set for {model}; estimated at {imagemodels.DEFAULT_MODEL} rates."
    if price is None:
        return Estimate(cost=ZERO, priced=False, output_tokens=tokens.image_output, note="No prices are set.")
    total = cost(tokens, price, batch=batch)
    if output_format == "svg":
        total += _svg_author_cost(
            author=svg_model, effort=svg_effort, prompt=prompt, fallback=price, batch=batch
        )
    return Estimate(cost=total, priced=not note, output_tokens=tokens.image_output, note=note)


# --- Budgets -------------------------------------------------------------------------------------------


def month_start(moment: datetime | None = None) -> datetime:
    local = timezone.localtime(moment or timezone.now())
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class BudgetExceeded(Exception):
    def __init__(self, *, budget: Budget, used: Decimal, needed: Decimal) -> None:
        self.budget = budget
        self.remaining = max(ZERO, budget.monthly_limit - used)
        whose = "your" if budget.user_id else "the project's" if budget.project_id else "the workspace's"
        super().__init__(
            f"This job would cost about ${needed:.2f}, but only ${self.remaining:.2f} is left of {whose} "
            f"${budget.monthly_limit:.2f} budget this month."
        )


def _spent(scope: Q, since: datetime) -> Decimal:
    # Budgets count the money of the mode the workspace is in. A marketer trying the demo sets a $1
    # budget and expects it to stop them at $1 of (simulated) images; once a real key is set, a
    # month of playing with placeholders must not have used up the real budget.
    entries = LedgerEntry.objects.filter(scope, created_at__gte=since, simulated=simulated_now())
    return entries.aggregate(total=Coalesce(Sum("cost"), ZERO))["total"]


def _held(scope: Q) -> Decimal:
    jobs = Job.objects.filter(scope, reserved_cost__gt=0)
    return jobs.aggregate(total=Coalesce(Sum("reserved_cost"), ZERO))["total"]


WORKSPACE = Q(user__isnull=True, project__isnull=True)


def used(*, user=None, project: Project | None = None) -> Decimal:
    """Spent this month plus what unfinished jobs hold back: for a user, a project, or (neither) everyone."""
    if user is not None:
        return _spent(Q(user=user), month_start()) + _held(Q(author=user))
    if project is not None:
        return _spent(Q(project=project), month_start()) + _held(Q(project=project))
    return _spent(Q(), month_start()) + _held(Q())


def budget_used(budget: Budget) -> Decimal:
    return used(user=budget.user) if budget.user_id else used(project=budget.project)


def reserve(*, user, project: Project, amount: Decimal) -> None:
    """Check every budget that applies and hold `amount` against them. Call inside the job's transaction.

    The caller then saves the job with reserved_cost=amount before the transaction commits; until then
    the budget rows stay locked, so the check and the reservation are one step. The workspace-wide row
    applies to every job, so while it exists every submit queues on it (for the few milliseconds of a
    check); rows are locked in one global order (user rows, then the rest by id) so two submits never
    wait on each other crosswise.
    """
    budgets = hot_queries.budgets_lock(user_id=user.pk, project_id=project.pk)
    if not budgets:
        return
    # The sums in a statement of their own, after the lock: in READ COMMITTED a statement sees what
    # committed before it began, so this one counts the job of the submit that held the lock before us.
    already = hot_queries.budgets_used(budgets, since=month_start(), simulated=simulated_now())
    for budget, used_so_far in zip(budgets, already, strict=True):
        if used_so_far + amount > budget.monthly_limit:
            raise BudgetExceeded(budget=budget, used=used_so_far, needed=amount)


def budget_set(
    *, actor, user=None, project: Project | None = None, monthly_limit: Decimal | None
) -> Budget | None:
    """Set (or with None remove) the monthly budget of a user, a project, or with neither the workspace.

    Lowering a budget below what is already used is allowed: it stops new jobs, it never undoes charges.
    The change goes on the audit trail with the limit before and after, in the same transaction.
    """
    scope = {"user": user, "project": project}
    with transaction.atomic():
        old = Budget.objects.select_for_update().filter(**scope).first()
        before = {"monthly_limit": old.monthly_limit} if old is not None else None
        if monthly_limit is None:
            if old is None:
                return None
            audit.record(
                actor=actor,
                action=audit.Action.BUDGET_DELETED,
                target=old,
                before=before,
                after=None,
                project=project,
            )
            old.delete()
            return None
        budget, _ = Budget.objects.update_or_create(**scope, defaults={"monthly_limit": monthly_limit})
        audit.record(
            actor=actor,
            action=audit.Action.BUDGET_CHANGED,
            target=budget,
            before=before,
            # As the row stores it (two places), so before and after compare like for like.
            after={"monthly_limit": Decimal(budget.monthly_limit).quantize(Decimal("0.01"))},
            project=project,
        )
    return budget


def budgets_overview() -> list[dict]:
    """Every budget with what it has used this month: the workspace first, then people, then projects."""
    rows = []
    for budget in Budget.objects.select_related("user", "project"):
        spent_so_far = budget_used(budget)
        percent = int(spent_so_far / budget.monthly_limit * 100) if budget.monthly_limit else None
        rows.append({"budget": budget, "used": spent_so_far, "percent": percent})
    order = {True: 0}
    rows.sort(
        key=lambda row: (
            order.get(row["budget"].is_workspace, 1 if row["budget"].user_id else 2),
            str(row["budget"].user or row["budget"].project or ""),
        )
    )
    return rows


@dataclass(frozen=True)
class SpendSummary:
    """One person's month. `spent` is real money, `simulated` demo money; the budget counts the kind of
    the mode the workspace is in (`demo`), which is what the badge shows."""

    spent: Decimal
    held: Decimal
    limit: Decimal | None
    simulated: Decimal = ZERO
    demo: bool = False

    @property
    def counted(self) -> Decimal:
        return self.simulated if self.demo else self.spent

    @property
    def used(self) -> Decimal:
        return self.counted + self.held

    @property
    def fraction(self) -> Decimal | None:
        if not self.limit:
            return None
        return self.used / self.limit

    @property
    def warning(self) -> bool:
        return self.fraction is not None and self.fraction >= WARN_AT

    @property
    def percent(self) -> int | None:
        return None if self.fraction is None else min(100, int(self.fraction * 100))


def summary_for(user) -> SpendSummary:
    """Spent, held and the limit for the badge, in one query."""

    def spent(simulated: bool) -> Subquery:
        entries = LedgerEntry.objects.filter(
            user=OuterRef("pk"), created_at__gte=month_start(), simulated=simulated
        )
        return Subquery(entries.values("user").annotate(total=Sum("cost")).values("total"))

    held = (
        Job.objects.filter(author=OuterRef("pk"), reserved_cost__gt=0)
        .values("author")
        .annotate(total=Sum("reserved_cost"))
        .values("total")
    )
    limit = Budget.objects.filter(user=OuterRef("pk")).values("monthly_limit")
    row = (
        get_user_model()
        .objects.filter(pk=user.pk)
        .annotate(
            spent=Coalesce(spent(False), ZERO),
            simulated=Coalesce(spent(True), ZERO),
            held=Coalesce(Subquery(held), ZERO),
            limit=Subquery(limit),
        )
        .values("spent", "simulated", "held", "limit")
        .get()
    )
    return SpendSummary(**row, demo=simulated_now())


# --- Reports ---------------------------------------------------------------------------------------------


@dataclass
class Report:
    start: date
    end: date
    totals: dict
    by_user: list[dict]
    by_project: list[dict]
    by_model: list[dict]
    daily: list[dict]
    unpriced_models: list[str]
    near_limit: list[dict]
    demo: bool = False

    @property
    def has_simulated(self) -> bool:
        return self.demo or self.totals["simulated_cost"] > 0


def _range(start: date, end: date) -> Q:
    """Whole local days from start to end, both included."""
    zone = timezone.get_current_timezone()
    since = datetime.combine(start, datetime.min.time(), tzinfo=zone)
    until = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return Q(created_at__gte=since, created_at__lt=until)


REAL, SIMULATED = Q(simulated=False), Q(simulated=True)


def _sums() -> dict:
    """Real dollars and simulated (demo) dollars side by side, never added together."""
    # simulated_cost first: once "cost" names an aggregate, Sum("cost") would mean that aggregate.
    return {
        "simulated_cost": Coalesce(Sum("cost", filter=SIMULATED), ZERO),
        "cost": Coalesce(Sum("cost", filter=REAL), ZERO),
        "images": Coalesce(Sum("image_count"), 0),
        "calls": Count("id"),
        "tokens": Coalesce(
            Sum(
                F("text_input_tokens")
                + F("cached_text_input_tokens")
                + F("image_input_tokens")
                + F("cached_image_input_tokens")
                + F("image_output_tokens")
                + F("text_output_tokens")
            ),
            0,
        ),
    }


def report(*, start: date, end: date) -> Report:
    entries = LedgerEntry.objects.filter(_range(start, end))
    totals = entries.aggregate(**_sums())
    top = ("-cost", "-simulated_cost")
    by_user = list(
        entries.values("user_id", "user__username").annotate(**_sums()).order_by(*top, "user__username")
    )
    by_project = list(
        entries.values("project_id", "project__name").annotate(**_sums()).order_by(*top, "project__name")
    )
    by_model = list(entries.values("model").annotate(**_sums()).order_by(*top, "model"))
    per_day = {
        row["day"]: row
        for row in entries.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(simulated_cost=Sum("cost", filter=SIMULATED), real_cost=Sum("cost", filter=REAL))
    }
    days = (end - start).days + 1
    daily = []
    for i in range(days):
        day = per_day.get(start + timedelta(days=i), {})
        daily.append(
            {
                "day": start + timedelta(days=i),
                "cost": day.get("real_cost") or ZERO,
                "simulated": day.get("simulated_cost") or ZERO,
            }
        )
    unpriced = set(entries.filter(priced=False).values_list("model", flat=True).distinct())
    unpriced |= unpriced_models()
    near_limit = [
        row
        for row in budgets_overview()
        if row["budget"].monthly_limit and row["used"] >= row["budget"].monthly_limit * WARN_AT
    ]
    return Report(
        start=start,
        end=end,
        totals=totals,
        by_user=by_user,
        by_project=by_project,
        by_model=by_model,
        daily=daily,
        unpriced_models=sorted(unpriced),
        near_limit=near_limit,
        demo=simulated_now(),
    )
