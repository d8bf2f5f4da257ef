"""``python manage.py chaos`` (``make chaos``): hundreds of jobs over HTTP while things die, then the proof.

Starts a private Redis and a private Postgres cluster on free ports (never the machine's shared ones,
which others use), migrates it, serves the app with gunicorn, runs two worker processes and beat against
the in-process stand-in (latency 0.5-2 s, transient faults), and while jobs run SIGKILLs and SIGTERMs
workers, kills beat, restarts Redis (its queue lost) and restarts Postgres. It passes when no job is lost,
wrong, charged twice or left holding a reservation, and every billed call is on the ledger but those a
SIGKILL cut off. Prints a summary table; exits non-zero on any violation.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from devtools import chaoskit

DEFAULT_KILLS = "sigkill,redis,sigterm,beat,postgres,sigkill,redis,sigterm,postgres,sigkill"


class Command(BaseCommand):
    help = "Submit jobs over HTTP while killing workers, beat, Redis and Postgres; check nothing went wrong."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--jobs", type=int, default=300)
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument("--concurrency", type=int, default=8, help="Calls in flight per worker.")
        parser.add_argument("--latency", type=float, default=1.25, help="The stand-in's mean answer time.")
        parser.add_argument("--jitter", type=float, default=0.75, help="± seconds around --latency.")
        parser.add_argument(
            "--fault-every", type=float, default=3.0, help="Seconds between transient faults."
        )
        parser.add_argument("--kills", default=DEFAULT_KILLS, help=f"In order; kinds: {chaoskit.KILL_KINDS}.")
        parser.add_argument("--timeout", type=float, default=900)
        parser.add_argument("--keep", action="store_true", help="Keep the temporary folder (logs, data).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            kills = chaoskit.parse_kills(options["kills"])
        except ValueError as error:
            raise CommandError(str(error)) from error
        folder = Path(tempfile.mkdtemp(prefix="atelier-chaos-"))
        redis = chaoskit.PrivateRedis(folder)
        postgres = chaoskit.PrivatePostgres(folder / "pg")
        try:
            redis.start()
            postgres.start()
            self._use_database(postgres)
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "-v0"],
                cwd=chaoskit.ROOT,
                env=chaoskit.Chaos.migrate_env(database_url=postgres.url),
                check=True,
            )
            project_id = chaoskit.ensure_user_and_project(username="chaos")
            self.stdout.write(
                f"chaos: {options['jobs']} jobs, {options['workers']} workers x {options['concurrency']}, "
                f"kills {','.join(kills)}; logs in {folder}"
            )
            chaos = chaoskit.Chaos(
                folder=folder,
                database_url=postgres.url,
                redis=redis,
                postgres=postgres,
                project_id=project_id,
                username="chaos",
                jobs=options["jobs"],
                kills=kills,
                workers=options["workers"],
                concurrency=options["concurrency"],
                latency=options["latency"],
                jitter=options["jitter"],
                fault_every=options["fault_every"],
                timeout=options["timeout"],
                log=self.stdout.write,
            )
            report = chaos.run()
        finally:
            connection.close()
            redis.stop()
            postgres.stop()
            if not options["keep"]:
                shutil.rmtree(folder, ignore_errors=True)
        self.stdout.write(report.table())
        for violation in report.violations[:50]:
            self.stdout.write(f"  VIOLATION {violation}")
        if report.violations:
            raise CommandError(f"{len(report.violations)} violations")
        self.stdout.write("chaos: passed")

    def _use_database(self, postgres: chaoskit.PrivatePostgres) -> None:
        """Point this process's connection at the private cluster (before it has connected anywhere)."""
        connection.close()
        connection.settings_dict.update(
            HOST="127.0.0.1", PORT=str(postgres.port), NAME="chaos", USER="postgres", PASSWORD=""
        )
