"""/metrics for Prometheus: staff sessions and scrapers with the token; a 404 for anyone else."""

import hmac
import os

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from workspace.observability import JobsCollector

# Apart from the global registry: only the web's /metrics counts job rows (a worker's port does not).
_jobs_registry = CollectorRegistry(auto_describe=False)
_jobs_registry.register(JobsCollector())


def _process_registry() -> CollectorRegistry:
    """Under gunicorn (config/gunicorn.conf.py) every web process's samples, added up; else this one's."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def _allowed(request: HttpRequest) -> bool:
    if request.user.is_authenticated and request.user.is_staff:
        return True
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme == "Bearer" and hmac.compare_digest(given.encode(), token.encode())


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        raise Http404  # strangers must not learn that there is anything here
    body = generate_latest(_process_registry()) + generate_latest(_jobs_registry)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
