"""Bearer tokens for the API (DRF authentication), scopes (permissions) and per-token rate limits."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.throttling import SimpleRateThrottle

from workspace import hot_queries
from workspace.api.models import ApiToken

LAST_USED_EVERY = timedelta(minutes=1)


class BearerTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer atl_…`: the request acts as the token's owner. Each refusal says why."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send the token as “Authorization: Bearer atl_…”.")
        try:
            secret = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("This token is not valid.") from None
        token = hot_queries.token_by_hash(ApiToken.hash(secret))
        if token is None:
            raise exceptions.AuthenticationFailed("This token is not valid.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This token was revoked.")
        if token.is_expired:
            raise exceptions.AuthenticationFailed(
                f"This token expired on {token.expires_at:%Y-%m-%d %H:%M} UTC."
            )
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The account this token belongs to is disabled.")
        _touch(token)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


def _touch(token: ApiToken) -> None:
    """Record the last use at most once a minute: one conditional UPDATE, skipped when recent."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
        return
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_EVERY)
    ).update(last_used_at=now)


def needs(scope: str) -> type[BasePermission]:
    """A permission class: signed in with a token that has `scope` (403 naming the scope otherwise)."""

    class NeedsScope(BasePermission):
        message = f"This token lacks the “{scope}” scope."

        def has_permission(self, request, view) -> bool:
            if request.user is None or not request.user.is_authenticated:
                raise exceptions.NotAuthenticated("Send a token: “Authorization: Bearer atl_…”.")
            token = request.auth
            return isinstance(token, ApiToken) and token.allows(scope)

    NeedsScope.__name__ = f"Needs{scope.title()}Scope"
    return NeedsScope


class NeedsStaff(BasePermission):
    message = "This is for staff only."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_staff)


class TokenRateThrottle(SimpleRateThrottle):
    """API_RATE_PER_MINUTE requests a minute per token (per client address before authentication)."""

    scope = "api"

    def get_rate(self) -> str:
        return f"{settings.API_RATE_PER_MINUTE}/min"

    def get_cache_key(self, request, view) -> str:
        if isinstance(request.auth, ApiToken):
            # The secret's hash, not the row's id: ids restart with a new database, the cache may not.
            return f"throttle_api_token_{request.auth.key_hash[:24]}"
        return f"throttle_api_anon_{self.get_ident(request)}"


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Tells drf-spectacular how BearerTokenAuthentication looks in the schema."""

    target_class = "workspace.api.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return {"type": "http", "scheme": "bearer", "description": "A token from your account page: atl_…"}


def token_user(header: str):
    """The active owner of a usable token named in an Authorization header, or None (no exceptions).

    For BoundedRequestMiddleware, which sizes the body cap before DRF authenticates anything.
    """
    kind, _, secret = header.partition(" ")
    if kind.lower() != "bearer" or not secret.strip().isascii():
        return None
    token = hot_queries.token_by_hash(ApiToken.hash(secret.strip()))
    if token is None or not token.is_usable or not token.user.is_active:
        return None
    return token.user
