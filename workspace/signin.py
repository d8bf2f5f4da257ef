"""Sign-in throttling, as django-axes asks for it: who the client is, and what a locked-out client sees.

The counting and the lockout are axes' (settings.AXES_*); this module answers its two questions, and puts
each lockout on the audit trail (axes announces it only as a signal, connected in apps.py).
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from workspace import audit


def client_ip(request: HttpRequest) -> str | None:
    """The address the failures are counted against, which a client must not be able to choose.

    Each trusted proxy appends the address it was connected from to X-Forwarded-For, so with N of them
    the N-th entry from the right was written by the outermost one: the client as it reached us. What
    stands left of it is whatever the client sent and proves nothing. With no trusted proxy the header
    is ignored altogether.
    """
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [hop for hop in hops if hop]
        if len(hops) >= proxies:
            return hops[-proxies]
        # Fewer hops than proxies: the request did not come through them all; trust only the socket.
    return request.META.get("REMOTE_ADDR")


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """The login page's lockout message (also for the admin's login), with 429 Too Many Requests."""
    minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    return render(
        request,
        "registration/locked_out.html",
        {"minutes": minutes, "username": (credentials or {}).get("username", "")},
        status=settings.AXES_HTTP_RESPONSE_CODE,
    )


def record_lockout(
    sender, *, request: HttpRequest, username: str | None, ip_address: str | None, **_kwargs
) -> None:
    """A lockout on the audit trail, once: when the failures reach the limit, not on every try after it.

    Axes sends user_locked_out both when it locks and for each attempt refused while locked; only the
    first carries the failure count that crossed the limit.
    """
    if getattr(request, "axes_failures_since_start", None) != settings.AXES_FAILURE_LIMIT:
        return
    audit.record(
        actor=None,
        action=audit.Action.LOCKOUT,
        target=("username", username or "?"),
        before=None,
        after={
            "ip_address": ip_address,
            "path": request.path,
            "minutes": round(settings.AXES_COOLOFF_TIME.total_seconds() / 60),
        },
    )
