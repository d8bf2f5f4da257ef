"""What operators see: which request and which job every log line belongs to, and metrics for Prometheus.

Log lines. Every record carries `request_id` and `job_id` (a record factory adds them from two context
variables; "-" when there is none). The web sets the request id per request (RequestIdMiddleware: the
caller's `X-Request-ID` when it is a sane token, else a new one, echoed in the response). A Celery
message published while a request id is set carries it in its headers (`HEADER`), and the worker binds
it again before the task runs, so the worker's lines for a job share the id of the request that
submitted it; `worker.job_run` binds the job id. A retry the worker schedules keeps the id; a message the
sweep resends has none (it belongs to no request).

Metrics. The web answers /metrics (views/metrics.py): django-prometheus's request and database metrics,
and `JobsCollector`, which counts job rows by status on each scrape (one GROUP BY). What happens in a
worker (queue wait, API calls, spend) is counted in the worker process and served from its own port
(`METRICS_PORT_WORKER`, see config/celery.py): the worker may run on another host, where a shared
multiprocess directory could not reach, and each worker process is one more scrape target.
"""

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

NONE = "-"
HEADER = "atelier_request_id"  # in a Celery message's headers
HTTP_HEADER = "X-Request-ID"
# A caller's id is kept only when it is a plain token: it is written into every log line.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

_request_id: ContextVar[str] = ContextVar("request_id", default=NONE)
_job_id: ContextVar[str] = ContextVar("job_id", default=NONE)


def current_request_id() -> str:
    return _request_id.get()


@contextmanager
def bound(*, request_id: str | None = None, job_id: int | str | None = None) -> Iterator[None]:
    """Within the block, log records carry these ids (those not given keep their current value)."""
    tokens = []
    if request_id is not None:
        tokens.append((_request_id, _request_id.set(request_id)))
    if job_id is not None:
        tokens.append((_job_id, _job_id.set(str(job_id))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind_task(request) -> None:
    """At the start of a task (task_prerun): the request id its message carries, and no job yet.

    Set rather than reset at the end: the pool thread's next task sets its own."""
    value = getattr(request, HEADER, None) or (getattr(request, "headers", None) or {}).get(HEADER)
    _request_id.set(value if isinstance(value, str) and _SANE_ID.fullmatch(value) else NONE)
    _job_id.set(NONE)


def add_request_id(headers: dict) -> None:
    """Before a Celery message is published (before_task_publish): carry the current request id."""
    if (value := _request_id.get()) != NONE:
        headers.setdefault(HEADER, value)


_previous_factory = logging.getLogRecordFactory()


def _record_factory(*args, **kwargs) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    record.request_id = _request_id.get()
    record.job_id = _job_id.get()
    return record


def install_log_context() -> None:
    """Every log record from now on carries request_id and job_id (called once, from AppConfig.ready)."""
    if logging.getLogRecordFactory() is not _record_factory:
        logging.setLogRecordFactory(_record_factory)


class ContextFilter(logging.Filter):
    """For the console handler: fills in the ids on a record made before install_log_context ran."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        if not hasattr(record, "job_id"):
            record.job_id = _job_id.get()
        return True


class RequestIdMiddleware:
    """First in the stack: binds the request id for everything the request logs, and echoes it."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get(HTTP_HEADER, "")
        request_id = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        request.request_id = request_id
        # Set, not reset when the view returns: Django logs a 4xx/5xx ("Not Found: …") after the
        # middleware chain has returned, and that line belongs to the request too. The thread's next
        # request sets its own.
        _request_id.set(request_id)
        _job_id.set(NONE)
        response = self.get_response(request)
        response[HTTP_HEADER] = request_id
        return response


# --- Metrics ---------------------------------------------------------------------------------------

QUEUE_WAIT = Histogram(
    "atelier_queue_wait_seconds",
    "From a job's message being sent to a worker claiming it.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
API_LATENCY = Histogram(
    "atelier_api_call_seconds",
    "Image API calls, by endpoint and outcome (ok, transient, permanent).",
    ["endpoint", "outcome"],
    buckets=(0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300),
)
API_ERRORS = Counter(
    "atelier_api_errors_total",
    "Image API calls that failed, by class (the error code we record, e.g. rate_limited, timeout).",
    ["error_class", "transient"],
)
SPEND = Counter(
    "atelier_spend_dollars_total",
    "US dollars charged to the ledger: real (OpenAI) or simulated (demo mode).",
    ["kind"],
)


def observe_claim(job) -> None:
    if job.enqueued_at is not None and job.started_at is not None:
        QUEUE_WAIT.observe(max(0.0, (job.started_at - job.enqueued_at).total_seconds()))


def observe_api_call(api_call) -> None:
    """From the ApiCall row the worker records for every call (post_save, see apps.py)."""
    if api_call.latency_ms is not None:
        API_LATENCY.labels(api_call.endpoint or "unknown", api_call.outcome).observe(
            api_call.latency_ms / 1000
        )
    if api_call.outcome != "ok":
        transient = "true" if api_call.outcome == "transient" else "false"
        API_ERRORS.labels(api_call.error_code or api_call.error_type or "unknown", transient).inc()


def observe_charge(*, cost: Decimal, simulated: bool) -> None:
    if cost > 0:
        SPEND.labels("simulated" if simulated else "real").inc(float(cost))


class JobsCollector(Collector):
    """atelier_jobs{state=...}: job rows by status, counted when scraped. Every state is present (0 too),
    so a graph of `failed` does not vanish the day none failed."""

    def collect(self):
        from workspace.models import Job

        counts = dict.fromkeys(Job.Status.values, 0)
        for row in Job.objects.order_by().values("status").annotate(n=Count("id")):
            counts[row["status"]] = row["n"]
        family = GaugeMetricFamily("atelier_jobs", "Jobs by state, counted at scrape time.", labels=["state"])
        for state, n in counts.items():
            family.add_metric([state], n)
        yield family
