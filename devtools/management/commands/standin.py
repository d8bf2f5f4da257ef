"""``python manage.py standin``: run the OpenAI Images API stand-in in the foreground."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from standin import StandinServer


class Command(BaseCommand):
    help = "Serve a local stand-in for the OpenAI Images API (point OPENAI_BASE_URL at the printed URL)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument(
            "--latency", type=float, default=0.0, help="Seconds to wait before each image answer."
        )
        parser.add_argument(
            "--latency-jitter",
            type=float,
            default=0.0,
            help="Up to this many seconds added or removed at random.",
        )
        parser.add_argument("--quiet", action="store_true", help="Do not log each request to stderr.")

    def handle(self, *args: Any, **options: Any) -> None:
        server = StandinServer(
            host=options["host"],
            port=options["port"],
            latency=options["latency"],
            latency_jitter=options["latency_jitter"],
            log_requests=not options["quiet"],
        )

        def announce(base_url: str) -> None:
            self.stdout.write(f"Stand-in OpenAI Images API at {base_url} (Ctrl+C to stop)")
            self.stdout.flush()

        try:
            server.serve_forever(on_ready=announce)
        except KeyboardInterrupt:
            self.stdout.write("Stand-in stopped.")
