"""Login and session-check latency at scale: do they grow with the data? (issue 7)

For each backend (SQLite, PostgreSQL + Redis), in one run:

1. a fresh database with only the benchmark's own users (a few hundred, with passkeys):
   password logins, passkey logins and ``GET /auth/verify`` under 32 connections, beside the
   bare ``GET /healthz`` — the *small-data* figures;
2. the server stopped, the database filled, fast, with 1,000,000 accounts, 2,000,000 passkeys,
   10,000,000 login events, and (beyond the issue's three, because a login and a session
   check read them too) 1,000,000 devices and 1,000,000 sessions; then ``ANALYZE``, as a
   production database would have its statistics;
3. the server started again and the same measures taken — the *large-data* figures.

The rows are generated inside the database engine (a recursive CTE with ``randomblob`` on
SQLite, ``generate_series`` on PostgreSQL) in transactions of 500,000 rows: no Python loop
per row, no round trip per row; the seeding time is reported. ``--scale 0.1`` divides every
count by ten.

On a shared machine the CPU's speed drifts between the two phases (other virtual machines,
frequency): each phase ends with a few seconds of Argon2id in this process (fixed work), and
the growth of CPU per operation is also given divided by that drift ("adj.").

``python -m bench.scale [--scale 1] [--backend both|sqlite|pg]`` (``make bench-scale``) prints
a table and writes ``bench/results/scale.json`` (``scale_<factor>.json`` for other factors).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from authserver.alerts.console.detection import STATE_NAME as DETECTOR_STATE
from bench.load import Load
from bench.passkey_login import login_sessions, passkey_login_op, prime, seed_users
from bench.password_login import (
    PASSWORD,
    argon2_parameters,
    argon2_verify_rate,
    healthz_op,
    login_op,
)
from bench.report import (
    RESULTS_DIR,
    TABLE_HEADER,
    Options,
    libpq_url,
    log,
    machine,
    table,
    write_json,
)
from bench.server import ServerProcess
from bench.suite import (
    row_of,
    service_versions,
    services_cpu,
    start_services,
    verify_op,
    with_services_cpu,
)

NAME = "scale"
FULL = {
    "users": 1_000_000,
    "webauthn_credentials": 2_000_000,
    "login_events": 10_000_000,
    "devices": 1_000_000,
    "auth_sessions": 1_000_000,
}
CHUNK = 500_000
YEAR = 365 * 24 * 3600
# A well-formed COSE ES256 public key (never verified: filler passkeys are never used).
FILLER_COSE = bytes.fromhex("a5010203262001215820" + "11" * 32 + "225820" + "22" * 32)
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
)


# --------------------------------------------------------------------------- SQL per backend


def _sqlite_statements(password_hash: str) -> dict[str, str]:
    """Statements taking :lo, :hi (row numbers) and :base, :users (the filler users' ids)."""
    numbers = "WITH RECURSIVE n(x) AS (SELECT :lo UNION ALL SELECT x + 1 FROM n WHERE x < :hi) "
    ts = (
        "strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || (x * 7919 % {span}) || ' seconds')"
        " || '.000000'"
    )
    past = ts.format(span=YEAR)
    recent = ts.format(span=30 * 24 * 3600)
    user = ":base + 1 + (x * 2654435761 % :users)"
    return {
        "users": numbers
        + "INSERT INTO users (id, public_id, user_handle, username, username_key, password_hash, "
        "civility, last_name, first_name, email, email_key, phone, role, created_at, "
        "activated_at, password_changed_at, password_reset_required, passkey_offer_refused, "
        "siret) SELECT :base + x, lower(hex(randomblob(16))), randomblob(32), 'filler.' || x, "
        f"'filler.' || x, '{password_hash}', 'madame', 'Nom ' || x, 'Prénom', "
        "'filler.' || x || '@entreprise.example.fr', 'filler.' || x || '@entreprise.example.fr', "
        f"'+33712345678', 'employer', {past}, {past}, {past}, 0, 0, printf('%014d', x) FROM n",
        "webauthn_credentials": numbers
        + "INSERT INTO webauthn_credentials (credential_id, user_id, public_key, sign_count, "
        "transports, aaguid, attestation_format, backup_eligible, backup_state, name, "
        "created_at, last_used_at, review_required) SELECT randomblob(32), "
        ":base + 1 + ((x - 1) / 2) % :users, :cose, x % 50, 'internal,hybrid', "
        "'00000000-0000-0000-0000-000000000000', 'none', x % 2, x % 2, 'Clé d''accès', "
        f"{past}, {recent}, 0 FROM n",
        "devices": numbers
        + "INSERT INTO devices (user_id, cookie_hash, first_seen_at, last_seen_at, last_ip, "
        "user_agent, browser, system) SELECT :base + 1 + (x - 1) % :users, randomblob(32), "
        f"{past}, {recent}, '10.' || (x % 256) || '.' || (x / 256 % 256) || '.1', :ua, "
        "'Chrome 131', 'Windows 10' FROM n",
        "auth_sessions": numbers
        + "INSERT INTO auth_sessions (id_hash, token_hash, user_id, created_at, "
        "authenticated_at, last_seen_at, expires_at, revoked_at, revoked_reason, method, amr, "
        "ip, user_agent) SELECT randomblob(32), randomblob(32), :base + 1 + (x - 1) % :users, "
        f"{past}, {past}, {past}, {past}, "
        f"CASE WHEN x % 3 = 0 THEN {past} END, CASE WHEN x % 3 = 0 THEN 'logout' END, "
        "'passkey', 'hwk user', '10.0.0.' || (x % 256), :ua FROM n",
        "login_events": numbers
        + "INSERT INTO login_events (created_at, user_id, username_attempt, ip, user_agent, "
        f"method, outcome, reason) SELECT {past}, {user}, 'filler.' || (x % :users), "
        "'10.' || (x % 256) || '.' || (x / 256 % 256) || '.' || (x / 65536 % 256), :ua, "
        "CASE WHEN x % 3 = 0 THEN 'password' ELSE 'passkey' END, "
        "CASE WHEN x % 20 = 0 THEN 'failure' ELSE 'success' END, "
        "CASE WHEN x % 20 = 0 THEN 'bad_credentials' ELSE '' END FROM n",
    }


def _pg_statements(password_hash: str) -> dict[str, str]:
    """The same rows as on SQLite, from ``generate_series`` (``mod()``: no ``%`` to escape)."""
    numbers = "SELECT x FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS x"
    now = "(now() AT TIME ZONE 'utc')"
    past = f"{now} - make_interval(secs => mod(x * 7919, {YEAR}))"
    recent = f"{now} - make_interval(secs => mod(x * 7919, {30 * 24 * 3600}))"
    rand32 = "decode(md5(random()::text || x::text) || md5(x::text || random()::text), 'hex')"
    user = "%(base)s + 1 + mod(x * 2654435761, %(users)s)"
    return {
        "users": "INSERT INTO users (id, public_id, user_handle, username, username_key, "
        "password_hash, civility, last_name, first_name, email, email_key, phone, role, "
        "created_at, activated_at, password_changed_at, password_reset_required, "
        "passkey_offer_refused, siret) SELECT %(base)s + x, md5(random()::text || x::text), "
        f"{rand32}, 'filler.' || x, 'filler.' || x, %(hash)s, 'madame', 'Nom ' || x, 'Prénom', "
        "'filler.' || x || '@entreprise.example.fr', 'filler.' || x || '@entreprise.example.fr', "
        f"'+33712345678', 'employer', {past}, {past}, {past}, false, false, lpad(x::text, 14, '0') "
        f"FROM ({numbers}) AS n",
        "webauthn_credentials": "INSERT INTO webauthn_credentials (credential_id, user_id, "
        "public_key, sign_count, transports, aaguid, attestation_format, backup_eligible, "
        f"backup_state, name, created_at, last_used_at, review_required) SELECT {rand32}, "
        "%(base)s + 1 + mod((x - 1) / 2, %(users)s), %(cose)s, mod(x, 50), 'internal,hybrid', "
        "'00000000-0000-0000-0000-000000000000', 'none', mod(x, 2) = 1, mod(x, 2) = 1, "
        f"'Clé d''accès', {past}, {recent}, false FROM ({numbers}) AS n",
        "devices": "INSERT INTO devices (user_id, cookie_hash, first_seen_at, last_seen_at, "
        "last_ip, user_agent, browser, system) SELECT %(base)s + 1 + mod(x - 1, %(users)s), "
        f"{rand32}, {past}, {recent}, '10.' || mod(x, 256) || '.' || mod(x / 256, 256) || '.1', "
        f"%(ua)s, 'Chrome 131', 'Windows 10' FROM ({numbers}) AS n",
        "auth_sessions": "INSERT INTO auth_sessions (id_hash, token_hash, user_id, created_at, "
        "authenticated_at, last_seen_at, expires_at, revoked_at, revoked_reason, method, amr, "
        f"ip, user_agent) SELECT {rand32}, {rand32}, %(base)s + 1 + mod(x - 1, %(users)s), {past}, "
        f"{past}, {past}, {past}, CASE WHEN mod(x, 3) = 0 THEN {past} END, "
        "CASE WHEN mod(x, 3) = 0 THEN 'logout' END, 'passkey', 'hwk user', "
        f"'10.0.0.' || mod(x, 256), %(ua)s FROM ({numbers}) AS n",
        "login_events": "INSERT INTO login_events (created_at, user_id, username_attempt, ip, "
        f"user_agent, method, outcome, reason) SELECT {past}, {user}, "
        "'filler.' || mod(x, %(users)s), "
        "'10.' || mod(x, 256) || '.' || mod(x / 256, 256) || '.' || mod(x / 65536, 256), "
        "%(ua)s, CASE WHEN mod(x, 3) = 0 THEN 'password' ELSE 'passkey' END, "
        "CASE WHEN mod(x, 20) = 0 THEN 'failure' ELSE 'success' END, "
        "CASE WHEN mod(x, 20) = 0 THEN 'bad_credentials' ELSE '' END "
        f"FROM ({numbers}) AS n",
    }


# The burst detector reads the login events added since its high-water mark. Events written
# over months in production were read as they came; bulk-seeded ones would all look new and
# keep every worker's detector thread busy catching up during the measures: mark them read.
MARK_DETECTOR = (
    "INSERT INTO detector_state (name, last_id, updated_at) "
    f"SELECT '{DETECTOR_STATE}', max(id), %(now)s FROM login_events WHERE true "
    "ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id"
)


def _now_text() -> str:
    from authserver.models import utcnow

    return utcnow().replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _chunks(total: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + CHUNK - 1, total)) for lo in range(1, total + 1, CHUNK)]


def seed_sqlite(database_url: str, counts: dict[str, int], password_hash: str) -> dict[str, Any]:
    import sqlite3

    path = database_url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path, timeout=60, isolation_level=None)
    timings: dict[str, float] = {}
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA cache_size=-262144")  # 256 MiB while seeding
        base = connection.execute("SELECT coalesce(max(id), 0) FROM users").fetchone()[0]
        statements = _sqlite_statements(password_hash)
        params = {"base": base, "users": counts["users"], "cose": FILLER_COSE, "ua": USER_AGENT}
        for table_name, total in counts.items():
            started = time.perf_counter()
            for lo, hi in _chunks(total):
                connection.execute("BEGIN")
                connection.execute(statements[table_name], {**params, "lo": lo, "hi": hi})
                connection.execute("COMMIT")
            timings[table_name] = round(time.perf_counter() - started, 1)
            log(f"[{NAME}:sqlite] {total:,} {table_name} in {timings[table_name]} s")
        connection.execute(MARK_DETECTOR.replace("%(now)s", ":now"), {"now": _now_text()})
        started = time.perf_counter()
        connection.execute("ANALYZE")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        timings["analyze"] = round(time.perf_counter() - started, 1)
    finally:
        connection.close()
    return {"seconds": timings, "database_bytes": Path(path).stat().st_size}


def seed_pg(database_url: str, counts: dict[str, int], password_hash: str) -> dict[str, Any]:
    import psycopg

    dsn = libpq_url(database_url)
    timings: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=True) as connection:
        base = connection.execute("SELECT coalesce(max(id), 0) FROM users").fetchone()[0]  # type: ignore[index]
        statements = _pg_statements(password_hash)
        params = {
            "base": base,
            "users": counts["users"],
            "cose": FILLER_COSE,
            "ua": USER_AGENT,
            "hash": password_hash,
        }
        for table_name, total in counts.items():
            started = time.perf_counter()
            for lo, hi in _chunks(total):
                with connection.transaction():
                    connection.execute(statements[table_name], {**params, "lo": lo, "hi": hi})
            if table_name == "users":
                connection.execute(
                    "SELECT setval(pg_get_serial_sequence('users', 'id'), "
                    "(SELECT max(id) FROM users))"
                )
            timings[table_name] = round(time.perf_counter() - started, 1)
            log(f"[{NAME}:pg] {total:,} {table_name} in {timings[table_name]} s")
        connection.execute(MARK_DETECTOR, {"now": _now_text()})
        started = time.perf_counter()
        connection.execute("VACUUM ANALYZE")
        timings["analyze"] = round(time.perf_counter() - started, 1)
        size = connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
    return {"seconds": timings, "database_bytes": size}


# --------------------------------------------------------------------------- measures


def measure(
    server: ServerProcess,
    phase: str,
    backend: str,
    state: dict[str, Any],
    options: Options,
    services: list[Any],
) -> dict[str, Any]:
    # --quick: at most 1.5 s per scenario (less when --duration says so: the smoke test).
    duration = min(1.5, options.duration) if options.quick else options.duration
    warmup = min(0.5, duration) if options.quick else 1.0
    sessions = login_sessions(server, state["verifiers"])
    password_names = [u.username for u in state["passwords"].users]

    def password_op(load: Load) -> Any:
        return login_op(load, password_names, options.connections, {}, state["devices"])

    def passkey_op(load: Load) -> Any:
        return passkey_login_op(load, state["passkeys"], options.connections)

    if phase == "small":  # device cookies are kept (state) and stay valid after the seeding
        prime(server, passkey_op, 2 * len(state["passkeys"].users), options.connections)
        prime(server, password_op, 2 * len(password_names), options.connections)
    scenarios = [
        ("healthz", lambda load: healthz_op(load), 1),
        ("password_login", password_op, 10),
        ("passkey_login", passkey_op, 10),
        ("auth_verify", lambda load: verify_op(load, sessions), 1),
    ]
    results = {}
    for key, make, minimum in scenarios:
        log(f"[{NAME}:{backend}] {phase} data: {key}, {duration} s ...")
        load = Load()
        cpu_before, wall_before = services_cpu(services), time.perf_counter()
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
                result, services_cpu(services) - cpu_before, time.perf_counter() - wall_before
            )
        results[key] = result
    return results


def run_backend(
    backend: str,
    counts: dict[str, int],
    options: Options,
    env: dict[str, str] | None,
    services: list[Any],
) -> dict[str, Any]:
    from argon2 import PasswordHasher

    out: dict[str, Any] = {"counts": counts}
    server = ServerProcess(
        workers=options.workers, threads=options.threads, env=env, engine=options.engine
    )
    try:
        server.migrate()
        url = server.env["AUTHSERVER_DATABASE_URL"]
        origin = f"http://localhost:{server.port}"
        state = {
            "passkeys": seed_users(url, 64 if options.quick else 500, origin, prefix="bench.pk"),
            # Enough accounts for the per-account throttle at full length; --quick checks the
            # SQL, and each of these costs two Argon2id logins to prime.
            "passwords": seed_users(
                url,
                max(options.connections, 32 if options.quick else 200),
                origin,
                prefix="bench.pw",
            ),
            "verifiers": seed_users(url, options.connections, origin, prefix="bench.fa"),
            "devices": {},  # password users' device cookies, kept across the two phases
        }
        server.start()
        out["small"] = measure(server, "small", backend, state, options, services)
        server.stop()
        out["small_yardstick"] = yardstick(options)

        password_hash = PasswordHasher(**argon2_parameters()).hash(PASSWORD + " (filler)")
        log(f"[{NAME}:{backend}] seeding {', '.join(f'{v:,} {k}' for k, v in counts.items())}")
        started = time.perf_counter()
        seeder = seed_sqlite if backend == "sqlite" else seed_pg
        out["seed"] = seeder(url, counts, password_hash)
        out["seed"]["total_s"] = round(time.perf_counter() - started, 1)
        log(f"[{NAME}:{backend}] seeded in {out['seed']['total_s']} s")

        server.start()
        out["large"] = measure(server, "large", backend, state, options, services)
        server.stop()
        out["large_yardstick"] = yardstick(options)
    finally:
        server.stop()
        out["server_log_problems"] = server.log_problems()
        server.cleanup()
    # Server CPU per operation is steadier than rates on a shared machine (it does not depend
    # on how much CPU the neighbours left): its growth is the cost the data adds, beside the
    # machine's own drift between the two phases (healthz and Argon2id-bound password logins
    # do not depend on the data at all).
    out["growth"] = {
        key: {
            "rate": _ratio(out["large"][key]["rate_per_s"], out["small"][key]["rate_per_s"]),
            "p50": _ratio(out["large"][key]["p50_ms"], out["small"][key]["p50_ms"]),
            "p99": _ratio(out["large"][key]["p99_ms"], out["small"][key]["p99_ms"]),
            "cpu_per_op": _ratio(_cpu_per_op(out["large"][key]), _cpu_per_op(out["small"][key])),
        }
        for key in out["small"]
    }
    for phase in ("small", "large"):
        for result in out[phase].values():
            result["server_cpu_ms_per_op"] = _cpu_per_op(result)
    # The machine's own speed in each phase: Argon2id in this process (fixed work, no data).
    drift = _ratio(out["large_yardstick"]["mean_ms"], out["small_yardstick"]["mean_ms"])
    out["machine_drift"] = drift
    for growth in out["growth"].values():
        growth["cpu_per_op_adjusted"] = (
            round(growth["cpu_per_op"] / drift, 2) if growth["cpu_per_op"] and drift else None
        )
    return out


def yardstick(options: Options) -> dict[str, Any]:
    """Argon2id verify on one thread for a few seconds, the servers stopped."""
    return argon2_verify_rate(1, 0.3 if options.quick else 4.0, 10**6, argon2_parameters())


def _cpu_per_op(result: dict[str, Any]) -> float:
    """Application + database CPU milliseconds per operation."""
    cores = result["server_cpu_cores"] + result.get("services_cpu_cores", 0.0)
    return round(cores / result["rate_per_s"] * 1000, 3) if result["rate_per_s"] else 0.0


def _ratio(large: float, small: float) -> float | None:
    return round(large / small, 2) if small else None


LABELS = {
    "healthz": "GET /healthz (bare)",
    "password_login": "password login",
    "passkey_login": "passkey login",
    "auth_verify": "GET /auth/verify",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full counts")
    parser.add_argument("--backend", choices=("both", "sqlite", "pg"), default="both")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="tiny counts, short runs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    factor = 0.001 if args.quick else args.scale
    counts = {k: max(1, int(v * factor)) for k, v in FULL.items()}
    options = Options(
        quick=args.quick,
        connections=args.connections,
        duration=args.duration,
        workers=args.workers,
        threads=args.threads,
    )
    backends = ["sqlite", "postgresql+redis"] if args.backend == "both" else []
    backends = backends or (["sqlite"] if args.backend == "sqlite" else ["postgresql+redis"])
    data: dict[str, Any] = {
        "benchmark": NAME,
        "scale": factor,
        "config": {
            "workers": args.workers,
            "threads": args.threads,
            "connections": args.connections,
            "duration_s": 1.5 if args.quick else args.duration,
        },
        "backends": {},
    }
    rows: list[list[Any]] = []
    services: list[Any] = []
    started = time.perf_counter()
    try:
        postgres = None
        redis_env: dict[str, str] = {}
        if "postgresql+redis" in backends:
            services, redis_env = start_services()
            postgres = services[0]
        data["machine"] = {**machine(), **service_versions(postgres)}
        for backend in backends:
            env = None
            if backend != "sqlite":
                assert postgres is not None
                database = postgres.create_database(f"scale_{secrets.token_hex(4)}")
                env = {**redis_env, "AUTHSERVER_DATABASE_URL": database}
            out = run_backend(backend, counts, options, env, services if env else [])
            data["backends"][backend] = out
            for key, label in LABELS.items():
                rows.append(row_of(f"{backend}: {label}, small data", out["small"][key]))
                rows.append(row_of(f"{backend}: {label}, large data", out["large"][key]))
                growth = out["growth"][key]
                rows.append(
                    [
                        f"{backend}: {label}, large / small",
                        f"x{growth['rate']}",
                        f"x{growth['p50']}",
                        f"x{growth['p99']}",
                        "-",
                        "-",
                        "-",
                        f"CPU/op x{growth['cpu_per_op']}, x{growth['cpu_per_op_adjusted']} adj.",
                        "-",
                    ]
                )
            rows.append(
                [
                    f"{backend}: machine speed drift (Argon2id time large / small)",
                    f"x{out['machine_drift']}",
                    *["-"] * 7,
                ]
            )
            seed = out["seed"]
            rows.append(
                [
                    f"{backend}: seeding {sum(counts.values()):,} rows "
                    f"({seed['database_bytes'] / 2**20:,.0f} MiB)",
                    f"{seed['total_s']} s",
                    *["-"] * 7,
                ]
            )
    finally:
        for service in reversed(services):
            with contextlib.suppress(Exception):
                service.stop()
    data["took_s"] = round(time.perf_counter() - started, 1)
    print(table(rows, TABLE_HEADER))
    if args.out is not None:
        out_path = args.out
    elif args.quick:
        out_path = Path(tempfile.gettempdir()) / "authserver-bench-quick" / "scale.json"
    elif factor == 1.0:
        out_path = RESULTS_DIR / "scale.json"
    else:
        out_path = RESULTS_DIR / f"scale_{factor:g}.json"
    write_json(out_path, data)
    log(f"[{NAME}] done in {data['took_s']} s -> {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
