"""How ``authserver serve``'s workers share keep-alive connections (issue 16).

The serve defaults (2 × cores workers, 4 threads) take passkey logins from 16 keep-alive
connections, opened afresh each round as a load balancer's pool or a benchmark opens them.
Each round prints the requests every worker answered (from the workers' own metric files):
a worker with none sat idle for the round while the others queued. Three setups are
measured in one run, alternating rounds: Granian (the default engine, one socket per
worker), gunicorn ``--reuse-port`` (the same, the kernel spreads connections) and gunicorn
``--shared-socket`` (one socket for all).

``python -m bench.worker_spread [--rounds 15] [--workers 4]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from bench.load import Load
from bench.passkey_login import passkey_login_op, prime, seed_users
from bench.report import (
    RESULTS_DIR,
    TABLE_HEADER,
    Options,
    Report,
    load_row,
    log,
    machine,
    table,
    write_json,
)
from bench.server import ServerProcess

NAME = "worker_spread"
# Label -> (engine, serve arguments): Granian's workers each bind their own socket.
SETUPS = {
    "granian": ("granian", ()),
    "gunicorn --reuse-port": ("gunicorn", ("--reuse-port",)),
    "gunicorn --shared-socket": ("gunicorn", ("--shared-socket",)),
}
MODES = tuple(SETUPS)


def start(mode: str, workers: int, threads: int, users: int, connections: int) -> Any:
    engine, serve_args = SETUPS[mode]
    server = ServerProcess(workers=workers, threads=threads, serve_args=serve_args, engine=engine)
    server.migrate()
    server.start(wait=False)
    population = seed_users(
        server.env["AUTHSERVER_DATABASE_URL"], users, f"http://localhost:{server.port}"
    )
    server.wait_healthy()
    prime(
        server,
        lambda load: passkey_login_op(load, population, connections),
        2 * users,
        connections,
    )
    return server, population


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    idle = [r for r in rounds if min(r["worker_requests"], default=0) == 0]
    shares = [min(r["worker_requests"]) / max(1, sum(r["worker_requests"])) for r in rounds]
    return {
        "rounds": len(rounds),
        "rounds_with_an_idle_worker": len(idle),
        "median_logins_per_s": round(statistics.median(r["rate_per_s"] for r in rounds), 1),
        "median_p99_ms": round(statistics.median(r["p99_ms"] for r in rounds), 2),
        "smallest_worker_share": round(min(shares), 3),
    }


def run(options: Options, rounds: int = 15, workers: int = 4) -> Report:
    rounds = 2 if options.quick else rounds
    duration = 1.0 if options.quick else 2.0
    users = 64 if options.quick else 200
    connections = 16
    servers = {mode: start(mode, workers, options.threads, users, connections) for mode in MODES}
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    rows: list[list[Any]] = []
    try:
        for number in range(1, rounds + 1):
            for mode in MODES:
                server, population = servers[mode]
                log(f"[{NAME}] {mode}, round {number}/{rounds} ...")
                load = Load()
                result = load.run(
                    "passkey_login",
                    server,
                    passkey_login_op(load, population, connections),
                    connections=connections,
                    duration=duration,
                    warmup=0.3,
                    min_operations=10,
                ).as_dict()
                results[mode].append(result)
                rows.append(load_row(f"{mode}, round {number}", result))
    finally:
        problems = {}
        for mode, (server, _population) in servers.items():
            server.stop()
            problems[mode] = server.log_problems()
            server.cleanup()
    summaries = {mode: summary(results[mode]) for mode in MODES}
    for mode, s in summaries.items():
        rows.append(
            [
                f"{mode}: rounds with an idle worker",
                f"{s['rounds_with_an_idle_worker']} of {s['rounds']}",
                "",
                s["median_p99_ms"],
                "",
                "",
                "",
                f"median {s['median_logins_per_s']} logins/s",
                f"smallest share {s['smallest_worker_share']:.0%}",
            ]
        )
    data = {
        "config": {
            "workers": workers,
            "threads": options.threads,
            "connections": connections,
            "round_s": duration,
            "rounds": rounds,
            "users_with_passkeys": users,
        },
        "summary": summaries,
        "results": results,
        "server_log_problems": problems,
    }
    return Report(name=NAME, data=data, rows=rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_spread", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    report = run(Options(quick=args.quick, threads=args.threads), args.rounds, args.workers)
    print(table(report.rows, TABLE_HEADER))
    if not args.quick:
        write_json(RESULTS_DIR / f"{NAME}.json", {**report.data, "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
