"""The benchmark suite (issue 7): every login path on SQLite and on PostgreSQL + Redis.

For each backend, one freshly started multi-worker ``authserver serve`` (gunicorn, the
production server) and, in the same run, alternating rounds of:

- ``GET /healthz`` — the bare endpoint (touches nothing): what the HTTP stack costs;
- password logins — ``GET /login`` + ``POST /login`` (Argon2id verify, session, device,
  login event; see bench/password_login.py), beside the bare Argon2id verify rate measured
  in this process once the servers are stopped (the ceiling a password login cannot beat);
- passkey logins — ``POST /webauthn/login/options`` + ``POST /webauthn/login/verify`` with
  a software ES256 authenticator (see bench/passkey_login.py);
- ``GET /auth/verify`` — forward-auth with a live session cookie (see bench/forward_auth.py).

All under the same number of concurrent keep-alive connections (32). The SQLite backend is
the embedded default (a WAL file, in-process challenge and throttling stores); the other is
a throwaway PostgreSQL (``tests.services.PostgresServer``: fsync off, as a benchmark of the
server rather than the disk) and Redis for challenges and throttling, as in production.

``python -m bench --only suite`` (``make bench`` runs it with the other benchmarks) prints
one table and writes ``bench/results/suite.json`` with the machine's description.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.client import Connection, HTTPError
from bench.cpu import tree_cpu_seconds
from bench.load import Load
from bench.passkey_login import GOAL as PASSKEY_GOAL
from bench.passkey_login import login_sessions, passkey_login_op, prime, seed_users
from bench.password_login import argon2_parameters, argon2_verify_rate, healthz_op, login_op
from bench.report import NOISY_CORES, Options, Report, load_row, log, machine
from bench.server import PROJECT_ROOT, ServerProcess

NAME = "suite"
VERIFY_GOAL = 0.80
BACKENDS = ("sqlite", "postgresql+redis")


# --------------------------------------------------------------------------- services


def start_services() -> tuple[list[Any], dict[str, str]]:
    """A throwaway PostgreSQL and Redis (Debian's packages); ``[postgres, redis]`` and env."""
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    from tests.services import PostgresServer, RedisServer

    if not PostgresServer.available() or not RedisServer.available():
        raise RuntimeError("postgresql and redis-server are needed (make system-deps)")
    postgres = PostgresServer().start()
    try:
        redis = RedisServer().start()
    except BaseException:
        postgres.stop()
        raise
    return [postgres, redis], {"AUTHSERVER_REDIS_URL": redis.url}


def service_versions(postgres: Any | None) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"postgresql": None, "redis": None}
    if postgres is not None:
        with contextlib.suppress(Exception):
            import psycopg

            with psycopg.connect(postgres.dsn(), connect_timeout=5) as conn:
                row = conn.execute("SHOW server_version").fetchone()
                versions["postgresql"] = row[0] if row else None
    redis = shutil.which("redis-server")
    if redis:
        with contextlib.suppress(Exception):
            out = subprocess.run(
                [redis, "--version"], capture_output=True, text=True, timeout=10
            ).stdout
            versions["redis"] = next(
                (part.split("=", 1)[1] for part in out.split() if part.startswith("v=")), out
            )
    return versions


def services_cpu(services: list[Any]) -> float:
    """CPU seconds used so far by PostgreSQL (postmaster and backends) and Redis."""
    total = 0.0
    for service in services:
        pid = service._postmaster_pid() if hasattr(service, "_postmaster_pid") else service.pid
        if pid:
            total += tree_cpu_seconds(pid)
    return total


def with_services_cpu(result: dict[str, Any], used: float, wall: float) -> dict[str, Any]:
    """Add the database's CPU (cores, over the whole run, warm-up included) to a LoadResult."""
    return {**result, "services_cpu_cores": round(used / wall, 2) if wall else 0.0}


def row_of(label: str, result: dict[str, Any]) -> list[Any]:
    """load_row, with PostgreSQL + Redis CPU shown beside the server's, not as other load."""
    services = result.get("services_cpu_cores", 0.0)
    adjusted = {**result, "machine_busy_cores": result["machine_busy_cores"] - services}
    row = load_row(label, adjusted)
    if services:
        row[7] = f"{row[7]} + db {services:.2f}"
    return row


# --------------------------------------------------------------------------- operations


def verify_op(load: Load, sessions: list[tuple[str, str]]):
    """``GET /auth/verify`` with one live session per virtual client; 200 and the right user."""

    async def op(conn: Connection, index: int, iteration: int) -> None:
        cookie, username = sessions[index % len(sessions)]
        response = load.count(
            await conn.request("GET", "/auth/verify", cookies={"authserver_session": cookie})
        )
        if response.status != 200 or response.header("x-auth-user") != username:
            raise HTTPError(f"GET /auth/verify: {response.status}")

    return op


# --------------------------------------------------------------------------- one backend


def run_backend(
    backend: str,
    options: Options,
    env: dict[str, str] | None,
    rounds: int,
    services: list[Any] | None = None,
) -> tuple[dict[str, Any], list[list[Any]]]:
    quick = options.quick
    duration = 1.5 if quick else options.duration
    warmup = 0.5 if quick else 1.0
    passkey_users = 64 if quick else 500
    password_users = max(options.connections, 32 if quick else 200)
    out: dict[str, Any] = {"results": {}}
    rows: list[list[Any]] = []
    server = ServerProcess(
        workers=options.workers, threads=options.threads, env=env, engine=options.engine
    )
    try:
        started = time.perf_counter()
        server.migrate()
        server.start(wait=False)
        url = server.env["AUTHSERVER_DATABASE_URL"]
        origin = f"http://localhost:{server.port}"
        passkeys = seed_users(url, passkey_users, origin, prefix="bench.pk")
        passwords = seed_users(url, password_users, origin, prefix="bench.pw")
        verifiers = seed_users(url, options.connections, origin, prefix="bench.fa")
        server.wait_healthy()
        sessions = login_sessions(server, verifiers)
        password_devices: dict[str, str] = {}
        password_names = [u.username for u in passwords.users]

        def password_op(load: Load) -> Any:
            return login_op(load, password_names, options.connections, {}, password_devices)

        def passkey_op(load: Load) -> Any:
            return passkey_login_op(load, passkeys, options.connections)

        prime(server, passkey_op, 2 * len(passkeys.users), options.connections)
        prime(server, password_op, 2 * len(password_names), options.connections)
        out["setup_s"] = round(time.perf_counter() - started, 1)
        log(f"[{NAME}:{backend}] {server.url} ready in {out['setup_s']} s")
        scenarios = [
            ("healthz", "GET /healthz (bare)", lambda load: healthz_op(load), 1),
            ("password_login", "password login (GET+POST /login)", password_op, 10),
            ("passkey_login", "passkey login (options+verify)", passkey_op, 10),
            ("auth_verify", "GET /auth/verify", lambda load: verify_op(load, sessions), 1),
        ]
        for round_number in range(1, rounds + 1):
            for key, label, make, minimum in scenarios:
                log(f"[{NAME}:{backend}] {key}, round {round_number}, {duration} s ...")
                load = Load()
                cpu_before, wall_before = services_cpu(services or []), time.perf_counter()
                result = load.run(
                    key,
                    server,
                    make(load),
                    connections=options.connections,
                    duration=duration,
                    max_operations=options.max_operations,
                    warmup=warmup,
                    min_operations=minimum,
                ).as_dict()
                if services:
                    result = with_services_cpu(
                        result,
                        services_cpu(services) - cpu_before,
                        time.perf_counter() - wall_before,
                    )
                out["results"][f"{key}_{round_number}"] = result
                rows.append(row_of(f"{backend}: {label}, round {round_number}", result))
    finally:
        server.stop()
        out["server_log_problems"] = server.log_problems()
        server.cleanup()
    return out, rows


def ratios(results: dict[str, Any], rounds: int) -> dict[str, Any]:
    """Per round, against the bare endpoint of the same round; medians."""

    def rate(key: str, n: int) -> float:
        return results[f"{key}_{n}"]["rate_per_s"]

    passkey = [
        rate("passkey_login", n) / (rate("healthz", n) / 2) if rate("healthz", n) else 0.0
        for n in range(1, rounds + 1)
    ]
    verify = [
        rate("auth_verify", n) / rate("healthz", n) if rate("healthz", n) else 0.0
        for n in range(1, rounds + 1)
    ]
    return {
        "passkey_logins_vs_half_healthz": round(statistics.median(passkey), 3),
        "passkey_goal": PASSKEY_GOAL,
        "verify_vs_healthz": round(statistics.median(verify), 3),
        "verify_goal": VERIFY_GOAL,
        "by_round": {
            "passkey_logins_vs_half_healthz": [round(x, 3) for x in passkey],
            "verify_vs_healthz": [round(x, 3) for x in verify],
        },
    }


# --------------------------------------------------------------------------- the suite


def run(options: Options) -> Report:
    rounds = 1 if options.quick else 2
    argon_duration = 0.5 if options.quick else min(options.duration, 5.0)
    data: dict[str, Any] = {
        "config": {
            "workers": options.workers,
            "threads": options.threads,
            "connections": options.connections,
            "duration_s": 1.5 if options.quick else options.duration,
            "rounds": rounds,
            "backends": list(BACKENDS),
        },
        "backends": {},
    }
    rows: list[list[Any]] = []
    services: list[Any] = []
    try:
        services, redis_env = start_services()
        postgres = services[0]
        data["machine"] = {**machine(), **service_versions(postgres)}
        for backend in BACKENDS:
            env = None
            if backend != "sqlite":
                database = postgres.create_database(f"bench_{secrets.token_hex(4)}")
                env = {**redis_env, "AUTHSERVER_DATABASE_URL": database}
            out, backend_rows = run_backend(
                backend, options, env, rounds, services if env else None
            )
            out["ratios"] = ratios(out["results"], rounds)
            data["backends"][backend] = out
            rows.extend(backend_rows)
            r = out["ratios"]
            rows.append(
                [
                    f"{backend}: passkey logins / (healthz / 2) (goal {PASSKEY_GOAL:.0%})",
                    f"{r['passkey_logins_vs_half_healthz']:.0%}",
                    *["-"] * 7,
                ]
            )
            rows.append(
                [
                    f"{backend}: /auth/verify / healthz (goal {VERIFY_GOAL:.0%})",
                    f"{r['verify_vs_healthz']:.0%}",
                    *["-"] * 7,
                ]
            )
    finally:
        for service in reversed(services):
            with contextlib.suppress(Exception):
                service.stop()

    # Servers and databases stopped: this process has the machine for Argon2id.
    params = argon2_parameters()
    for threads in (1, 2):
        log(f"[{NAME}] Argon2id verify in-process, {threads} thread(s), {argon_duration} s ...")
        measured = argon2_verify_rate(threads, argon_duration, options.max_operations, params)
        data[measured["name"]] = measured
        rows.append(
            [
                f"Argon2id verify in-process, {threads} thread(s)",
                measured["rate_per_s"],
                measured["p50_ms"],
                measured["p99_ms"],
                measured["operations"],
                0,
                f"{measured['cpu_cores']:.2f}",
                "-",
                f"{measured['other_cpu_cores']:.2f}"
                + (" !" if measured["other_cpu_cores"] > NOISY_CORES else ""),
            ]
        )

    def other(r: dict[str, Any]) -> float:
        return (
            r["machine_busy_cores"]
            - r["client_cpu_cores"]
            - r["server_cpu_cores"]
            - r.get("services_cpu_cores", 0.0)
        )

    data["noisy_scenarios"] = [
        f"{backend}:{key}"
        for backend, out in data["backends"].items()
        for key, r in out["results"].items()
        if other(r) > NOISY_CORES
    ]
    data["summary"] = summary(data, rounds)
    return Report(name=NAME, data=data, rows=rows)


def summary(data: dict[str, Any], rounds: int) -> dict[str, Any]:
    """Median over the rounds of each figure, per backend (what the note quotes)."""
    found: dict[str, Any] = {}
    for backend, out in data["backends"].items():
        figures = {}
        for key in ("healthz", "password_login", "passkey_login", "auth_verify"):
            runs = [out["results"][f"{key}_{n}"] for n in range(1, rounds + 1)]
            figures[key] = {
                "rate_per_s": round(statistics.median(r["rate_per_s"] for r in runs), 1),
                "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
                # Application (+ PostgreSQL/Redis) CPU per operation: steadier than rates on
                # a shared machine.
                "cpu_ms_per_op": round(
                    statistics.median(
                        (r["server_cpu_cores"] + r.get("services_cpu_cores", 0.0))
                        / r["rate_per_s"]
                        * 1000
                        for r in runs
                        if r["rate_per_s"]
                    ),
                    3,
                ),
            }
        found[backend] = {**figures, **out["ratios"]}
    found["argon2id_verify_2_threads_per_s"] = data["argon2id_verify_2_threads"]["rate_per_s"]
    return found


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.suite [--quick]``: the suite alone (same as ``python -m bench --only
    suite``)."""
    from bench.__main__ import main as bench_main

    return bench_main(["--only", NAME, *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
