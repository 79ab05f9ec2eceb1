"""Passkey logins: authserver against Flask-Security-Too, in one run (issue 13).

Issue 13 asks for returning passkey logins at 3 × Flask-Security-Too's or more, with a p99
under 50 ms, "the peer via the same load generator where you can". Both servers run here
side by side, each with the same workers × threads (ours under ``serve``'s default engine,
Granian; the peer under gunicorn, or Granian with ``--peer-engine granian``), on SQLite in
WAL mode, and the same load generator drives them in turn (A, B, A, B…: the machine's drift
weighs on both), 16 keep-alive connections, a software ES256 authenticator signing every
assertion:

- **authserver**: ``POST /webauthn/login/options`` then ``POST /webauthn/login/verify``, the
  browser's device cookie kept (no new-device e-mail), as ``bench/passkey_login.py``;
- **authserver, new browser**: the same two requests from a browser with no cookie at all
  (a new device: its alert e-mail is queued, and delivered to a real SMTP sink before the next
  measure), the case the issue found slower than the peer's logins;
- **Flask-Security-Too 5.9.2** (``bench/peer_fst_app.py``, its documented JSON setup):
  ``POST /wan-signin`` then ``POST /wan-signin/<state>``, without the previous login's
  session cookie (its sign-in refuses a signed-in browser).

The peer writes one row per login (the passkey's counter and last use) and keeps its session
in a signed cookie; authserver also writes the server-side session and the login event, and
checks the device, the throttles and the ceremony binding. Flask-Security-Too runs in a
virtual environment of its own, made on first use under ``~/.cache/authserver-bench`` with
the versions authserver has of the libraries both use (Flask, Werkzeug, SQLAlchemy,
py_webauthn, gunicorn…).

``python -m bench.peer_fst [--rounds 3] [--duration 6] [--peer-engine granian]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.client import Connection, HTTPError
from bench.load import Load
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
from bench.server import PROJECT_ROOT, ServerProcess

NAME = "peer_fst"
PEER = "Flask-Security-Too==5.9.2"
# Libraries both servers use: the peer gets authserver's versions of them.
SHARED = (
    "flask",
    "werkzeug",
    "sqlalchemy",
    "webauthn",
    "gunicorn",
    "granian",
    "cryptography",
    "flask-login",
    "flask-wtf",
    "itsdangerous",
)
GOAL_RATIO = 3.0
GOAL_P99_MS = 50.0
CONNECTIONS = 16
JSON_HEADERS = {"Content-Type": "application/json"}


def peer_venv() -> Path:
    """The peer's virtual environment, made once (pip, from the configured index)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "authserver-bench" / "fst-5.9.2"
    python = venv / "bin" / "python"
    if (venv / "bin" / "gunicorn").exists():
        if not (venv / "bin" / "granian").exists():  # made before the peer could run on it
            granian = f"granian=={metadata.version('granian')}"
            subprocess.run([str(python), "-m", "pip", "install", "-q", granian], check=True)
        return venv
    log(f"[{NAME}] making {venv} ({PEER}) ...")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pins = [f"{name}=={metadata.version(name)}" for name in SHARED]
    peer = PEER.replace("==", "[fsqla,mfa]==")  # its SQLAlchemy models, its WebAuthn needs
    subprocess.run([str(python), "-m", "pip", "install", "-q", peer, "nh3", *pins], check=True)
    return venv


@dataclass
class PeerUser:
    username: str
    credential_id: str


class PeerServer(ServerProcess):
    """Flask-Security-Too under gunicorn (gthread, the same workers × threads as ours; each
    worker takes its share of the benchmark's connections, as ours do with a socket each)."""

    def __init__(self, venv: Path, workers: int, threads: int, engine: str = "gunicorn") -> None:
        super().__init__(workers=workers, threads=threads, engine=engine)
        self.venv = venv
        self.database = self.tmpdir / "peer.db"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PEER_DATABASE=str(self.database),
            PEER_SECRET_KEY=self.secret_key,
            PYTHONUNBUFFERED="1",
        )
        return env

    def seed(self, count: int) -> tuple[list[PeerUser], Any]:
        """``count`` users with one passkey each; the authenticator holding their keys."""
        from tests.softauthn import SoftAuthenticator, b64url

        authenticator = SoftAuthenticator(rp_id="localhost", origin=f"http://localhost:{self.port}")
        people, users = [], []
        for i in range(count):
            handle = secrets.token_hex(32)  # the peer's fs_webauthn_user_handle (text)
            made = authenticator.register(
                {
                    "rp": {"id": "localhost", "name": "bench"},
                    "user": {"id": b64url(handle.encode()), "name": f"peer{i}", "displayName": "p"},
                    "challenge": b64url(os.urandom(16)),
                    "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
                }
            )
            key = authenticator.credential(made["id"]).cose_key
            people.append(
                {
                    "username": f"peer{i:05d}",
                    "handle": handle,
                    "credential_id": made["id"],
                    "public_key": b64url(key),
                }
            )
            users.append(PeerUser(f"peer{i:05d}", made["id"]))
        path = self.tmpdir / "people.json"
        path.write_text(json.dumps(people), encoding="utf-8")
        subprocess.run(
            [str(self.venv / "bin" / "python"), str(_app_file()), "seed", str(path)],
            env=self.env,
            check=True,
            capture_output=True,
        )
        return users, authenticator

    def command(self) -> list[str]:
        if self.engine == "granian":  # as ours: a socket per worker, HTTP outside Python
            return [
                str(self.venv / "bin" / "granian"),
                "--interface",
                "wsgi",
                "--workers",
                str(self.workers),
                "--blocking-threads",
                str(self.threads),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-ws",
                "--log-level",
                "warning",
                "--working-dir",
                str(_app_file().parent),
                "peer_fst_app:app",
            ]
        return [
            str(self.venv / "bin" / "gunicorn"),
            "--no-control-socket",
            "--worker-class",
            "gthread",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            # One listening socket for all workers (stock gunicorn): without a cap, the worker
            # that wakes first took all 16 connections in some rounds and the other sat idle.
            "--worker-connections",
            str(-(-CONNECTIONS // self.workers)),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--chdir",
            str(_app_file().parent),
            "peer_fst_app:app",
        ]


def _app_file() -> Path:
    return Path(__file__).with_name("peer_fst_app.py")


def peer_login_op(load: Load, users: list[PeerUser], authenticator: Any, connections: int):
    """One Flask-Security-Too passkey sign-in per call (a signed-out browser)."""
    per_client = [users[i::connections] for i in range(connections)]
    empty = b"{}"

    async def op(conn: Connection, index: int, iteration: int) -> None:
        mine = per_client[index]
        user = mine[iteration % len(mine)]
        options = load.count(await conn.request("POST", "/wan-signin", JSON_HEADERS, empty))
        if options.status != 200:
            raise HTTPError(f"POST /wan-signin: {options.status} {options.body[:160]!r}")
        answer = json.loads(options.body)["response"]
        jar = options.cookies()
        assertion = authenticator.assert_(
            answer["credential_options"], credential_id=user.credential_id
        )
        body = json.dumps({"credential": json.dumps(assertion)}).encode()
        path = f"/wan-signin/{answer['wan_state']}"
        done = load.count(await conn.request("POST", path, JSON_HEADERS, body, jar))
        if done.status != 200 or not done.cookies().get("session"):
            raise HTTPError(f"POST /wan-signin/<state>: {done.status} {done.body[:160]!r}")

    return op


def run(options: Options, rounds: int, peer_engine: str = "gunicorn") -> Report:
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    from bench.new_browser import new_browser_op, pending_mail
    from bench.passkey_login import passkey_login_op, prime, seed_users
    from bench.smtp_sink import SinkProcess

    venv = peer_venv()
    duration = 1.5 if options.quick else options.duration
    count = 64 if options.quick else 500
    sink = SinkProcess().start()  # the new browsers' alert e-mails
    ours = ServerProcess(
        workers=options.workers,
        threads=options.threads,
        env={"AUTHSERVER_MAIL_URL": sink.url},
        engine=options.engine,
    )
    peer = PeerServer(venv, options.workers, options.threads, engine=peer_engine)
    results: dict[str, list[dict[str, Any]]] = {"authserver": [], "authserver_new": [], "fst": []}
    rows: list[list[Any]] = []
    try:
        ours.migrate()
        ours.start(wait=False)
        url = ours.env["AUTHSERVER_DATABASE_URL"]
        population = seed_users(url, count, f"http://localhost:{ours.port}", password=False)
        peer_users, peer_authenticator = peer.seed(count)
        peer.start(wait=False)
        ours.wait_healthy()
        peer.wait_healthy()
        prime(ours, lambda load: passkey_login_op(load, population, CONNECTIONS), 2 * count, 16)

        def ours_op(load: Load) -> Any:
            return passkey_login_op(load, population, CONNECTIONS)

        def new_op(load: Load) -> Any:
            return new_browser_op(load, population, CONNECTIONS)

        def peer_op(load: Load) -> Any:
            return peer_login_op(load, peer_users, peer_authenticator, CONNECTIONS)

        def drain() -> None:
            """The new browsers' alerts delivered before anything else is measured."""
            started = time.monotonic()
            while pending_mail(url) and time.monotonic() < started + 120:
                time.sleep(0.2)

        prime(peer, peer_op, count, CONNECTIONS)
        sides = {
            "authserver": (ours, ours_op, "returning passkey login"),
            "authserver_new": (ours, new_op, "new browser's passkey login (alert e-mail)"),
            "fst": (peer, peer_op, "passkey login"),
        }
        for number in range(1, rounds + 1):
            order = ["authserver", "authserver_new", "fst"]
            for side in order if number % 2 else reversed(order):
                server, make, what = sides[side]
                log(f"[{NAME}] round {number}: {side} ...")
                load = Load()
                result = load.run(
                    f"{side}_{number}",
                    server,
                    make(load),
                    connections=CONNECTIONS,
                    duration=duration,
                    max_operations=options.max_operations,
                    warmup=0.5 if options.quick else 1.0,
                    min_operations=10,
                ).as_dict()
                results[side].append(result)
                label = (
                    f"Flask-Security-Too 5.9.2 ({peer_engine})" if side == "fst" else "authserver"
                )
                rows.append(load_row(f"{label}: {what}, round {number}", result))
                if side == "authserver_new":
                    drain()
    finally:
        sink.stop()
        problems = {}
        for side, server in (("authserver", ours), ("fst", peer)):
            server.stop()
            problems[side] = server.log_problems()
            server.cleanup()
    ratios = [
        a["rate_per_s"] / b["rate_per_s"] if b["rate_per_s"] else 0.0
        for a, b in zip(results["authserver"], results["fst"], strict=True)
    ]
    ratio = statistics.median(ratios)
    p99 = statistics.median(r["p99_ms"] for r in results["authserver"])
    # Issue 13's first finding: a new browser's login was slower than the peer's login.
    new_ratios = [
        a["rate_per_s"] / b["rate_per_s"] if b["rate_per_s"] else 0.0
        for a, b in zip(results["authserver_new"], results["fst"], strict=True)
    ]
    data = {
        "config": {
            "connections": CONNECTIONS,
            "workers": options.workers,
            "threads": options.threads,
            "duration_s": duration,
            "rounds": rounds,
            "peer": PEER,
            "engine": options.engine,
            "peer_engine": peer_engine,
        },
        "results": results,
        "ratio_by_round": [round(r, 2) for r in ratios],
        "ratio": round(ratio, 2),
        "authserver_p99_ms": p99,
        "new_browser_vs_fst_by_round": [round(r, 2) for r in new_ratios],
        "new_browser_vs_fst": round(statistics.median(new_ratios), 2),
        "server_log_problems": problems,
    }
    by_round = ", ".join(f"{r:.2f}" for r in ratios)
    rows.append(
        summary_row(
            f"authserver / Flask-Security-Too, median of rounds {by_round} (goal >= {GOAL_RATIO})",
            f"{ratio:.2f}",
            "met" if ratio >= GOAL_RATIO else "NOT MET",
        )
    )
    rows.append(
        summary_row(
            f"authserver returning p99 ms, median of rounds (goal < {GOAL_P99_MS:.0f})",
            f"{p99:.1f}",
            "met" if p99 < GOAL_P99_MS else "NOT MET",
        )
    )
    new_by_round = ", ".join(f"{r:.2f}" for r in new_ratios)
    rows.append(
        summary_row(
            f"authserver new browser / Flask-Security-Too, median of rounds {new_by_round}",
            f"{data['new_browser_vs_fst']:.2f}",
            "(info)",
        )
    )
    return Report(name=NAME, data=data, rows=rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peer_fst", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--engine", choices=("granian", "gunicorn"), default="granian")
    parser.add_argument(
        "--peer-engine",
        choices=("gunicorn", "granian"),
        default="gunicorn",
        help="the peer's HTTP server (gunicorn: the one its documentation deploys it with)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    options = Options(
        quick=args.quick,
        duration=args.duration,
        workers=args.workers,
        threads=args.threads,
        engine=args.engine,
    )
    report = run(options, 1 if args.quick else args.rounds, args.peer_engine)
    report.data["machine"] = machine()
    print(table(report.rows, TABLE_HEADER))
    if not args.quick or args.out:
        out = args.out or RESULTS_DIR / f"{NAME}.json"
        write_json(out, report.data)
        log(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
