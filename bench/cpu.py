"""CPU accounting of the benchmarks: a process tree's, the machine's, this process's, read
from ``/proc`` (the server's web workers told apart from its mail deliverer)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (every thread's), as ``/proc`` lists them."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found.extend(int(p) for p in text.split())
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its live descendants (Linux /proc)."""
    total = 0.0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime
        stack.extend(children(current))
    return total


def system_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, all cores (``/proc/stat``)."""
    try:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / _CLK_TCK, steal / _CLK_TCK


def is_mail_deliverer(pid: int) -> bool:
    """The ``authserver mail deliver`` process ``authserver serve`` runs beside its workers."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"mail" in words and b"deliver" in words


def web_workers(pid: int) -> list[int]:
    """The gunicorn workers of the server ``pid`` (its mail deliverer left out), pid order."""
    return [child for child in sorted(children(pid)) if not is_mail_deliverer(child)]


def workers_cpu_seconds(pid: int) -> list[float]:
    """CPU seconds of each gunicorn worker of ``pid``, in pid order."""
    return [tree_cpu_seconds(child) for child in web_workers(pid)]


def workers_requests(metrics_dir: Path, pid: int) -> dict[int, int]:
    """Requests answered so far by each live worker of the server ``pid``, from the
    Prometheus multiprocess files the workers write (one ``histogram_<pid>.db`` each): the
    request-duration histogram counts every request, fast path included. Each bucket is
    stored there on its own (the collector makes them cumulative): their sum is the count."""
    from prometheus_client.mmap_dict import MmapedDict

    counts: dict[int, int] = {}
    for worker in web_workers(pid):
        path = metrics_dir / f"histogram_{worker}.db"
        total = 0
        with contextlib.suppress(OSError):
            for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
                name, sample, _labels, *_ = json.loads(key)
                if name == "authserver_request_duration_seconds" and sample.endswith("_bucket"):
                    total += int(value)
        counts[worker] = total
    return counts


def listening_sockets(port: int) -> int:
    """Sockets in LISTEN state on ``port`` (IPv4), from the kernel's own table: one per
    worker when each binds its own (SO_REUSEPORT)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
