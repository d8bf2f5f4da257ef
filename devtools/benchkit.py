"""Measuring helpers shared by the benchmark commands (bench, bench_gallery)."""

import contextlib
import math
import os
import statistics
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.conf import settings


def percentile(values: Iterable[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), so p95 of 20 values is meaningful."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "p95": percentile(values, 0.95),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def git_facts() -> dict[str, Any]:
    """Read-only: the commit and which files differ from it (other people edit this tree meanwhile)."""

    def git(*args: str) -> str:
        with contextlib.suppress(Exception):
            return subprocess.run(
                ["git", *args], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=10, check=False
            ).stdout.rstrip()
        return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "modified": [line[3:] for line in git("status", "--porcelain").splitlines()],
    }


def system_busy_seconds() -> float:
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def commands_cpu_seconds(prefixes: tuple[str, ...]) -> float:
    """CPU used so far by processes whose command starts with one of `prefixes`, including their exited
    children (Postgres backends are reaped by the postmaster)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.find("(") + 1 : text.rfind(")")].startswith(prefixes):
            fields = text.rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15]) / ticks  # utime stime cutime cstime
    return total
