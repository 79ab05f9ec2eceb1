"""``GET /auth/verify`` (forward-auth) per second, beside the bare ``GET /healthz``.

Measured in one run, on one freshly started multi-worker ``authserver serve`` (SQLite):
each virtual client (one keep-alive connection) carries the ``authserver_session`` cookie
of its own logged-in session (made by real password logins beforehand) and asks
``/auth/verify`` as nginx ``auth_request`` would; every answer must be 200 with the
``X-Auth-User`` header. The bare endpoint and forward-auth alternate (A, B, A, B) so that
drift in the machine's load hits both; the figure is verify's rate over healthz's in the
same round. Goal (issue 6): at least 80 %.
"""

from __future__ import annotations

import http.client
import re
import statistics
import time
from typing import Any
from urllib.parse import urlencode

from bench.client import Connection, HTTPError
from bench.load import Load
from bench.report import NOISY_CORES, Options, Report, load_row, log
from bench.server import ServerProcess

NAME = "forward_auth"
PASSWORD = "bench: correct horse battery staple 42"
USERNAME = "bench.verify"
CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
GOAL = 0.80


def _cookies(response: http.client.HTTPResponse) -> dict[str, str]:
    jar = {}
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, value = header.split(";", 1)[0].partition("=")
        jar[name.strip()] = value.strip()
    return jar


def login_sessions(server: ServerProcess, count: int) -> list[str]:
    """``count`` real password logins (one browser: the device cookie is kept); their cookies."""
    server.cli(
        "user",
        "create",
        "--username",
        USERNAME,
        "--email",
        f"{USERNAME}@bench.example.fr",
        "--activated",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    sessions: list[str] = []
    device: dict[str, str] = {}
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        cookie = "; ".join(f"{k}={v}" for k, v in device.items())
        conn.request("GET", "/login", headers={"Cookie": cookie} if cookie else {})
        page = conn.getresponse()
        body = page.read().decode()
        jar = {**device, **_cookies(page)}
        match = CSRF_RE.search(body)
        if page.status != 200 or not match:
            raise HTTPError(f"GET /login: {page.status}")
        form = urlencode({"csrf_token": match.group(1), "username": USERNAME, "password": PASSWORD})
        conn.request(
            "POST",
            "/login",
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()),
            },
        )
        answer = conn.getresponse()
        answer.read()
        got = _cookies(answer)
        conn.close()
        if answer.status != 302 or not got.get("authserver_session"):
            raise HTTPError(f"POST /login: {answer.status}")
        if got.get("authserver_device"):
            device["authserver_device"] = got["authserver_device"]
        sessions.append(got["authserver_session"])
    return sessions


def healthz_op(load: Load):
    async def op(conn: Connection, index: int, iteration: int) -> None:
        response = load.count(await conn.request("GET", "/healthz"))
        if response.status != 200:
            raise HTTPError(f"GET /healthz: {response.status}")

    return op


def verify_op(load: Load, sessions: list[str]):
    async def op(conn: Connection, index: int, iteration: int) -> None:
        cookie = {"authserver_session": sessions[index % len(sessions)]}
        response = load.count(await conn.request("GET", "/auth/verify", cookies=cookie))
        if response.status != 200 or response.header("x-auth-user") != USERNAME:
            raise HTTPError(f"GET /auth/verify: {response.status}")

    return op


def run(options: Options) -> Report:
    quick = options.quick
    duration = 1.0 if quick else options.duration
    warmup = 0.5 if quick else 1.0
    rounds = 1 if quick else 2
    sessions_count = 4 if quick else options.connections
    data: dict[str, Any] = {
        "config": {
            "database": "sqlite (file, WAL per the server's defaults)",
            "workers": options.workers,
            "threads": options.threads,
            "connections": options.connections,
            "sessions": sessions_count,
            "duration_s": duration,
            "warmup_s": warmup,
            "rounds": rounds,
            "max_operations": options.max_operations,
        },
        "verify_includes": (
            "GET /auth/verify with the authserver_session cookie: SHA-256 of the cookie, one "
            "SELECT session JOIN user by primary key, liveness checks, five X-Auth-* headers; "
            "last_seen_at touched at most once a minute per session"
        ),
        "goal_ratio": GOAL,
    }
    results: dict[str, Any] = {}
    rows = []
    server = ServerProcess(workers=options.workers, threads=options.threads, engine=options.engine)
    try:
        t0 = time.perf_counter()
        server.migrate()
        server.start(wait=False)
        server.wait_healthy()
        sessions = login_sessions(server, sessions_count)
        log(
            f"[{NAME}] server up on {server.url}, {len(sessions)} sessions, "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        for round_number in range(1, rounds + 1):
            for label, make in (
                ("healthz", lambda load: healthz_op(load)),
                ("verify", lambda load: verify_op(load, sessions)),
            ):
                key = f"{label}_{round_number}"
                log(f"[{NAME}] {key}: {options.connections} connections, {duration} s ...")
                load = Load()
                result = load.run(
                    key,
                    server,
                    make(load),
                    connections=options.connections,
                    duration=duration,
                    max_operations=options.max_operations,
                    warmup=warmup,
                )
                results[key] = result.as_dict()
                path = "GET /healthz (bare)" if label == "healthz" else "GET /auth/verify"
                rows.append(load_row(f"{path}, round {round_number}", results[key]))
    finally:
        server.stop()
        data["server_log_problems"] = server.log_problems()
        server.cleanup()
    data["results"] = results

    ratios = []
    for round_number in range(1, rounds + 1):
        bare = results[f"healthz_{round_number}"]["rate_per_s"]
        verify = results[f"verify_{round_number}"]["rate_per_s"]
        ratios.append(round(verify / bare, 3) if bare else 0.0)
    data["verify_vs_healthz_by_round"] = ratios
    data["verify_vs_healthz"] = round(statistics.median(ratios), 3)
    data["meets_goal"] = data["verify_vs_healthz"] >= GOAL

    def other(r: dict[str, Any]) -> float:
        return r["machine_busy_cores"] - r["client_cpu_cores"] - r["server_cpu_cores"]

    data["noisy_scenarios"] = [k for k, r in results.items() if other(r) > NOISY_CORES]
    rows.append(
        [
            f"verify / healthz (median of {rounds}; goal {GOAL:.0%})",
            f"{data['verify_vs_healthz']:.0%}",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
        ]
    )
    return Report(name=NAME, data=data, rows=rows)
