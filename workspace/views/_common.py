"""Helpers every view module shares: serving stored files, refusing work in archived projects, and the
gallery filters that ride along on links."""

from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse

from workspace.access import ProjectAccess

FILTER_KEYS = ("q", "author", "model", "review", "favourites", "kind", "aspect", "since", "until")


def parse_id(value: object) -> int | None:
    """A row id from a query string or form: ASCII digits that fit a bigint, else None.

    str.isdigit() is true for "²" and "٣" too, and int("²") raises: the check must be isascii() as well.
    """
    if isinstance(value, str) and 0 < len(value) <= 18 and value.isascii() and value.isdigit():
        return int(value)
    return None


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: a request Django refused while reading it, with the reason in plain words."""
    if isinstance(exception, TooManyFilesSent):
        reason = f"Send at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files at a time."
    elif isinstance(exception, RequestDataTooBig):
        reason = "This form is too large; shorten what you typed."
    elif isinstance(exception, TooManyFieldsSent):
        reason = "This form has too many fields."
    else:
        reason = "This request could not be read."
    return HttpResponse(reason, status=400, content_type="text/plain; charset=utf-8")


def archived(access: ProjectAccess) -> HttpResponse | None:
    """Archived projects keep every image but take no new jobs."""
    if access.project.is_archived:
        return HttpResponse("This project is archived; unarchive it to make images.", status=409)
    return None


def filters_query(request: HttpRequest) -> str:
    """The current gallery filters as a query string, so links keep the view (and share it)."""
    kept = [(key, value) for key in FILTER_KEYS for value in request.GET.getlist(key) if value]
    return urlencode(kept)


def serve(name: str, *, content_type: str, download_name: str | None = None) -> FileResponse:
    """A stored file, to members only (the caller checked access), never sniffed or run as a page."""
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
