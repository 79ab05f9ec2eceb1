"""Prometheus metrics (the maintained ``prometheus_client``) and the JSON access log.

Under gunicorn every worker is a process: ``authserver serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` so that ``/metrics`` sums all workers. Outbox depth, age and
failed rows are read from the database at scrape time (they are shared state, not
per-process counters). ``authserver mail deliver --metrics-port`` serves the same registry
for the separate delivery process.

Throttling is counted here, in one place: every 429 the application answers counts once in
``authserver_throttled_total`` (``kind``: the endpoint's name), so a new throttle needs no
metrics code. Code that throttles without answering 429 (a silent limit) calls
``THROTTLED.labels(kind).inc()`` itself; that request is then not counted a second time.

Access log (accesslog.py): one JSON line per request, written here for Flask and by the
fast paths (forward-auth, passkey login) through :class:`FastObserver`.
The liveness and readiness probes (``/healthz``, ``/readyz``) are not logged: a load
balancer asks them every few seconds and they would drown the real traffic; their latency
is still in the histogram, and a failing ``/readyz`` logs its cause as a warning.
"""

from __future__ import annotations

import glob
import hmac
import os
import time
from datetime import datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import case, func, select

from authserver.accesslog import access_log
from authserver.errors import error_response
from authserver.web import is_local_request

LOGINS = Counter("authserver_logins_total", "Login attempts", ["method", "outcome"])
PASSKEY_CEREMONIES = Counter(
    "authserver_passkey_ceremonies_total", "Passkey ceremonies", ["ceremony", "outcome"]
)
_THROTTLED = Counter("authserver_throttled_total", "Requests refused by throttling", ["kind"])
ALERTS = Counter("authserver_alerts_total", "Security alerts raised", ["kind"])
SECURITY_LOG_DROPPED = Counter(
    "authserver_security_log_dropped_total",
    "Security event lines the syslog receiver did not take (unreachable, refused)",
)
MAIL_SENT = Counter("authserver_mail_sent_total", "E-mails delivered")
MAIL_FAILURES = Counter("authserver_mail_delivery_failures_total", "Failed delivery attempts")
REQUEST_LATENCY = Histogram(
    "authserver_request_duration_seconds",
    "Request latency per endpoint",
    ["endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

PROBES = frozenset({"ops.healthz", "ops.readyz"})
_COUNTED = "_authserver_throttled"


class _Throttled:
    """``authserver_throttled_total``; an explicit count marks the request as counted."""

    def labels(self, kind: str) -> Any:
        if has_request_context():
            setattr(g, _COUNTED, True)
        return _THROTTLED.labels(kind)


THROTTLED = _Throttled()


class OutboxCollector:
    """Outbox depth, oldest pending age and failed rows, read from the database at scrape time."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self):  # type: ignore[no-untyped-def]
        from authserver.db import get_database
        from authserver.models import utcnow

        try:
            with get_database(self.app).session_scope() as session:
                pending, failed, oldest = outbox_state(session)
        except Exception:
            return
        depth = GaugeMetricFamily("authserver_outbox_pending", "E-mails waiting for delivery")
        depth.add_metric([], pending or 0)
        given_up = GaugeMetricFamily(
            "authserver_outbox_failed",
            "E-mails refused for good (authserver mail requeue sends them again)",
        )
        given_up.add_metric([], failed or 0)
        age = GaugeMetricFamily(
            "authserver_outbox_oldest_pending_seconds", "Age of the oldest pending e-mail"
        )
        age.add_metric([], age_seconds(oldest, utcnow()))
        yield depth
        yield given_up
        yield age


class RetentionCollector:
    """Age of the oldest row kept in each purged table: a purge that stopped shows."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self):  # type: ignore[no-untyped-def]
        from authserver.db import get_database
        from authserver.models import utcnow
        from authserver.retention import oldest

        try:
            with get_database(self.app).session_scope() as session:
                moments = oldest(session)
        except Exception:
            return
        gauge = GaugeMetricFamily(
            "authserver_retention_oldest_row_seconds",
            "Age of the oldest row kept, per purged table (0 when empty)",
            labels=["table"],
        )
        now = utcnow()
        for table, moment in moments.items():
            gauge.add_metric([table], age_seconds(moment, now))
        yield gauge


def outbox_state(session: Any) -> tuple[int, int, Any]:
    """Pending and failed mails, and the oldest pending one's time (one scan; /metrics and
    /readyz)."""
    from authserver.mail.rendering import WAITING
    from authserver.models import OutboxMail

    # A mail queued as its facts (mail/rendering.py) is waiting too.
    waiting = OutboxMail.status.in_(WAITING)
    pending, failed, oldest = session.execute(
        select(
            func.count(case((waiting, 1))),
            func.count(case((OutboxMail.status == "failed", 1))),
            func.min(case((waiting, OutboxMail.created_at))),
        ).where(OutboxMail.status.in_((*WAITING, "failed")))
    ).one()
    return pending or 0, failed or 0, oldest


def age_seconds(oldest: Any, now: datetime) -> float:
    if oldest is None:
        return 0.0
    if isinstance(oldest, str):  # SQLite: min() over a CASE hands back the column's text
        oldest = datetime.fromisoformat(oldest)
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=now.tzinfo)
    return max((now - oldest).total_seconds(), 0.0)


class SettledFiles:
    """prometheus_client's multiprocess collector, leaving out the files being created.

    A process's first value of a kind (its first counter, its first histogram) creates its
    file empty and only then sizes it (``MmapedDict``). A scrape that read it in between
    found no 4-byte header and failed whole, a 500 (``struct.error``): the likely cause of
    a 500 seen once in a full test run, under ``authserver serve``. Such a file holds no
    value yet, so the scrape is the one of a moment earlier without it; files only grow
    afterwards.
    """

    HEADER = 8  # the used-bytes count and its padding, written when the file is sized

    def __init__(self, path: str) -> None:
        if not os.path.isdir(path):  # as prometheus_client's own
            raise ValueError("env PROMETHEUS_MULTIPROC_DIR is not set or not a directory")
        self.path = path

    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.multiprocess import MultiProcessCollector

        files = []
        for name in glob.glob(os.path.join(self.path, "*.db")):
            try:
                if os.path.getsize(name) >= self.HEADER:
                    files.append(name)
            except OSError:  # gone meanwhile (a dead process's live gauges)
                continue
        return MultiProcessCollector.merge(files, accumulate=True)


def registry_for(app: Flask) -> CollectorRegistry:
    """This process's metrics (or every worker's, in multiprocess mode) and the outbox's."""
    registry = CollectorRegistry()
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        registry.register(SettledFiles(folder))
    else:
        from prometheus_client import REGISTRY

        for collector in list(REGISTRY._collector_to_names):
            registry.register(collector)
    registry.register(OutboxCollector(app))
    registry.register(RetentionCollector(app))
    return registry


class FastObserver:
    """What the after-request hook below does for a request answered before Flask (a fast
    path): the latency metric under the view's endpoint name, and the same access line."""

    def __init__(self, endpoint: str, method: str, route: str) -> None:
        self.latency = REQUEST_LATENCY.labels(endpoint, method)
        self.route = route
        self.access_log = access_log()

    def __call__(self, environ: dict[str, Any], status: int, elapsed: float) -> None:
        self.latency.observe(elapsed)
        if self.access_log is not None:
            self.access_log.write(
                environ["REQUEST_METHOD"],
                self.route,
                status,
                elapsed,
                environ.get("REMOTE_ADDR"),
                environ.get("HTTP_USER_AGENT"),
            )


def init_app(app: Flask) -> None:
    registry = registry_for(app)

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    log = access_log()

    @app.after_request
    def _observe(response: Response) -> Response:
        if response.status_code == 429 and not g.get(_COUNTED):
            _THROTTLED.labels((request.endpoint or "unmatched").rsplit(".", 1)[-1]).inc()
        started = g.get("request_started")
        if started is None:
            return response
        elapsed = time.perf_counter() - started
        endpoint = request.endpoint or "unmatched"
        REQUEST_LATENCY.labels(endpoint, request.method).observe(elapsed)
        if log is not None and endpoint not in PROBES:
            log.write(
                request.method,
                request.url_rule.rule if request.url_rule else "unmatched",
                response.status_code,
                elapsed,
                request.remote_addr,
                request.headers.get("User-Agent"),
            )
        return response

    token = app.config["AUTHSERVER"].metrics_token

    @app.get("/metrics")
    def metrics() -> Response:
        # Traffic, failures and queue depths are reconnaissance: this machine's scraper, or
        # one holding AUTHSERVER_METRICS_TOKEN (issue 11).
        if not (is_local_request() or bearer_matches(request.headers.get("Authorization"), token)):
            response = error_response(401 if token else 404)
            if token:
                response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def bearer_matches(header: str | None, token: str | None) -> bool:
    """``Authorization: Bearer <token>`` naming ``token`` (compared in constant time)."""
    if not header or not token:
        return False
    scheme, _, value = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode("utf-8", "surrogateescape"), token.encode()
    )
