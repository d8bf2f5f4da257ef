"""Middleware of our own: the health check, answered before host validation."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from workspace.views.projects import healthz

HEALTH_PATH = "/healthz"


class HealthCheckMiddleware:
    """Answers /healthz before SecurityMiddleware and CommonMiddleware read the Host header.

    A probe names the container by address (compose's healthcheck asks http://127.0.0.1:8000/healthz, a
    load balancer asks by IP), which ALLOWED_HOSTS rightly refuses for every real page. Teaching the probe
    the public host name would tie the healthcheck to each deployment's settings; answering it here needs
    nothing. The answer is a constant "ok": no URL is built from the Host header, so there is nothing
    for a forged one to poison, and it is not redirected to HTTPS (the probe speaks plain HTTP inside).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return healthz(request)
        return self.get_response(request)
