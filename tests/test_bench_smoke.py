"""`python -m bench --quick` works: a real `authserver serve`, load, JSON with positive figures.

Seconds, not minutes: it proves the harness, not the performance (that is `make bench`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` in the clone; it must exit 0."""
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_quick_benchmark_writes_positive_figures(tmp_path: Path):
    proc = bench(
        *("bench", "--quick", "--only", "password_login", "--results-dir", str(tmp_path)),
        timeout=180,  # ~15 s on an idle 2-core machine; generous for a loaded CI
    )
    assert "password login" in proc.stdout  # the table

    data = json.loads((tmp_path / "password_login.json").read_text())
    assert data["quick"] is True
    assert data["machine"]["cores"] >= 1 and data["machine"]["sqlite"]
    results = data["results"]
    for name in ("healthz", "password_login"):
        figures = results[name]
        assert figures["rate_per_s"] > 0, figures
        assert 0 < figures["p50_ms"] <= figures["p99_ms"], figures
        assert figures["errors"] == 0, figures["error_samples"]
        assert not any(code.startswith("5") for code in figures["statuses"]), figures
        # Each worker's count, read from its metric file: together they answered every
        # request sent in the window (a login's two, give or take those in flight).
        per_worker = figures["worker_requests"]
        assert len(per_worker) == data["config"]["workers"], figures
        assert abs(sum(per_worker) - figures["requests"]) <= figures["connections"] * 2, figures
    for name in ("argon2id_verify_1_thread", "argon2id_verify_2_threads"):
        assert results[name]["rate_per_s"] > 0, results[name]
    # Issue 16: logins per unit of hash cost, from slices of each taken in turn.
    slices = data["interleaved"]["rounds"]
    assert slices and all(s["ratio"] > 0 and s["login_errors"] == 0 for s in slices), slices
    assert data["argon2id_bound_per_s"] > 0 and data["logins_vs_argon2id_2_threads"] > 0
    assert "Argon2id bound" in proc.stdout
    assert data["server_log_problems"] == []


def test_quick_scale_benchmark_seeds_and_measures(tmp_path: Path):
    """The scale run's bulk SQL keeps up with the schema (a column added by a migration and
    missing from its INSERTs fails here, not after an hour of `make bench`)."""
    out = tmp_path / "scale.json"
    bench(
        *("bench.scale", "--quick", "--scale", "0.0005", "--backend", "sqlite"),
        *("--duration", "0.3"),  # the SQL is what is checked here, not the figures
        *("--out", str(out)),
        timeout=300,  # ~20 s on an idle 2-core machine
    )
    data = json.loads(out.read_text())
    backend = data["backends"]["sqlite"]
    counts = backend["counts"]
    assert counts["login_events"] > counts["users"] > 0, counts
    assert backend["server_log_problems"] == []
    for phase in ("small", "large"):
        for name in ("healthz", "password_login", "passkey_login", "auth_verify"):
            figures = backend[phase][name]
            assert figures["rate_per_s"] > 0 and figures["errors"] == 0, (phase, name, figures)


def test_quick_mail_delivery_benchmark(tmp_path: Path):
    """The e-mail delivery benchmark drains a real outbox to a real SMTP server."""
    bench(
        *("bench", "--quick", "--only", "mail_delivery", "--results-dir", str(tmp_path)),
        timeout=120,  # ~3 s
    )
    data = json.loads((tmp_path / "mail_delivery.json").read_text())
    assert data["emails"] == 60
    assert data["delivery_cpu_ms_per_email"] > 0 and data["delivery_per_s_one_thread"] > 0
    assert 0 < data["message_bytes_cpu_ms"] < data["flask_mail_message_bytes_cpu_ms"]


def test_smtp_sink_counts_messages_in_its_own_process():
    """The benchmarks' relay runs outside the load generator and counts what it accepted."""
    import os
    import smtplib

    from bench.smtp_sink import SinkProcess

    sink = SinkProcess().start()
    try:
        assert sink.process is not None and sink.process.pid != os.getpid()
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
            for n in range(3):
                client.sendmail("a@example.fr", [f"b{n}@example.fr"], f"Subject: {n}\r\n\r\nx")
        assert sink.received() == 3
        sink.clear()
        assert sink.received() == 0
        assert sink.cpu_seconds() > 0
    finally:
        sink.stop()
    assert sink.process is None


def test_a_new_browser_logins_cpu_is_split_by_process_and_adds_up():
    """bench/new_browser's « CPU ms per login » rows: where a new browser's extra cost goes."""
    from bench.new_browser import cpu_per_login

    result = {
        "rate_per_s": 500.0,
        "worker_cpu_cores": [0.6, 0.5],
        "server_cpu_cores": 1.2,  # the workers, the mail deliverer and the master
        "client_cpu_cores": 0.3,
        "machine_busy_cores": 1.7,  # the SMTP relay (and PostgreSQL, Redis) is the rest
    }
    parts = cpu_per_login(result)
    assert parts == {"web_workers": 2.2, "mail": 0.2, "relay_and_rest": 0.4, "load_generator": 0.6}
    assert round(sum(parts.values()), 6) == 1000 * 1.7 / 500
