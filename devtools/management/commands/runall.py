"""`make run`: the whole workspace on one machine, in one terminal.

Starts the web server (gunicorn, as in production, unless DEBUG is on), a Celery worker and beat (and,
with no OPENAI_API_KEY, the local demo image service), prints how to log in, and stops everything on
Ctrl+C or when any part dies.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from workspace import imagemodels

FIRST_LOGIN_FILE = "first-login.txt"


def gunicorn_command(python: str, address: str) -> list[str]:
    """The web server of `make run`, `make load` and the burst test: two processes of four threads, so
    a burst waits in gunicorn's backlog (2048) for a free thread instead of being reset, and a request
    that waits on SQLite's write lock does not hold up the others."""
    return [
        *(python, "-m", "gunicorn", "config.wsgi", "--config", "config/gunicorn.conf.py"),
        *("--bind", address, "--workers", "2", "--threads", "4"),
    ]


class Command(BaseCommand):
    help = "Run web, worker, beat (and the demo image service when no API key is set)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--demo-latency", type=float, default=float(os.environ.get("DEMO_LATENCY", "3")))

    def handle(self, *args, demo_latency: float, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        login_line = self._ensure_first_user()
        python = sys.executable
        env = os.environ.copy()
        processes: dict[str, subprocess.Popen] = {}

        if settings.DEMO_MODE:
            # The stand-in checks requests by the registry's rows, as the forms do (as of this start).
            models_file = Path(settings.VAR_DIR) / "standin-models.json"
            models_file.write_text(json.dumps(imagemodels.standin_models()), encoding="utf-8")
            processes["demo image service"] = subprocess.Popen(
                [
                    python,
                    "-m",
                    "standin",
                    "--port",
                    str(settings.STANDIN_PORT),
                    "--latency",
                    str(demo_latency),
                    "--models",
                    str(models_file),
                ],
                env=env,
            )
            self._wait_for(f"http://127.0.0.1:{settings.STANDIN_PORT}/healthz", processes)

        processes["worker"] = subprocess.Popen(
            [
                python,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            env=env,
        )
        processes["beat"] = subprocess.Popen(
            [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING"], env=env
        )
        address = f"127.0.0.1:{settings.PORT}"
        if settings.DEBUG:
            # Only when asked for (DEBUG=true make run): the development server resets connections
            # under a burst and renders pages several times slower.
            web = [python, "manage.py", "runserver", address, "--noreload"]
        else:
            if settings.STORAGES["staticfiles"]["BACKEND"].endswith("ManifestStaticFilesStorage"):
                call_command("collectstatic", interactive=False, verbosity=0)
            # As in production: threads ride out a burst of submits while one waits on the database.
            web = gunicorn_command(python, address)
        processes["web"] = subprocess.Popen(web, env=env)
        self._wait_for(f"http://{address}/healthz", processes)

        self.stdout.write(
            self.style.SUCCESS(f"\n  Atelier is running at http://{address}/\n")
            + f"  {login_line}\n"
            + (
                "  Demo mode: images come from the local demo service (set OPENAI_API_KEY for real ones).\n"
                if settings.DEMO_MODE
                else ""
            )
            + "  Press Ctrl+C to stop.\n"
        )
        self._supervise(processes)

    def _ensure_first_user(self) -> str:
        users = get_user_model().objects
        password_file = settings.VAR_DIR / FIRST_LOGIN_FILE
        if not users.exists():
            password = secrets.token_urlsafe(12)
            users.create_superuser("admin", "admin@example.com", password)
            password_file.write_text(f"admin\n{password}\n")
            password_file.chmod(0o600)
        if password_file.exists():
            username, password = password_file.read_text().split()[:2]
            return f"Log in as  {username} / {password}   (saved in {password_file}; change it in Admin)"
        return "Log in with your account (create one with: python manage.py createsuperuser)"

    def _wait_for(self, url: str, processes: dict[str, subprocess.Popen], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(processes)
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self._stop(processes)
        raise SystemExit(f"{url} did not answer within {timeout:.0f} s")

    def _check_alive(self, processes: dict[str, subprocess.Popen]) -> None:
        for name, process in processes.items():
            if process.poll() is not None:
                self._stop(processes)
                raise SystemExit(
                    f"The {name} stopped (exit code {process.returncode}); see the output above."
                )

    def _supervise(self, processes: dict[str, subprocess.Popen]) -> None:
        stop = False

        def request_stop(*_args) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        try:
            while not stop:
                self._check_alive(processes)
                time.sleep(0.5)
        finally:
            self._stop(processes)

    def _stop(self, processes: dict[str, subprocess.Popen]) -> None:
        # The demo image service goes last, so a job in flight is not failed by our own shutdown.
        ordered = sorted(processes.items(), key=lambda item: item[0] == "demo image service")
        for _name, process in ordered:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
