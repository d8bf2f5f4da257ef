"""`make load`: start a `make run`-style web server (devtools/loadkit.py), run locust against it
headless, and print submits per second and the 95th percentile.

    python -m devtools.load [-u 50] [-t 20s]
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from devtools.loadkit import PASSWORD, USERNAME, LaptopServer

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-u", "--users", type=int, default=50)
    parser.add_argument("-t", "--time", default="20s")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="atelier-load-") as tmp,
        LaptopServer(Path(tmp) / "var") as server,
    ):
        prefix = Path(tmp) / "locust"
        env = os.environ | {
            "LOAD_USERNAME": USERNAME,
            "LOAD_PASSWORD": PASSWORD,
            "LOAD_PROJECT": str(server.project_id),
        }
        command = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless"]
        command += ["-u", str(args.users), "-r", str(args.users), "-t", args.time, "--host", server.base_url]
        command += ["--csv", str(prefix), "--only-summary"]
        subprocess.run(command, env=env, check=False)  # noqa: S603 (our own locust)
        with open(f"{prefix}_stats.csv", newline="") as stats:
            rows = {row["Name"]: row for row in csv.DictReader(stats)}
    submit = rows["submit"]
    failures = int(submit["Failure Count"])
    print(
        f"\nsubmits: {submit['Request Count']} in {args.time} by {args.users} users, "
        f"{float(submit['Requests/s']):.1f}/s, p50 {submit['50%']} ms, p95 {submit['95%']} ms, "
        f"failures {failures}"
    )
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
