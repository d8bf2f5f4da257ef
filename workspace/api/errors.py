"""One error shape for every API answer that is not a success:

    {"error": {"code": "not_found", "message": "…", "fields": {"field": ["reason"]}}}

`exception_handler` is DRF's hook; `error_response` is for the few answers made outside a view.
"""

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from workspace import jobs, limits, spend, uploads
from workspace.access import ProjectArchived
from workspace.api.tokens import TokenLimitExceeded

CODES = {
    400: "invalid",
    401: "not_authenticated",
    402: "over_budget",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "throttled",
    503: "busy",
}


class ApiError(exceptions.APIException):
    """An error with a code of our own: ApiError(409, "idempotency_key_reused", "…")."""

    def __init__(
        self, status_code: int, code: str, message: str, fields: dict | None = None, extra: dict | None = None
    ) -> None:
        super().__init__(message, code)
        self.status_code = status_code
        self.error_code = code
        self.fields = fields or {}
        # More keys in "error" for one route's refusals (a batch's CSV problems, each with row and column).
        self.extra = extra or {}


def body(code: str, message: str, fields: dict | None = None, extra: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}, **(extra or {})}}


def error_response(status_code: int, message: str, code: str | None = None) -> JsonResponse:
    return JsonResponse(body(code or CODES.get(status_code, "error"), message), status=status_code)


def _fields(detail) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {
            str(name): [str(item) for item in (value if isinstance(value, list) else [value])]
            for name, value in detail.items()
        }
    return {}


def exception_handler(exc, context) -> Response | None:
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        return Response(body(exc.error_code, str(exc.detail), exc.fields, exc.extra), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "You may not do this.")
    elif isinstance(exc, ProjectArchived):
        return Response(body("project_archived", str(exc)), status=status.HTTP_409_CONFLICT)
    elif isinstance(exc, spend.BudgetExceeded | TokenLimitExceeded):
        return Response(body("over_budget", str(exc)), status=status.HTTP_402_PAYMENT_REQUIRED)
    elif isinstance(exc, uploads.UploadRejected):
        return Response(body("upload_rejected", str(exc)), status=status.HTTP_400_BAD_REQUEST)
    elif isinstance(exc, jobs.ModelRetired):
        return Response(body("model_retired", str(exc)), status=status.HTTP_409_CONFLICT)
    elif isinstance(exc, jobs.TooManyWaiting):
        # The fair-share limit on jobs waiting: a rate limit in all but name, so a client backs off
        # as it does for the per-minute one. Jobs take seconds to a minute or two to start.
        return Response(body("too_many_waiting", str(exc)), status=429, headers={"Retry-After": "30"})
    elif isinstance(exc, limits.Busy):
        return Response(body("busy", str(exc)), status=503, headers={"Retry-After": "5"})
    if not isinstance(exc, exceptions.APIException):
        return None  # a real failure: Django's 500
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None) is not None:
        headers["Retry-After"] = str(int(exc.wait) + (0 if exc.wait == int(exc.wait) else 1))
    if isinstance(exc, exceptions.ValidationError):
        fields = _fields(exc.detail)
        message = (
            "Some fields are not valid: " + ", ".join(fields) + "."
            if fields
            else " ".join(str(d) for d in (exc.detail if isinstance(exc.detail, list) else [exc.detail]))
        )
        if "non_field_errors" in fields:
            message = " ".join(fields.pop("non_field_errors"))
        return Response(body("invalid", message, fields), status=400, headers=headers)
    code = exc.get_codes() if isinstance(exc.get_codes(), str) else CODES.get(exc.status_code, "error")
    if isinstance(exc, exceptions.Throttled):
        code = "throttled"
    return Response(body(code, str(exc.detail)), status=exc.status_code, headers=headers)
