"""Helpers every view module shares: serving stored files, refusing work in archived projects, and the
gallery filters that ride along on links."""

from urllib.parse import urlencode

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect

from workspace import outputs
from workspace.access import ProjectAccess

FILTER_KEYS = ("q", "author", "model", "review", "favourites", "kind", "aspect", "since", "until")


def archived(access: ProjectAccess) -> HttpResponse | None:
    """Archived projects keep every image but take no new jobs."""
    if access.project.is_archived:
        return HttpResponse("This project is archived; unarchive it to make images.", status=409)
    return None


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
