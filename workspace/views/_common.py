"""Helpers every view module shares: serving stored files, reading ids and `next` from a request, and
the gallery filters that ride along on links. (Archived projects are refused in access.py.)"""

from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme

from workspace import outputs

FILTER_KEYS = (
    "q",
    "author",
    "model",
    "review",
    "favourites",
    "kind",
    "template",
    "campaign",
    "aspect",
    "since",
    "until",
)


def parse_id(value: str | None) -> int | None:
    """A database id written in ASCII digits, or None.

    Not `str.isdigit()` alone: "²" and "٣" are digits to it, and int() then raises on the first
    (a 500) and reads the second as 3. Callers decide what None means: a 400 when the value is the
    whole request (`?before=`), skipped when it is one id of many (`ids=`).
    """
    if not value or not value.isascii() or not value.isdigit() or len(value) > 18:
        return None  # 18 digits: past that it is no id, and Postgres' bigint would overflow
    return int(value)


def safe_next(request: HttpRequest, fallback: str) -> str:
    """The `next` the request names (form first, then query), if it stays on this site; else fallback.

    An open redirect would let a link on another site bounce people through ours to anywhere.
    """
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: a request Django refused while reading it, with the reason in plain words."""
    if isinstance(exception, TooManyFilesSent):
        reason = f"Send at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files at a time."
    elif isinstance(exception, RequestDataTooBig):
        reason = "This form is too large; shorten what you typed."
        if _is_api(request):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 1024
            reason = (
                f"This request body is over {limit} KB (a mask must fit within it, base64 included, and "
                "a batch's CSV: send a larger one as a multipart “file”)."
            )
    elif isinstance(exception, TooManyFieldsSent):
        reason = "This form has too many fields."
    else:
        reason = "This request could not be read."
    if _is_api(request):  # scripts get the API's one error shape
        from workspace.api.errors import error_response

        return error_response(400, reason, "invalid")
    return HttpResponse(reason, status=400, content_type="text/plain; charset=utf-8")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def filters_query(request: HttpRequest) -> str:
    """The current gallery filters as a query string, so links keep the view (and share it)."""
    kept = [(key, value) for key in FILTER_KEYS for value in request.GET.getlist(key) if value]
    return urlencode(kept)


def serve(
    name: str, *, content_type: str, download_name: str | None = None
) -> FileResponse | HttpResponseRedirect:
    """A stored file, to members only (the caller checked access), never sniffed or run as a page.

    From a bucket, a redirect to a signed URL that expires within minutes (settings.MEDIA_REDIRECT).
    """
    if settings.MEDIA_REDIRECT:
        redirect = HttpResponseRedirect(
            outputs.signed_url(name, content_type=content_type, download_name=download_name)
        )
        # A browser may reuse the redirect for a while, never past the URL's expiry.
        redirect["Cache-Control"] = f"private, max-age={settings.AWS_QUERYSTRING_EXPIRE // 2}"
        return redirect
    try:
        handle = default_storage.open(name, "rb")
    except FileNotFoundError:
        raise Http404 from None
    response = FileResponse(
        handle,
        content_type=content_type,
        as_attachment=download_name is not None,
        filename=download_name or "",
    )
    response["X-Content-Type-Options"] = "nosniff"
    # Members only: browsers may keep a copy, shared caches may not.
    response["Cache-Control"] = "private, max-age=86400"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
