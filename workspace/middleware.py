"""Refusals raised below the views that Django itself has no answer for."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from workspace.access import ProjectArchived


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
