"""Passkey logins while the retention purge deletes millions of old login events (issue 15).

One ``authserver serve`` on SQLite (the single write lock is where a purge could hurt) or on
PostgreSQL + Redis (``--backend pg``), a login_events table filled with ``--events`` rows
older than the policy (10 M by default), then returning passkey logins at 16 connections:
first without the purge, then while ``authserver retention purge`` runs in its own process
(batches of 2,000 rows, each its own short transaction, paced by their own duration). Goal:
login p99 during the purge ≤ 1.2 × without.

``python -m bench.retention_purge [--backend sqlite|pg] [--events N] [--duration S]``;
``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.load import Load
from bench.passkey_login import Population, passkey_login_op, prime, seed_users
from bench.report import (
    RESULTS_DIR,
    TABLE_HEADER,
    Options,
    Report,
    libpq_url,
    load_row,
    log,
    machine,
    summary_row,
    table,
    write_json,
)
from bench.server import ServerProcess

NAME = "retention_purge"
CONNECTIONS = 16
EVENTS = 10_000_000
GOAL_P99_RATIO = 1.2
CHUNK = 50_000


def fill(database: Path, count: int) -> float:
    """``count`` login events 400 days old (past every default retention), in big chunks."""
    from authserver.models import utcnow

    started = time.monotonic()
    old = (utcnow() - timedelta(days=400)).replace(tzinfo=None).isoformat(sep=" ")
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        row = (old, None, "", "192.0.2.1", "bench", "password", "failure", "bad_credentials", None)
        sql = (
            "INSERT INTO login_events (created_at, user_id, username_attempt, ip, user_agent, "
            "method, outcome, reason, device_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        done = 0
        while done < count:
            size = min(CHUNK, count - done)
            connection.execute("BEGIN")
            connection.executemany(sql, [row] * size)
            connection.execute("COMMIT")
            done += size
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return time.monotonic() - started


def fill_pg(url: str, count: int) -> float:
    """The same rows on PostgreSQL, made by the server itself (generate_series), then
    vacuumed and analysed as a table that grew over months would be."""
    import psycopg

    from authserver.models import utcnow

    started = time.monotonic()
    old = utcnow() - timedelta(days=400)
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        done = 0
        while done < count:
            size = min(1_000_000, count - done)
            connection.execute(
                "INSERT INTO login_events (created_at, user_id, username_attempt, ip, "
                "user_agent, method, outcome, reason, device_id) SELECT %s, NULL, '', "
                "'192.0.2.1', 'bench', 'password', 'failure', 'bad_credentials', NULL "
                "FROM generate_series(1, %s)",
                (old, size),
            )
            done += size
        connection.execute("VACUUM ANALYZE login_events")
    return time.monotonic() - started


def left(url: str) -> int:
    """Old rows still there (the logins measured meanwhile add recent ones, which stay)."""
    sql = "SELECT count(*) FROM login_events WHERE user_agent = 'bench'"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            return int(connection.execute(sql).fetchone()[0])
    import psycopg

    with psycopg.connect(libpq_url(url)) as connection:
        row = connection.execute(sql).fetchone()
        return int(row[0]) if row else 0


def run(options: Options, events: int = EVENTS, backend: str = "sqlite") -> Report:
    services: list[Any] = []
    env: dict[str, str] = {}
    if backend == "pg":
        from bench.suite import start_services

        services, env = start_services()
        env["AUTHSERVER_DATABASE_URL"] = services[0].create_database("bench_retention")
    try:
        return _run(options, events, backend, env)
    finally:
        for service in reversed(services):
            service.stop()


def _run(options: Options, events: int, backend: str, env: dict[str, str]) -> Report:
    duration = 1.5 if options.quick else options.duration
    events = min(events, 20_000) if options.quick else events
    rows: list[list[Any]] = []
    data: dict[str, Any] = {
        "config": {
            "backend": backend,
            "connections": CONNECTIONS,
            "events": events,
            "duration_s": duration,
        },
        "results": {},
    }
    server = ServerProcess(
        workers=options.workers, threads=options.threads, env=env, engine=options.engine
    )
    try:
        server.migrate()
        url = server.env["AUTHSERVER_DATABASE_URL"]
        log(f"[{NAME}:{backend}] filling login_events with {events:,} old rows ...")
        if backend == "pg":
            data["fill_s"] = round(fill_pg(url, events), 1)
        else:
            data["fill_s"] = round(fill(Path(url.removeprefix("sqlite:///")), events), 1)
        server.start(wait=False)
        population: Population = seed_users(
            url,
            64 if options.quick else 300,
            f"http://localhost:{server.port}",
            password=False,
        )
        server.wait_healthy()

        def returning(load: Load) -> Any:
            return passkey_login_op(load, population, CONNECTIONS)

        prime(server, returning, 2 * len(population.users), CONNECTIONS)

        def measure(key: str, label: str) -> dict[str, Any]:
            log(f"[{NAME}:{backend}] {label} ...")
            load = Load()
            result = load.run(
                key,
                server,
                returning(load),
                connections=CONNECTIONS,
                duration=duration,
                max_operations=options.max_operations,
                warmup=1.0,
                min_operations=10,
            ).as_dict()
            data["results"][key] = result
            rows.append(load_row(label, result))
            return result

        before = measure("without_purge", "returning passkey logins, no purge")
        purge_started = time.monotonic()
        purge = subprocess.Popen(
            [str(Path(sys.executable).parent / "authserver"), "retention", "purge"],
            env=server.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        time.sleep(0.5)  # the purge is under way
        during = measure("during_purge", f"returning passkey logins, purging {events:,} rows")
        still_running = purge.poll() is None
        output, _ = purge.communicate(timeout=3600)
        data["purge"] = {
            "seconds": round(time.monotonic() - purge_started, 1),
            "still_running_after_measure": still_running,
            "left": left(url),
            "output": output.decode(errors="replace").strip()[-500:],
        }
        ratio = during["p99_ms"] / before["p99_ms"] if before["p99_ms"] else 0.0
        data["p99_ratio"] = round(ratio, 2)
        met = ratio <= GOAL_P99_RATIO and still_running
        rows.append(
            summary_row(
                f"p99 during / without purge (goal ≤ {GOAL_P99_RATIO})",
                round(ratio, 2),
                "met" if met else "NOT MET",
            )
        )
        rows.append(
            summary_row(
                f"purge of {events:,} rows",
                f"{data['purge']['seconds']} s",
                f"{data['purge']['left']} left",
            )
        )
    finally:
        server.stop()
        data["server_log_problems"] = server.log_problems()
        server.cleanup()
    return Report(name=NAME, data=data, rows=rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retention_purge", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--backend", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    options = Options(
        quick=args.quick, duration=args.duration, workers=args.workers, threads=args.threads
    )
    report = run(options, args.events, args.backend)
    report.data["machine"] = machine()
    print(table(report.rows, TABLE_HEADER))
    if not args.quick or args.out:
        suffix = "" if args.backend == "sqlite" else f"_{args.backend}"
        out = args.out or RESULTS_DIR / f"{NAME}{suffix}.json"
        write_json(out, report.data)
        log(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
