"""A `make run`-style web server of its own (gunicorn, ATELIER_LOCAL, SQLite in a fresh VAR_DIR), for
`make load` and the burst test: an account, a project, and the address to hit."""

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from devtools.management.commands.runall import gunicorn_command

ROOT = Path(__file__).resolve().parent.parent
USERNAME, PASSWORD = "loadtester", "load-tester-password-4471"
# Variables of the machine that would point the server elsewhere than its own SQLite and demo mode.
_FOREIGN = ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "SECRET_KEY", "DEBUG")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LaptopServer:
    def __init__(self, var_dir: Path, port: int | None = None) -> None:
        self.var_dir = Path(var_dir)
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in _FOREIGN and not k.startswith("DJANGO_")}
        self.env |= {"ATELIER_LOCAL": "true", "VAR_DIR": str(self.var_dir), "LOG_LEVEL": "WARNING"}
        self.process: subprocess.Popen | None = None
        self.project_id: int | None = None

    def _manage(self, *args: str, **env: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env | env, check=True, timeout=180
        )

    def start(self) -> "LaptopServer":
        self._manage("migrate", "-v0")
        self._manage(
            "createsuperuser",
            "--noinput",
            "--username",
            USERNAME,
            "--email",
            "load@example.com",
            DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        )
        self.process = subprocess.Popen(
            gunicorn_command(sys.executable, f"127.0.0.1:{self.port}"), cwd=ROOT, env=self.env
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the web server did not start") from None
                time.sleep(0.2)
        session = self.signed_in()
        self.project_id = session.create_project("Load")
        return self

    def signed_in(self) -> "Session":
        session = Session(self.base_url)
        session.log_in(USERNAME, PASSWORD)
        return session

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "LaptopServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Session:
    """A signed-in browser, as far as cookies and the CSRF token go (standard library only)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.jar if c.name == name)

    def log_in(self, username: str, password: str) -> None:
        self.opener.open(f"{self.base_url}/accounts/login/", timeout=30).read()
        self.post("/accounts/login/", {"username": username, "password": password})
        self.cookie("sessionid")  # raises StopIteration when the sign-in failed

    def post(self, path: str, data: dict) -> str:
        body = urllib.parse.urlencode(data | {"csrfmiddlewaretoken": self.cookie("csrftoken")}).encode()
        with self.opener.open(f"{self.base_url}{path}", data=body, timeout=30) as response:
            return response.geturl()

    def create_project(self, name: str) -> int:
        url = self.post("/projects/new", {"name": name})
        return int(re.search(r"/p/(\d+)/", url).group(1))

    def headers(self) -> dict[str, str]:
        """What a request of this session sends: its cookies and the CSRF token."""
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.jar)
        return {"Cookie": cookies, "X-CSRFToken": self.cookie("csrftoken")}


GENERATION_FORM = {  # the same form as devtools/locustfile.py
    "prompt": "A lemon on a blue tiled table, morning light",
    "model": "gpt-image-2",
    "size": "square",
    "quality": "low",
    "output_format": "png",
    "output_compression": "100",
    "background": "auto",
    "moderation": "auto",
    "complexity": "",
    "n": "1",
}
