"""Complete passkey logins per second over HTTP, beside the bare endpoint (issue 3).

Measured in one run, on one freshly started ``authserver serve``:

(a) ``GET /healthz`` — the bare endpoint (touches nothing): what the HTTP stack costs;
(b) complete passkey logins. One *login* is what a browser does for « Se connecter sans mot
    de passe »: ``POST /webauthn/login/options`` with ``{}`` (discoverable credential; the
    challenge is stored server-side, bound to the browser's ceremony cookie) then
    ``POST /webauthn/login/verify`` with an ``AuthenticationResponseJSON`` signed in this
    process by a software ES256 authenticator (``tests/softauthn.py``), answered 200 with
    ``{"redirect": …}`` and an ``authserver_session`` cookie. Verify does the real work: the
    challenge consumed once, the credential looked up, the signature and counter checked,
    the credential, device, session and login event written in one transaction.

The two alternate (A, B, A, B) so that drift in the machine's load hits both; the goal
(issue 3) is ``logins/s ≥ 50 % × healthz/s ÷ 2`` (two requests per login), per round.

Users and passkeys are written straight into the database before the server starts taking
load (500 by default): the benchmark measures logins, not enrolment. Each virtual browser
(one keep-alive connection) has its own users, so a credential's signature counter only
ever moves forward (no false clone alarms), and keeps each user's device cookie (a
returning user on a known browser: no new-device e-mail).

``python -m bench.passkey_login --configs 2x4,2x1,4x1,3x2`` sweeps workers × threads.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.client import Connection, HTTPError
from bench.load import Load
from bench.password_login import PASSWORD, argon2_parameters, healthz_op
from bench.report import (
    NOISY_CORES,
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

NAME = "passkey_login"
GOAL = 0.50
JSON = {"Content-Type": "application/json"}
RP_ID = "localhost"

LOGIN_INCLUDES = (
    "POST /webauthn/login/options {} (challenge stored, bound to the ceremony cookie) then "
    "POST /webauthn/login/verify with a software ES256 assertion (challenge consumed once, "
    "credential lookup, signature + counter check, credential/device/session/login-event "
    "writes, one commit) answered 200 with an authserver_session cookie; both requests on "
    "the same keep-alive connection, inside the measured latency"
)


# --------------------------------------------------------------------------- users


@dataclass
class BenchUser:
    username: str
    credential_id: str  # base64url, as in the JSON forms


@dataclass
class Population:
    users: list[BenchUser]
    authenticator: Any  # tests.softauthn.SoftAuthenticator holding every credential
    seconds: float
    # username -> device cookie of its browser, kept across runs: a user's later logins are
    # from a known browser (no new-device alert e-mail), as in real life.
    devices: dict[str, str] = field(default_factory=dict)


def seed_users(
    database_url: str, count: int, origin: str, prefix: str = "bench.pk", password: bool = True
) -> Population:
    """``count`` activated users, each with one ES256 passkey, written in one transaction.

    The users share one Argon2id hash of ``bench.password_login.PASSWORD`` made with the
    server's parameters (so the same users serve the password benchmark, with no rehash).
    """
    from argon2 import PasswordHasher
    from sqlalchemy import insert, select

    from authserver.accounts.validation import email_key, username_key
    from authserver.db import make_engine
    from authserver.models import User, WebAuthnCredential, utcnow
    from tests.softauthn import SoftAuthenticator, b64url

    started = time.perf_counter()
    authenticator = SoftAuthenticator(rp_id=RP_ID, origin=origin)
    password_hash = PasswordHasher(**argon2_parameters()).hash(PASSWORD) if password else None
    now = utcnow()
    rows = []
    handles = {}
    for i in range(count):
        username = f"{prefix}{i:05d}"
        email = f"{username}@bench.example.fr"
        handle = secrets.token_bytes(32)
        handles[username_key(username)] = handle
        rows.append(
            {
                "public_id": secrets.token_hex(16),
                "user_handle": handle,
                "username": username,
                "username_key": username_key(username),
                "email": email,
                "email_key": email_key(email),
                "password_hash": password_hash,
                "password_changed_at": now if password_hash else None,
                "first_name": "Bench",
                "last_name": f"User {i}",
                "created_at": now,
                "activated_at": now,
                "passkey_offer_refused": True,
            }
        )
    engine = make_engine(database_url)  # the server's own settings (SQLite pragmas, pool)
    users: list[BenchUser] = []
    try:
        with engine.begin() as connection:
            connection.execute(insert(User), rows)
            ids = dict(
                connection.execute(
                    select(User.username_key, User.id).where(User.username_key.in_(list(handles)))
                ).all()
            )
            credentials = []
            for key, handle in handles.items():
                options = {
                    "rp": {"id": RP_ID, "name": "bench"},
                    "user": {"id": b64url(handle), "name": key, "displayName": key},
                    "challenge": b64url(os.urandom(16)),
                    "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
                }
                made = authenticator.register(options)
                credential = authenticator.credential(made["id"])
                credentials.append(
                    {
                        "credential_id": credential.credential_id,
                        "user_id": ids[key],
                        "public_key": credential.cose_key,
                        "sign_count": 0,
                        "transports": "internal,hybrid",
                        "aaguid": "00000000-0000-0000-0000-000000000000",
                        "attestation_format": "none",
                        "backup_eligible": False,
                        "backup_state": False,
                        "name": "Clé d'accès (bench)",
                        "created_at": now,
                    }
                )
                users.append(BenchUser(key, made["id"]))
            connection.execute(insert(WebAuthnCredential), credentials)
    finally:
        engine.dispose()
    return Population(users, authenticator, time.perf_counter() - started)


# --------------------------------------------------------------------------- the operation


def passkey_login_op(load: Load, population: Population, connections: int):
    """One complete passkey login per call; users are split between the virtual browsers."""
    users = population.users
    if len(users) < connections:
        raise ValueError("at least one user per connection (a shared credential's counter races)")
    per_client = [users[i::connections] for i in range(connections)]
    ceremony: dict[int, str] = {}  # per virtual browser
    devices = population.devices  # per user (its browser's device cookie)
    authenticator = population.authenticator
    empty = b"{}"

    async def op(conn: Connection, index: int, iteration: int) -> None:
        mine = per_client[index]
        user = mine[iteration % len(mine)]
        jar: dict[str, str] = {}
        if index in ceremony:
            jar["authserver_ceremony"] = ceremony[index]
        if user.username in devices:
            jar["authserver_device"] = devices[user.username]
        options = load.count(
            await conn.request("POST", "/webauthn/login/options", JSON, empty, jar)
        )
        if options.status != 200:
            raise HTTPError(f"POST /webauthn/login/options: {options.status}")
        got = options.cookies()
        if got.get("authserver_ceremony"):
            ceremony[index] = jar["authserver_ceremony"] = got["authserver_ceremony"]
        assertion = authenticator.assert_(
            json.loads(options.body), credential_id=user.credential_id
        )
        body = json.dumps({"credential": assertion}, separators=(",", ":")).encode()
        answer = load.count(await conn.request("POST", "/webauthn/login/verify", JSON, body, jar))
        if answer.status != 200:
            raise HTTPError(f"POST /webauthn/login/verify: {answer.status} {answer.body[:160]!r}")
        cookies = answer.cookies()
        if not cookies.get("authserver_session"):
            raise HTTPError("POST /webauthn/login/verify: 200 without authserver_session")
        if cookies.get("authserver_device"):
            devices[user.username] = cookies["authserver_device"]

    return op


def login_sessions(server: ServerProcess, population: Population) -> list[tuple[str, str]]:
    """One passkey login per user, synchronously: ``(authserver_session cookie, username)``."""
    import http.client

    sessions = []
    for user in population.users:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        headers = {**JSON, "Host": f"localhost:{server.port}"}
        conn.request("POST", "/webauthn/login/options", body=b"{}", headers=headers)
        answer = conn.getresponse()
        options = json.loads(answer.read())
        ceremony = ""
        for header in answer.headers.get_all("Set-Cookie") or []:
            name, _, value = header.split(";", 1)[0].partition("=")
            if name == "authserver_ceremony":
                ceremony = value
        assertion = population.authenticator.assert_(options, credential_id=user.credential_id)
        conn.request(
            "POST",
            "/webauthn/login/verify",
            body=json.dumps({"credential": assertion}),
            headers={**headers, "Cookie": f"authserver_ceremony={ceremony}"},
        )
        done = conn.getresponse()
        done.read()
        conn.close()
        cookie = ""
        for header in done.headers.get_all("Set-Cookie") or []:
            name, _, value = header.split(";", 1)[0].partition("=")
            if name == "authserver_session":
                cookie = value
        if done.status != 200 or not cookie:
            raise HTTPError(f"passkey login of {user.username}: {done.status}")
        sessions.append((cookie, user.username))
    return sessions


def prime(server: ServerProcess, make_op: Any, operations: int, connections: int) -> None:
    """Every user logs in about twice before anything is measured: each has its device
    cookie (later logins are a returning user's), the first-login writes are done."""
    load = Load()
    load.run(
        "prime",
        server,
        make_op(load),
        connections=connections,
        duration=120.0,
        max_operations=operations,
        warmup=0.0,
    )


# --------------------------------------------------------------------------- the benchmark


def measure(
    server: ServerProcess,
    population: Population,
    options: Options,
    rounds: int,
    label: str = "",
) -> tuple[dict[str, Any], list[list[Any]], list[float]]:
    """healthz and passkey logins alternating for ``rounds`` rounds: results, rows, ratios."""
    duration = 1.5 if options.quick else options.duration
    warmup = 0.5 if options.quick else 1.0
    results: dict[str, Any] = {}
    rows: list[list[Any]] = []
    ratios: list[float] = []
    for round_number in range(1, rounds + 1):
        load = Load()
        log(f"[{NAME}{label}] GET /healthz, round {round_number}, {duration} s ...")
        bare = load.run(
            "healthz",
            server,
            healthz_op(load),
            connections=options.connections,
            duration=duration,
            max_operations=options.max_operations,
            warmup=warmup,
        ).as_dict()
        load = Load()
        log(f"[{NAME}{label}] passkey logins, round {round_number}, {duration} s ...")
        logins = load.run(
            "passkey_login",
            server,
            passkey_login_op(load, population, options.connections),
            connections=options.connections,
            duration=duration,
            max_operations=options.max_operations,
            warmup=warmup,
            min_operations=10,
        ).as_dict()
        results[f"healthz_{round_number}"] = bare
        results[f"passkey_login_{round_number}"] = logins
        ratio = logins["rate_per_s"] / (bare["rate_per_s"] / 2) if bare["rate_per_s"] else 0.0
        ratios.append(round(ratio, 3))
        rows.append(load_row(f"GET /healthz (bare){label}, round {round_number}", bare))
        rows.append(
            load_row(f"passkey login (options+verify){label}, round {round_number}", logins)
        )
    return results, rows, ratios


def run_one(
    options: Options, users: int = 500, env: dict[str, str] | None = None, rounds: int | None = None
) -> Report:
    rounds = rounds or (1 if options.quick else 2)
    users = max(users if not options.quick else 64, options.connections)
    data: dict[str, Any] = {
        "config": {
            "database": (env or {}).get("AUTHSERVER_DATABASE_URL", "sqlite (file, WAL)"),
            "redis": bool((env or {}).get("AUTHSERVER_REDIS_URL")),
            "workers": options.workers,
            "threads": options.threads,
            "connections": options.connections,
            "users_with_passkeys": users,
            "duration_s": 1.5 if options.quick else options.duration,
            "rounds": rounds,
        },
        "login_includes": LOGIN_INCLUDES,
        "goal": f"passkey logins/s >= {GOAL:.0%} of healthz/s / 2",
    }
    server = ServerProcess(
        workers=options.workers, threads=options.threads, env=env, engine=options.engine
    )
    try:
        server.migrate()
        server.start(wait=False)
        population = seed_users(
            server.env["AUTHSERVER_DATABASE_URL"], users, f"http://localhost:{server.port}"
        )
        data["seed_s"] = round(population.seconds, 2)
        server.wait_healthy()
        prime(
            server,
            lambda load: passkey_login_op(load, population, options.connections),
            2 * users,
            options.connections,
        )
        log(f"[{NAME}] {server.url}: {users} users with passkeys in {population.seconds:.1f} s")
        results, rows, ratios = measure(server, population, options, rounds)
    finally:
        server.stop()
        data["server_log_problems"] = server.log_problems()
        server.cleanup()
    data["results"] = results
    data["goal_ratio_by_round"] = ratios
    data["goal_ratio"] = round(statistics.median(ratios), 3)
    data["meets_goal"] = data["goal_ratio"] >= GOAL

    def other(r: dict[str, Any]) -> float:
        return r["machine_busy_cores"] - r["client_cpu_cores"] - r["server_cpu_cores"]

    data["noisy_scenarios"] = [k for k, r in results.items() if other(r) > NOISY_CORES]
    rows.append(
        [
            f"logins / (healthz / 2), median of {rounds} (goal {GOAL:.0%})",
            f"{data['goal_ratio']:.0%}",
            *["-"] * 7,
        ]
    )
    return Report(name=NAME, data=data, rows=rows)


def run(options: Options) -> Report:
    return run_one(options)


# --------------------------------------------------------------------------- sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.passkey_login", description=__doc__)
    parser.add_argument("--configs", default="2x4", help="workers x threads, comma-separated")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--backend", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the sweep")
    args = parser.parse_args(argv)

    services: list[Any] = []
    env: dict[str, str] = {}
    if args.backend == "pg":
        from bench.suite import start_services

        services, env = start_services()
    rows: list[list[Any]] = []
    sweep: dict[str, Any] = {"machine": machine(), "backend": args.backend, "configs": {}}
    try:
        for config in args.configs.split(","):
            workers, threads = (int(x) for x in config.lower().split("x"))
            options = Options(
                quick=args.quick,
                connections=args.connections,
                duration=args.duration,
                workers=workers,
                threads=threads,
            )
            if args.backend == "pg":
                env = {**env, **fresh_database(services[0])}
            report = run_one(options, users=args.users, env=env or None, rounds=args.rounds)
            sweep["configs"][config] = report.data
            rows.extend([[f"{config}: {row[0]}", *row[1:]] for row in report.rows])
    finally:
        for service in reversed(services):
            service.stop()
    print(table(rows, TABLE_HEADER))
    out = args.out or (
        Path(tempfile.gettempdir()) / "authserver-bench-quick" / "passkey_sweep.json"
        if args.quick
        else RESULTS_DIR / f"passkey_sweep_{args.backend}.json"
    )
    write_json(out, sweep)
    log(f"-> {out}")
    return 0


def fresh_database(postgres: Any) -> dict[str, str]:
    name = f"bench_{secrets.token_hex(4)}"
    return {"AUTHSERVER_DATABASE_URL": postgres.create_database(name)}


if __name__ == "__main__":
    sys.exit(main())
