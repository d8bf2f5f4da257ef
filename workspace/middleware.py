"""Answers for requests and failures that Django itself has no good answer for, before or below the views.

- HealthCheckMiddleware: /healthz, answered before host validation (a probe asks by address).
- BoundedRequestMiddleware: a body over its cap is refused before anything reads it (and `limits.Busy`
  from a view that found no free decode or ZIP slot becomes a 503).
- BusyMiddleware: a database or broker that is restarting, out of reach or out of pooled connections
  is a busy workspace, not a broken one: the person gets a plain 503 saying nothing was saved, never a 500.
- RefusalMiddleware: an archived project's refusal (access.ProjectArchived) becomes a 409 with its message.
"""

import logging
import math
import re
import tempfile
from collections.abc import Callable

from django.conf import settings
from django.contrib import auth
from django.core.handlers.wsgi import LimitedStream
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.utils.html import escape
from kombu.exceptions import KombuError
from psycopg_pool import PoolTimeout
from redis.exceptions import RedisError

from workspace import limits
from workspace.access import ProjectArchived
from workspace.views.projects import healthz

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
        if request.path_info.startswith(API_PREFIX):
            response = _plain(message, 503, request)
        elif request.headers.get("HX-Request") != "true":
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
            if request.path_info.startswith(API_PREFIX):
                return _plain(str(exception), 409, request)
            return HttpResponse(str(exception), status=409, content_type="text/plain; charset=utf-8")
        return None


_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")
_READ_CHUNK = 64 * 1024


def _plain(text: str, status: int, request: HttpRequest | None = None) -> HttpResponse:
    if request is not None and request.path_info.startswith(API_PREFIX):
        from workspace.api.errors import error_response  # the API answers in its own JSON shape

        return error_response(status, text)
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


API_PREFIX = "/api/"


def _size(n: int) -> str:
    """Rounded up, so a body a byte over the cap never reads as the cap itself."""
    return f"{math.ceil(n / 1024)} KB" if n < 1024 * 1024 else f"{math.ceil(n / (1024 * 1024))} MB"


class BoundedRequestMiddleware:
    """A body over its cap is refused before anything reads it.

    Placed before CsrfViewMiddleware (the first thing that reads request.POST), so an oversized body is never
    parsed, spooled to disk or handed to a view. The cap depends on who is asking: people who are not signed
    in can only log in, and a login form is tiny (ANONYMOUS_MAX_REQUEST_BYTES, 64 KB); signed-in people upload
    references (MAX_REQUEST_BYTES: the upload limit times the files one upload may hold, plus the form).

    Django reads a body only as far as its Content-Length; a body without one (chunked) would be read as
    empty.
    Such a body is read here, up to the cap and no further, and refused as soon as it goes over; under the
    cap it is kept (in memory, or on disk past FILE_UPLOAD_MAX_MEMORY_SIZE) and handed on with its length, so
    a chunked upload works like any other.

    It also answers `limits.Busy`, raised by a view that found no free slot, with 503.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = self._refuse_oversized(request)
        if refusal is not None:
            return refusal
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, limits.Busy):
            response = _plain(str(exception), 503, request)
            response["Retry-After"] = "5"
            return response
        return None

    def _refuse_oversized(self, request: HttpRequest) -> HttpResponse | None:
        declared = (request.META.get("CONTENT_LENGTH") or "").strip()
        if declared:
            if not _ASCII_DIGITS.fullmatch(declared):
                return _plain("This request's Content-Length is not a number.", 400, request)
            length = int(declared)
            if length <= settings.ANONYMOUS_MAX_REQUEST_BYTES:
                return None  # most requests: no need to know who is asking
            cap, signed_in = self._cap(request)
            return self._too_large(length, cap, signed_in, request) if length > cap else None
        if "HTTP_TRANSFER_ENCODING" not in request.META:
            return None  # no body at all
        cap, signed_in = self._cap(request)
        return self._read_unsized_body(request, cap, signed_in)

    def _cap(self, request: HttpRequest) -> tuple[int, bool]:
        if request.path_info.startswith(API_PREFIX):
            # The API signs in with a bearer token, not the session: a valid one gets the signed-in cap.
            from workspace.api.auth import token_user

            user = token_user(request.headers.get("Authorization", ""))
            if user is not None:
                return settings.MAX_REQUEST_BYTES, True
            return settings.ANONYMOUS_MAX_REQUEST_BYTES, False
        # Only for bodies over the small cap: load the user from the session, once (AuthenticationMiddleware
        # reuses _cached_user rather than loading it again).
        user = auth.get_user(request)
        request._cached_user = user
        if user.is_authenticated:
            return settings.MAX_REQUEST_BYTES, True
        return settings.ANONYMOUS_MAX_REQUEST_BYTES, False

    def _too_large(
        self, length: int | None, cap: int, signed_in: bool, request: HttpRequest | None = None
    ) -> HttpResponse:
        size = f"more than {_size(cap)}" if length is None else _size(length)
        advice = "upload fewer or smaller files at a time." if signed_in else "sign in first."
        return _plain(f"This request is {size}; the limit is {_size(cap)}: {advice}", 413, request)

    def _read_unsized_body(self, request: HttpRequest, cap: int, signed_in: bool) -> HttpResponse | None:
        source = request.META["wsgi.input"]
        body = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE)  # noqa: SIM115
        length = 0
        while chunk := source.read(min(_READ_CHUNK, cap + 1 - length)):
            length += len(chunk)
            if length > cap:
                body.close()
                return self._too_large(None, cap, signed_in, request)
            body.write(chunk)
        body.seek(0)
        request.META["CONTENT_LENGTH"] = str(length)
        # WSGIRequest made its stream from the missing Content-Length (0 bytes); hand it the body we read.
        # The spooled file is removed when the request (its only holder) is collected.
        request._stream = LimitedStream(body, length)
        return None


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
