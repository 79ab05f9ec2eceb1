"""``authserver serve`` under gunicorn and under Granian, the same app, in one run.

Measured side by side, in turn (A, B, B, A…: the machine's drift weighs on both), with the
same workers × threads, on SQLite, 16 keep-alive connections:

- ``GET /healthz``: what each engine costs around a request that does almost nothing;
- a returning browser's passkey login (``options`` + ``verify``, the device cookie kept);
- a new browser's passkey login (no cookie: its alert e-mail is queued, delivered to a real
  SMTP sink before the next measure).

Each figure comes with the server's CPU per operation (all its processes: workers, master,
mail deliverer), the one that decides how many logins two cores answer.

``python -m bench.engines [--rounds 3] [--duration 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from bench.forward_auth import healthz_op
from bench.load import Load
from bench.new_browser import new_browser_op, pending_mail
from bench.passkey_login import passkey_login_op, prime, seed_users
from bench.report import (
    RESULTS_DIR,
    TABLE_HEADER,
    Options,
    Report,
    load_row,
    log,
    machine,
    summary_row,
    table,
    write_json,
)
from bench.server import ServerProcess
from bench.smtp_sink import SinkProcess

NAME = "engines"
ENGINES = ("gunicorn", "granian")
CONNECTIONS = 16


def cpu_ms(result: dict[str, Any]) -> float:
    """The server's CPU per operation, in ms."""
    rate = result["rate_per_s"]
    return round(1000 * result["server_cpu_cores"] / rate, 3) if rate else 0.0


def run(options: Options, rounds: int) -> Report:
    duration = 1.5 if options.quick else options.duration
    count = 64 if options.quick else 500
    sink = SinkProcess().start()
    servers = {
        engine: ServerProcess(
            workers=options.workers,
            threads=options.threads,
            env={"AUTHSERVER_MAIL_URL": sink.url},
            engine=engine,
        )
        for engine in ENGINES
    }
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        engine: {"healthz": [], "returning": [], "new": []} for engine in ENGINES
    }
    rows: list[list[Any]] = []
    try:
        populations = {}
        for engine, server in servers.items():
            server.migrate()
            server.start(wait=False)
            url = server.env["AUTHSERVER_DATABASE_URL"]
            origin = f"http://localhost:{server.port}"
            populations[engine] = seed_users(url, count, origin, password=False)
        for engine, server in servers.items():
            server.wait_healthy()
            population = populations[engine]
            prime(
                server,
                lambda load, p=population: passkey_login_op(load, p, CONNECTIONS),
                2 * count,
                CONNECTIONS,
            )
        for number in range(1, rounds + 1):
            order = ENGINES if number % 2 else tuple(reversed(ENGINES))
            for engine in order:
                server, population = servers[engine], populations[engine]
                url = server.env["AUTHSERVER_DATABASE_URL"]
                scenarios = {
                    "healthz": healthz_op,
                    "returning": lambda load, p=population: passkey_login_op(load, p, CONNECTIONS),
                    "new": lambda load, p=population: new_browser_op(load, p, CONNECTIONS),
                }
                for scenario, make in scenarios.items():
                    log(f"[{NAME}] round {number}: {engine} {scenario} ...")
                    load = Load()
                    result = load.run(
                        f"{engine}_{scenario}_{number}",
                        server,
                        make(load),
                        connections=CONNECTIONS,
                        duration=duration,
                        max_operations=options.max_operations,
                        warmup=0.5 if options.quick else 1.0,
                        min_operations=10,
                    ).as_dict()
                    result["server_cpu_ms_per_op"] = cpu_ms(result)
                    results[engine][scenario].append(result)
                    rows.append(load_row(f"{engine}: {scenario}, round {number}", result))
                    started = time.monotonic()
                    while pending_mail(url) and time.monotonic() < started + 120:
                        time.sleep(0.2)  # the alerts leave before the next measure
    finally:
        sink.stop()
        problems = {}
        for engine, server in servers.items():
            server.stop()
            problems[engine] = server.log_problems()
            server.cleanup()
    summary: dict[str, Any] = {}
    for scenario in ("healthz", "returning", "new"):
        ratios = [
            b["rate_per_s"] / a["rate_per_s"] if a["rate_per_s"] else 0.0
            for a, b in zip(
                results["gunicorn"][scenario], results["granian"][scenario], strict=True
            )
        ]
        summary[scenario] = {
            "granian_per_gunicorn": round(statistics.median(ratios), 2),
            "by_round": [round(r, 2) for r in ratios],
            "cpu_ms": {
                engine: statistics.median(
                    r["server_cpu_ms_per_op"] for r in results[engine][scenario]
                )
                for engine in ENGINES
            },
            "p99_ms": {
                engine: statistics.median(r["p99_ms"] for r in results[engine][scenario])
                for engine in ENGINES
            },
        }
        cpu = summary[scenario]["cpu_ms"]
        rows.append(
            summary_row(
                f"{scenario}: granian ÷ gunicorn (median of rounds)",
                summary[scenario]["granian_per_gunicorn"],
                f"server CPU per op {cpu['gunicorn']} -> {cpu['granian']} ms",
            )
        )
    data = {
        "config": {
            "connections": CONNECTIONS,
            "workers": options.workers,
            "threads": options.threads,
            "duration_s": duration,
            "rounds": rounds,
            "users": count,
        },
        "summary": summary,
        "results": results,
        "server_log_problems": problems,
    }
    return Report(NAME, data, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    options = Options(
        quick=args.quick, duration=args.duration, workers=args.workers, threads=args.threads
    )
    report = run(options, 1 if args.quick else args.rounds)
    report.data["machine"] = machine()
    print(table(report.rows, TABLE_HEADER))
    write_json(args.out or RESULTS_DIR / f"{NAME}.json", report.data)


if __name__ == "__main__":
    main()
