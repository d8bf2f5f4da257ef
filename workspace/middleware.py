"""Answers for failures raised below the views that Django itself has no good answer for.

- BusyMiddleware: a database or broker that is restarting, out of reach or out of pooled connections
  is a busy workspace, not a broken one: the person gets a plain 503 saying nothing was saved, never a 500.
- RefusalMiddleware: an archived project's refusal (access.ProjectArchived) becomes a 409 with its message.
"""

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.utils.html import escape
from kombu.exceptions import KombuError
from psycopg_pool import PoolTimeout
from redis.exceptions import RedisError

from workspace.access import ProjectArchived

logger = logging.getLogger(__name__)

BUSY_ERRORS = (OperationalError, InterfaceError, PoolTimeout, RedisError, KombuError)
BUSY = "The workspace is busy; try again in a moment."
BUSY_JOB = "The workspace is busy; your job was not created — try again in a moment."
# Views whose POST creates a job (the transaction rolled back: there is no row).
CREATES_A_JOB = frozenset({"job_create", "job_reproduce", "job_retry", "edit"})

# Written out, not a template: rendering one may need the very database that is away.
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Busy · Atelier</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main id="main"><h1>Busy</h1><p role="alert">{message}</p></main></body></html>"""


class BusyMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, BUSY_ERRORS):
            return None
        logger.warning("busy: %s %s: %r", request.method, request.path, exception)
        match = getattr(request, "resolver_match", None)
        creates = request.method == "POST" and match is not None and match.url_name in CREATES_A_JOB
        message = BUSY_JOB if creates else BUSY
        if request.headers.get("HX-Request") != "true":
            response = HttpResponse(PAGE.format(message=escape(message)), status=503)
        elif request.method == "POST":
            # Say it at the top of the page and leave the form as typed, ready to send again.
            response = HttpResponse(f'<p class="flash-error" role="alert">{escape(message)}</p>', status=503)
            response["HX-Retarget"] = "#main"
            response["HX-Reswap"] = "afterbegin"
        else:
            response = HttpResponse(status=503)  # a poll: keep what is shown, ask again next time
            response["HX-Reswap"] = "none"
        response["Retry-After"] = "5"
        return response


class RefusalMiddleware:
    """An archived project's refusal (access.ProjectArchived) becomes a 409 with its message.

    Raised from the access check, so no view can forget it and none has to turn it into a response.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ProjectArchived):
            return HttpResponse(str(exception), status=409, content_type="text/plain; charset=utf-8")
        return None
