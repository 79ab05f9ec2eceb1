"""What every benchmark receives and returns (``Options``, ``Report``), its table rows and
JSON, and the description of the machine it ran on."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.server import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"


@dataclass(frozen=True)
class Options:
    """What every benchmark module's ``run(options)`` receives."""

    quick: bool = False
    connections: int = 32
    duration: float = 10.0  # measured seconds per HTTP scenario (after a warm-up)
    max_operations: int = 1_000_000  # cap per scenario: runs are bounded by count and time
    workers: int = 2
    threads: int = 4
    engine: str = "granian"  # authserver serve --engine


@dataclass
class Report:
    """A benchmark's outcome: JSON data for bench/results/<name>.json and rows for the table."""

    name: str
    data: dict[str, Any]
    rows: list[list[Any]]


TABLE_HEADER = (
    "scenario",
    "per s",
    "p50 ms",
    "p99 ms",
    "count",
    "errors",
    "client CPU",
    "server CPU (per worker)",
    "requests per worker",
    "other CPU",
)


# Other processes using more than this (in cores) during a measurement make it noisy.
NOISY_CORES = 0.25


def summary_row(label: str, value: Any, note: str) -> list[Any]:
    """A table row under the measured ones: a figure and its verdict (or a note) in the
    « requests per worker » column, the rest blank."""
    return [label, value, "", "", "", "", "", "", note]


def libpq_url(database_url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as psycopg.connect() takes it."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def cpu_split(result: Mapping[str, Any]) -> tuple[float, float, float, float]:
    """A LoadResult dict's CPU, in cores: the web workers; the rest of the server (its idle
    master and the mail deliverer beside the workers); the rest of the machine (other
    processes: an SMTP relay, PostgreSQL, Redis); this load generator."""
    workers = sum(result["worker_cpu_cores"])
    server = result["server_cpu_cores"]
    client = result["client_cpu_cores"]
    return workers, server - workers, result["machine_busy_cores"] - client - server, client


def load_row(label: str, result: Mapping[str, Any]) -> list[Any]:
    """A table row for a LoadResult dict (CPU in cores; other = rest of the machine)."""
    workers = "/".join(f"{c:.2f}" for c in result["worker_cpu_cores"])
    _, rest, other, _ = cpu_split(result)
    if rest >= 0.01:
        workers += f", mail {rest:.2f}"
    return [
        label,
        result["rate_per_s"],
        result["p50_ms"],
        result["p99_ms"],
        result["operations"],
        result["errors"],
        f"{result['client_cpu_cores']:.2f}",
        f"{result['server_cpu_cores']:.2f} ({workers})",
        "/".join(str(n) for n in result.get("worker_requests", [])),
        f"{max(0.0, other):.2f}{' !' if other > NOISY_CORES else ''}",
    ]


# --------------------------------------------------------------------------- machine, output


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_mib() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return None


def _versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_mib": _memory_mib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "packages": _versions(
            "gunicorn", "flask", "argon2-cffi", "argon2-cffi-bindings", "sqlalchemy", "werkzeug"
        ),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "git_commit": _git_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain text table, numbers right-aligned; short rows (summaries) end blank."""
    cells = [[str(h) for h in header]] + [
        [f"{c:,.1f}" if isinstance(c, float) else str(c) for c in row]
        + [""] * (len(header) - len(row))
        for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(row):
            numeric = i > 0 and cell.replace(",", "").replace(".", "").replace("-", "").isdigit()
            parts.append(cell.rjust(widths[i]) if numeric else cell.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
