"""Operations: liveness, readiness, and the timeouts that keep both honest.

A database or Redis that stops answering must turn into a quick, clean 503, not into
request threads blocked for minutes: connections to PostgreSQL are opened with a connect
timeout and TCP keepalives, a request waits at most ``pool_timeout`` for a pooled
connection, and Redis clients have socket timeouts. The answers themselves
come from ``authserver/errors.py`` (these failures map to 503).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from sqlalchemy import text

from authserver import db, retention
from authserver.metrics import age_seconds, outbox_state
from authserver.models import utcnow
from authserver.throttle import KEPT_CONNECTIONS, throttle

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)

# Seconds. Connecting is quick when the server is there; a request that cannot get a
# pooled connection within POOL_TIMEOUT is answered 503 instead of queueing behind a hang.
DATABASE_CONNECT_TIMEOUT = 3
POOL_TIMEOUT = 5
REDIS_TIMEOUT = 2.0


# Threads of a worker besides its request threads that use the database: mail delivery, the
# burst detector, back-channel logouts.
BACKGROUND_THREADS = 3
POOL_SIZE = 5  # connections kept open when idle; the rest of the capacity is overflow


def pool_capacity(threads: int) -> int:
    """Connections one worker may hold at once with ``threads`` request threads: each
    thread's ORM session, the driver connections the hot paths keep aside (forward-auth and
    the passkey login fast path each keep as many as ran at once: up to one per thread; the
    throttle's counters ``KEPT_CONNECTIONS``) and the background threads.

    Kept connections stay checked out of the pool while idle: with SQLAlchemy's default of
    15, four threads (3 × 4 + 2 + 3 = 17) could leave a request waiting ``pool_timeout`` for
    a connection and answered 503 after a burst of mixed traffic.
    """
    return 3 * threads + KEPT_CONNECTIONS + BACKGROUND_THREADS


def engine_options(database_url: str, threads: int = 4) -> dict[str, Any]:
    """SQLAlchemy engine options for ``db.Database``: a pool as large as ``threads`` request
    threads can use (``pool_capacity``), bounded waits on PostgreSQL.

    SQLite (a local file) needs no more: its waits are its 30 s busy timeout, set in db.py.
    """
    pool = {"pool_size": POOL_SIZE, "max_overflow": pool_capacity(threads) - POOL_SIZE}
    if not database_url.startswith("postgresql"):
        return pool
    return {
        **pool,
        "pool_timeout": POOL_TIMEOUT,
        "connect_args": {
            "connect_timeout": DATABASE_CONNECT_TIMEOUT,
            # A peer that vanished (host down, network cut) is noticed in ~1 minute at worst
            # instead of the kernel's two hours; unacknowledged writes give up after 30 s.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": 30_000,
        },
    }


def redis_options() -> dict[str, Any]:
    """Keyword arguments for ``redis.Redis.from_url``: a hung Redis costs 2 s, not 5 or more.

    redis-py 8 waits 5 s per call by default (older versions: for ever). Our commands take
    well under a millisecond, so 2 s only ever fires on a server that stopped answering.
    redis-py's own retry policy (reconnect on a dropped connection) is kept.
    """
    return {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT}


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, **redis_options())


@bp.get("/healthz")
def healthz() -> Response:
    """Process alive; touches nothing, so benchmarks use it as the bare endpoint."""
    return Response("ok\n", mimetype="text/plain")


def _outbox(session: Any) -> dict[str, Any]:
    pending, failed, oldest = outbox_state(session)
    return {
        "pending": pending,
        "failed": failed,
        "oldest_pending_seconds": round(age_seconds(oldest, utcnow()), 1),
    }


def _redis_checks() -> dict[str, bool]:
    """Every Redis client the app uses: the throttle's storage and the challenge store's."""
    from authserver.webauthn.service import STORE_KEY

    results: dict[str, bool] = {}
    try:
        results["throttle"] = bool(throttle().storage.check())
    except Exception:
        results["throttle"] = False
    client = getattr(current_app.extensions.get(STORE_KEY), "client", None)
    if client is not None:
        try:
            results["challenges"] = bool(client.ping())
        except Exception:
            results["challenges"] = False
    return results


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Database, outbox and Redis reachable: 200, else 503 naming what failed.

    Failed e-mails (refused for good) are reported but do not make the instance unready:
    taking it out of the load balancer would not deliver them.
    """
    checks: dict[str, str] = {}
    body: dict[str, Any] = {}
    status = 200
    session = db.session()
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
        outbox = _outbox(session)
        body["outbox"] = outbox
        body["retention"] = {
            table: moment.isoformat() if moment else None
            for table, moment in retention.oldest(session).items()
        }
        checks["outbox"] = f"ok ({outbox['pending']} en attente, {outbox['failed']} en échec)"
    except Exception as exc:
        session.rollback()
        log.warning("readyz: database unavailable (%s)", type(exc).__name__)
        checks["database"] = "indisponible"
        checks["outbox"] = "indisponible"
        status = 503
    if current_app.config["AUTHSERVER"].redis_url:
        results = _redis_checks()
        healthy = all(results.values())
        checks["redis"] = "ok" if healthy else "indisponible"
        if not healthy:
            log.warning("readyz: redis unavailable (%s)", [k for k, v in results.items() if not v])
            status = 503
    body = {"status": "ok" if status == 200 else "unavailable", "checks": checks, **body}
    return jsonify(body), status


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
