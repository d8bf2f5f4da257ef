"""`manage.py create_api_token alice --name ci --scopes read,generate`: prints the secret, once."""

from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from workspace.api.tokens import token_create


class Command(BaseCommand):
    help = "Make an API token for a user and print its secret (shown this once; only its hash is kept)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", default="read", help="Comma-separated: read, generate, admin.")
        parser.add_argument("--days", type=int, default=None, help="Expires after this many days.")
        parser.add_argument("--monthly-limit", default=None, help="Dollars a month this token may spend.")

    def handle(self, *args, username: str, name: str, scopes: str, days, monthly_limit, **options) -> None:
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user called {username!r}.")
        try:
            limit = Decimal(monthly_limit) if monthly_limit is not None else None
        except InvalidOperation:
            raise CommandError("--monthly-limit must be a number of dollars.") from None
        expires = timezone.now() + timedelta(days=days) if days else None
        try:
            made = token_create(
                user=user,
                name=name,
                scopes=[s.strip() for s in scopes.split(",") if s.strip()],
                expires_at=expires,
                monthly_limit=limit,
            )
        except ValueError as refusal:
            raise CommandError(str(refusal)) from None
        self.stdout.write(made.secret)
