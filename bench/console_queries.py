"""The security console's queries at 1,000,000 login events, over real HTTP.

One freshly started ``authserver serve`` per database (SQLite file; PostgreSQL too
when its server binaries are installed), seeded straight into the database:

- 5,000 accounts (1,000 SIRETs, five accounts each), one known browser each;
- 1,000,000 login events over 90 days (ids in time order, as in production): 90 %
  successes, failures and throttled attempts, a quarter by passkey, 8 % on unknown
  identifiants from a few hundred addresses;
- 5,000 alerts of every kind and status.

Then every console page and JSON API call of the issue is requested in turn on one
keep-alive connection — the pages with a security user's session cookie, the API
with a bearer token — ``repeats`` times after one warm-up request; each latency is
the whole HTTP exchange (query, rendering, transfer). Reported per scenario: median,
p95 and max in ms, rows returned; the goal is a median and p95 under 200 ms.
The burst detector is timed in-process over the last 5,000 events. ``--quick``
seeds 20,000 events on SQLite only and repeats 3 times: it proves the benchmark runs.
``BENCH_DATABASES=sqlite`` (or ``postgresql``) limits a run to one database.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from bench.client import Connection, HTTPError
from bench.cpu import self_cpu_seconds, system_cpu_seconds
from bench.load import percentile
from bench.report import NOISY_CORES, Options, Report, log, table
from bench.server import ServerProcess

NAME = "console_queries"
GOAL_MS = 200.0
PASSWORD = "bench: correct horse battery staple 42"
SECURITY_USER = "bench.securite"
CSRF_RE = re.compile(rb'<meta name="csrf-token" content="([^"]+)"')
ROW_RE = re.compile(rb'data-(?:alert|event)-id="')
PARIS = ZoneInfo("Europe/Paris")
DAYS = 90
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Version/18.1 Safari",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile",
)
ALERT_KINDS = (
    "new_device",
    "new_device",
    "new_device",
    "throttled",
    "not_me",
    "passkey_cloned",
    "failure_burst_account",
    "failure_burst_ip",
    "many_accounts_ip",
    "many_accounts_device",
)
STATUSES = ("open", "acknowledged", "escalated", "closed", "closed", "closed")


@dataclass(frozen=True)
class Sizes:
    users: int
    sirets: int
    events: int
    alerts: int
    repeats: int


FULL = Sizes(users=5_000, sirets=1_000, events=1_000_000, alerts=5_000, repeats=30)
QUICK = Sizes(users=500, sirets=100, events=20_000, alerts=300, repeats=3)


# --------------------------------------------------------------------------- data


@dataclass
class Dataset:
    """What was seeded, and the values the scenarios filter on."""

    now: datetime
    usernames: list[str]
    sirets: list[str]
    home_ips: list[str]
    attacker_ips: list[str]
    sample: dict[str, Any] = field(default_factory=dict)


def _ip(n: int) -> str:
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def make_dataset(sizes: Sizes, now: datetime) -> Dataset:
    rng = random.Random(20261126)
    usernames = [f"bench.compte{n:05d}" for n in range(sizes.users)]
    sirets = [f"{rng.randrange(10**13, 10**14)}" for _ in range(sizes.sirets)]
    home_ips = [_ip(rng.randrange(1 << 24)) for _ in range(sizes.users)]
    attacker_ips = [f"198.51.{n // 250}.{n % 250 + 1}" for n in range(300)]
    return Dataset(now, usernames, sirets, home_ips, attacker_ips)


def event_rows(data: Dataset, sizes: Sizes) -> Iterator[tuple[Any, ...]]:
    """(created_at naive UTC, user_id, username_attempt, ip, user_agent, method, outcome,
    reason, device_id), in time order. User and device ids are 1-based insert order."""
    rng = random.Random(42)
    start = data.now - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / sizes.events
    pool = len(data.home_ips)
    for n in range(sizes.events):
        moment = (start + step * n + timedelta(microseconds=rng.randrange(1000))).replace(
            tzinfo=None
        )
        agent = USER_AGENTS[n % len(USER_AGENTS)]
        if rng.random() < 0.08:  # an unknown identifiant, from an attacker's address
            yield (
                moment,
                None,
                f"inconnu{rng.randrange(100000)}",
                data.attacker_ips[rng.randrange(len(data.attacker_ips))],
                agent,
                "password",
                "failure",
                "bad_credentials",
                None,
            )
            continue
        user = rng.randrange(len(data.usernames))
        ip = data.home_ips[user] if rng.random() < 0.85 else data.home_ips[rng.randrange(pool)]
        method = "passkey" if rng.random() < 0.25 else "password"
        draw = rng.random()
        if draw < 0.9:
            outcome, reason, device = "success", "", user + 1
        elif draw < 0.98 or method == "passkey":
            outcome, reason, device = "failure", "bad_credentials", None
        else:
            outcome, reason, device = "throttled", "throttled", None
        attempt = data.usernames[user] if method == "password" else ""
        yield (moment, user + 1, attempt, ip, agent, method, outcome, reason, device)


EVENT_COLUMNS = (
    "created_at",
    "user_id",
    "username_attempt",
    "ip",
    "user_agent",
    "method",
    "outcome",
    "reason",
    "device_id",
)


def _chunks(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def seed(database_url: str, data: Dataset, sizes: Sizes) -> dict[str, float]:
    """Users, devices and alerts through SQLAlchemy; the events with the driver's fastest path."""
    from sqlalchemy import insert

    from authserver.accounts.validation import email_key, username_key
    from authserver.db import Database
    from authserver.models import Device, SecurityEvent, User

    took: dict[str, float] = {}
    database = Database(database_url)
    rng = random.Random(7)
    try:
        t0 = time.perf_counter()
        with database.session_scope() as session:
            session.execute(
                insert(User),
                [
                    {
                        "username": name,
                        "username_key": username_key(name),
                        "email": f"{name}@bench.example.fr",
                        "email_key": email_key(f"{name}@bench.example.fr"),
                        "siret": data.sirets[n % len(data.sirets)],
                        "first_name": "Bench",
                        "last_name": name,
                        "activated_at": data.now - timedelta(days=DAYS + 1),
                        "created_at": data.now - timedelta(days=DAYS + 1),
                    }
                    for n, name in enumerate(data.usernames)
                ],
            )
            session.execute(
                insert(Device),
                [
                    {
                        "user_id": n + 1,
                        "cookie_hash": rng.randbytes(32),
                        "first_seen_at": data.now - timedelta(days=DAYS),
                        "last_seen_at": data.now - timedelta(days=1),
                        "last_ip": data.home_ips[n],
                        "browser": "Chrome 131",
                        "system": "Windows 10",
                    }
                    for n in range(len(data.usernames))
                ],
            )
        took["users_devices_s"] = round(time.perf_counter() - t0, 1)

        t0 = time.perf_counter()
        if database.is_sqlite:
            _seed_events_sqlite(database_url, data, sizes)
        else:
            _seed_events_postgres(database, data, sizes)
        took["events_s"] = round(time.perf_counter() - t0, 1)

        t0 = time.perf_counter()
        start = data.now - timedelta(days=DAYS)
        alerts = []
        for n in range(sizes.alerts):
            kind = ALERT_KINDS[rng.randrange(len(ALERT_KINDS))]
            on_ip = kind in ("failure_burst_ip", "many_accounts_ip", "many_accounts_device")
            user = rng.randrange(len(data.usernames))
            alerts.append(
                {
                    "created_at": start + timedelta(days=DAYS) * (n / sizes.alerts),
                    "kind": kind,
                    "severity": ("low", "medium", "high")[rng.randrange(3)],
                    "status": STATUSES[rng.randrange(len(STATUSES))],
                    "user_id": None if on_ip else user + 1,
                    "ip": data.attacker_ips[n % len(data.attacker_ips)]
                    if on_ip
                    else data.home_ips[user],
                    "details": {"subject": f"bench:{n}"},
                }
            )
        with database.session_scope() as session:
            session.execute(insert(SecurityEvent), alerts)
        took["alerts_s"] = round(time.perf_counter() - t0, 1)
        if not database.is_sqlite:
            with database.engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE")
    finally:
        database.dispose()
    return took


def _seed_events_sqlite(database_url: str, data: Dataset, sizes: Sizes) -> None:
    path = database_url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")
        statement = (
            f"INSERT INTO login_events ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
        )
        for chunk in _chunks(event_rows(data, sizes), 50_000):
            # SQLAlchemy's SQLite DATETIME text format, microseconds always written.
            connection.executemany(
                statement,
                [(row[0].strftime("%Y-%m-%d %H:%M:%S.%f"), *row[1:]) for row in chunk],
            )
            connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def _seed_events_postgres(database: Any, data: Dataset, sizes: Sizes) -> None:
    raw = database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        copy_sql = f"COPY login_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
        with cursor.copy(copy_sql) as copy:
            for row in event_rows(data, sizes):
                copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def pick_samples(database_url: str, data: Dataset, sizes: Sizes) -> dict[str, Any]:
    """Real values to filter on, and keyset positions deep in the lists."""
    from sqlalchemy import func, select

    from authserver.alerts.console import cursor
    from authserver.db import Database
    from authserver.models import LoginEvent, SecurityEvent

    database = Database(database_url)
    try:
        with database.session_scope() as session:
            user_index = len(data.usernames) // 3

            def position(model: Any, depth: int, *conditions: Any) -> tuple[Any, Any]:
                row = session.execute(
                    select(model.created_at, model.id)
                    .where(*conditions)
                    .order_by(model.created_at.desc(), model.id.desc())
                    .offset(depth)
                    .limit(1)
                ).one()
                return row[0], row[1]

            deep = int(sizes.events * 0.9)
            deep_event = position(LoginEvent, deep)
            failures = session.scalar(
                select(func.count()).select_from(LoginEvent).where(LoginEvent.outcome == "failure")
            )
            deep_failure = position(
                LoginEvent, int((failures or 1) * 0.9), LoginEvent.outcome == "failure"
            )
            half_event = position(LoginEvent, sizes.events // 2)
            deep_alert = position(SecurityEvent, int(sizes.alerts * 0.9))
            alert_with_user = session.scalar(
                select(SecurityEvent.id)
                .where(SecurityEvent.kind == "not_me")
                .order_by(SecurityEvent.id.desc())
                .limit(1)
            )
    finally:
        database.dispose()
    period_end = (data.now - timedelta(days=30)).astimezone(PARIS).date()
    return {
        "username": data.usernames[user_index],
        "siret": data.sirets[user_index % len(data.sirets)],
        "ip": data.home_ips[user_index],
        "attacker_ip": data.attacker_ips[0],
        "period": ((period_end - timedelta(days=6)).isoformat(), period_end.isoformat()),
        "deep_event_cursor": cursor.encode(cursor.Position(*deep_event)),
        "deep_failure_cursor": cursor.encode(cursor.Position(*deep_failure)),
        "half_event_id": half_event[1],
        "deep_alert_cursor": cursor.encode(cursor.Position(*deep_alert)),
        "deep_alert_id": deep_alert[1],
        "alert_id": alert_with_user,
    }


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    label: str
    path: str
    auth: str  # "session" or "bearer"
    kind: str  # "html", "csv" or "json"


def scenarios(s: dict[str, Any]) -> list[Scenario]:
    start, end = s["period"]

    def q(path: str, **args: Any) -> str:
        return f"{path}?{urlencode(args)}" if args else path

    pages = [
        ("page /security: alerts, no filter", q("/security")),
        ("page /security: alerts by kind", q("/security", kind="failure_burst_ip")),
        ("page /security: alerts by status", q("/security", status="open")),
        ("page /security: alerts by account", q("/security", account=s["username"])),
        ("page /security: alerts by SIRET", q("/security", siret=s["siret"])),
        ("page /security: alerts by IP", q("/security", ip=s["attacker_ip"])),
        ("page /security: alerts by period", q("/security", **{"from": start, "to": end})),
        ("page /security: alerts, deep page", q("/security", before=s["deep_alert_id"])),
        ("page alert detail (50 events, devices)", f"/security/alerts/{s['alert_id']}"),
        ("page events: no filter", q("/security/events")),
        ("page events: by account", q("/security/events", account=s["username"])),
        ("page events: by SIRET", q("/security/events", siret=s["siret"])),
        ("page events: by IP", q("/security/events", ip=s["ip"])),
        ("page events: by period (7 days)", q("/security/events", **{"from": start, "to": end})),
        ("page events: outcome failure", q("/security/events", outcome="failure")),
        ("page events: outcome throttled", q("/security/events", outcome="throttled")),
        ("page events: method passkey", q("/security/events", method="passkey")),
        (
            "page events: account + failure",
            q("/security/events", account=s["username"], outcome="failure"),
        ),
        ("page events: IP + failure", q("/security/events", ip=s["ip"], outcome="failure")),
        (
            "page events: period + failure",
            q("/security/events", outcome="failure", **{"from": start, "to": end}),
        ),
        ("page events: half-way page (before=)", q("/security/events", before=s["half_event_id"])),
    ]
    csvs = [
        ("CSV events: by account", q("/security/events/export.csv", account=s["username"])),
        ("CSV alerts: by SIRET", q("/security/export.csv", siret=s["siret"])),
    ]
    api = [
        ("API events: first page (100)", q("/api/security/events")),
        ("API events: first page (500)", q("/api/security/events", limit=500)),
        ("API events: deep page (90 %)", q("/api/security/events", cursor=s["deep_event_cursor"])),
        (
            "API events: failure, deep page",
            q("/api/security/events", outcome="failure", cursor=s["deep_failure_cursor"]),
        ),
        ("API events: by account", q("/api/security/events", account=s["username"])),
        ("API events: by SIRET", q("/api/security/events", siret=s["siret"])),
        (
            "API events: IP + period",
            q("/api/security/events", ip=s["attacker_ip"], **{"from": start, "to": end}),
        ),
        (
            "API events: SIRET + throttled",
            q("/api/security/events", siret=s["siret"], outcome="throttled"),
        ),
        (
            "API events: attacker IP + success (no row)",
            q("/api/security/events", ip=s["attacker_ip"], outcome="success"),
        ),
        (
            "API events: no row matches (passkey + throttled)",
            q("/api/security/events", method="passkey", outcome="throttled"),
        ),
        ("API alerts: first page", q("/api/security/alerts")),
        ("API alerts: deep page", q("/api/security/alerts", cursor=s["deep_alert_cursor"])),
        ("API alerts: by status + kind", q("/api/security/alerts", status="open", kind="not_me")),
    ]
    return (
        [Scenario(label, path, "session", "html") for label, path in pages]
        + [Scenario(label, path, "session", "csv") for label, path in csvs]
        + [Scenario(label, path, "bearer", "json") for label, path in api]
    )


def _rows_in(scenario: Scenario, body: bytes) -> int:
    if scenario.kind == "html":
        return len(ROW_RE.findall(body))
    if scenario.kind == "csv":
        return max(0, body.count(b"\r\n") - 1)
    import json

    return len(json.loads(body)["items"])


async def _login(conn: Connection) -> dict[str, str]:
    page = await conn.request("GET", "/login")
    match = CSRF_RE.search(page.body)
    if page.status != 200 or not match:
        raise HTTPError(f"GET /login: {page.status}")
    jar = page.cookies()
    body = urlencode(
        {"csrf_token": match.group(1).decode(), "username": SECURITY_USER, "password": PASSWORD}
    ).encode()
    answer = await conn.request(
        "POST",
        "/login",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=body,
        cookies=jar,
    )
    session = answer.cookies().get("authserver_session")
    if answer.status != 302 or not session:
        raise HTTPError(f"POST /login: {answer.status}")
    return {"authserver_session": session}


async def _measure(
    server: ServerProcess, token: str, cases: list[Scenario], repeats: int
) -> list[dict[str, Any]]:
    conn = Connection("127.0.0.1", server.port)
    try:
        cookies = await _login(conn)
        results = []
        for case in cases:
            headers = {"Authorization": f"Bearer {token}"} if case.auth == "bearer" else {}
            jar = cookies if case.auth == "session" else None
            latencies = []
            rows = 0
            busy_before, _ = system_cpu_seconds()
            server_before, client_before = server.cpu_seconds(), self_cpu_seconds()
            wall = time.perf_counter()
            log(f"[{NAME}]   {case.label} ...")
            for attempt in range(repeats + 1):  # the first one warms caches, not counted
                began = time.perf_counter()
                response = await conn.request("GET", case.path, headers=headers, cookies=jar)
                took = (time.perf_counter() - began) * 1000
                if response.status != 200:
                    raise HTTPError(f"{case.path}: {response.status} {response.body[:200]!r}")
                rows = _rows_in(case, response.body)
                if attempt:
                    latencies.append(took)
            wall = max(time.perf_counter() - wall, 1e-3)
            server_cores = (server.cpu_seconds() - server_before) / wall
            client_cores = (self_cpu_seconds() - client_before) / wall
            busy = (system_cpu_seconds()[0] - busy_before) / wall
            latencies.sort()
            results.append(
                {
                    "scenario": case.label,
                    "path": case.path,
                    "auth": case.auth,
                    "rows": rows,
                    "repeats": repeats,
                    "median_ms": round(percentile(latencies, 0.5), 2),
                    "p95_ms": round(percentile(latencies, 0.95), 2),
                    "p99_ms": round(percentile(latencies, 0.99), 2),
                    "max_ms": round(latencies[-1], 2),
                    "under_goal": percentile(latencies, 0.95) < GOAL_MS,
                    "server_cpu_cores": round(server_cores, 2),
                    "client_cpu_cores": round(client_cores, 2),
                    "other_cpu_cores": round(max(0.0, busy - server_cores - client_cores), 2),
                }
            )
        return results
    finally:
        conn.close()


# --------------------------------------------------------------------------- detector


def time_detector(database_url: str, now: datetime, last: int) -> dict[str, Any]:
    """One ``detect`` run over the last ``last`` events (the mark set just before them)."""
    from sqlalchemy import func, select, update

    from authserver.alerts.console.detection import detect
    from authserver.db import Database
    from authserver.models import DetectorState, LoginEvent

    database = Database(database_url)
    try:
        with database.session_scope() as session:
            top = session.scalar(select(func.max(LoginEvent.id))) or 0
            session.execute(
                update(DetectorState)
                .where(DetectorState.name == "login_bursts")
                .values(last_id=max(0, top - last))
            )
        began = time.perf_counter()
        with database.session_scope() as session:
            raised = detect(session, now)
            kinds: dict[str, int] = {}
            for alert in raised:
                kinds[alert.kind] = kinds.get(alert.kind, 0) + 1
        took = (time.perf_counter() - began) * 1000
    finally:
        database.dispose()
    return {"events_scanned": last, "ms": round(took, 1), "alerts_raised": kinds}


# --------------------------------------------------------------------------- one backend


def run_backend(backend: str, options: Options, sizes: Sizes) -> dict[str, Any]:
    extra: dict[str, str] = {"AUTHSERVER_DETECTOR_INTERVAL": "0"}
    postgres = None
    if backend == "postgresql":
        from tests.services import PostgresServer

        postgres = PostgresServer().start()
        extra["AUTHSERVER_DATABASE_URL"] = postgres.create_database("bench_console")
    server = ServerProcess(
        workers=options.workers, threads=options.threads, env=extra, engine=options.engine
    )
    database_url = server.env["AUTHSERVER_DATABASE_URL"]
    now = datetime.now(timezone.utc)
    data = make_dataset(sizes, now)
    out: dict[str, Any] = {"database": backend}
    try:
        server.migrate()
        t0 = time.perf_counter()
        out["seed_s"] = seed(database_url, data, sizes)
        out["seed_s"]["total_s"] = round(time.perf_counter() - t0, 1)
        log(f"[{NAME}/{backend}] seeded {sizes.events:,} events in {out['seed_s']} s")
        server.cli(
            "user",
            "create",
            "--username",
            SECURITY_USER,
            "--email",
            "securite@bench.example.fr",
            "--role",
            "security",
            "--activated",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        token = server.cli(
            "security", "token", "create", "--username", SECURITY_USER, "--name", "bench"
        ).strip()
        sample = pick_samples(database_url, data, sizes)
        out["samples"] = sample
        server.start()
        log(f"[{NAME}/{backend}] server up on {server.url}; {sizes.repeats} runs per scenario")
        out["scenarios"] = asyncio.run(_measure(server, token, scenarios(sample), sizes.repeats))
        server.stop()
        out["detector"] = time_detector(database_url, now, min(5000, sizes.events))
    finally:
        server.stop()
        out["server_log_problems"] = server.log_problems()
        server.cleanup()
        if postgres is not None:
            postgres.stop()
    return out


def backends(options: Options) -> list[str]:
    """SQLite always; PostgreSQL in full runs when installed. ``BENCH_DATABASES`` overrides
    (``sqlite``, ``postgresql`` or both, comma-separated)."""
    chosen = os.environ.get("BENCH_DATABASES")
    if chosen:
        return [name.strip() for name in chosen.split(",") if name.strip()]
    if not options.quick and _postgres_available():
        return ["sqlite", "postgresql"]
    return ["sqlite"]


def _postgres_available() -> bool:
    try:
        from tests.services import PostgresServer
    except ImportError:
        return False
    return PostgresServer.available()


def run(options: Options) -> Report:
    sizes = QUICK if options.quick else FULL
    data: dict[str, Any] = {
        "config": {
            "users": sizes.users,
            "sirets": sizes.sirets,
            "login_events": sizes.events,
            "alerts": sizes.alerts,
            "repeats": sizes.repeats,
            "workers": options.workers,
            "threads": options.threads,
            "goal_ms": GOAL_MS,
            "measured": "whole HTTP exchange on one keep-alive connection, one request at a "
            "time, after one warm-up request per scenario",
        },
        "results": {},
    }
    rows: list[list[Any]] = []
    problems: list[str] = []
    for backend in backends(options):
        result = run_backend(backend, options, sizes)
        data["results"][backend] = result
        problems.extend(f"{backend}: {line}" for line in result["server_log_problems"])
        detail = []
        for item in result["scenarios"]:
            noisy = item["other_cpu_cores"] > NOISY_CORES
            rows.append(
                [
                    f"{backend}: {item['scenario']}",
                    round(1000 / item["median_ms"], 1) if item["median_ms"] else 0.0,
                    item["median_ms"],
                    item["p99_ms"],
                    item["repeats"],
                    0,
                    f"{item['client_cpu_cores']:.2f}",
                    f"{item['server_cpu_cores']:.2f}",
                    f"{item['other_cpu_cores']:.2f}{' !' if noisy else ''}",
                ]
            )
            detail.append(
                [
                    item["scenario"],
                    item["rows"],
                    item["median_ms"],
                    item["p95_ms"],
                    item["max_ms"],
                    "yes" if item["under_goal"] else "NO",
                ]
            )
        header = ("scenario", "rows", "median ms", "p95 ms", "max ms", "p95 < 200 ms")
        log(f"[{NAME}/{backend}] {sizes.events:,} login events\n" + table(detail, header))
        detector = result["detector"]
        log(
            f"[{NAME}/{backend}] detector: {detector['events_scanned']} events in "
            f"{detector['ms']} ms, raised {detector['alerts_raised']}"
        )
        slow = [i["scenario"] for i in result["scenarios"] if not i["under_goal"]]
        log(f"[{NAME}/{backend}] p95 over {GOAL_MS:.0f} ms: {slow or 'none'}")
    data["server_log_problems"] = problems
    return Report(name=NAME, data=data, rows=rows)
