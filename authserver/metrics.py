"""Prometheus metrics (the maintained ``prometheus_client``), one registry per process.

Under gunicorn every worker is a process: ``authserver serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` so that ``/metrics`` sums all workers. Outbox depth
and age are read from the database at scrape time (they are shared state, not
per-process counters).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import datetime, timezone

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

LOGINS = Counter("authserver_logins_total", "Login attempts", ["method", "outcome"])
PASSKEY_CEREMONIES = Counter(
    "authserver_passkey_ceremonies_total", "Passkey ceremonies", ["ceremony", "outcome"]
)
THROTTLED = Counter("authserver_throttled_total", "Requests refused by throttling", ["kind"])
ALERTS = Counter("authserver_alerts_total", "Security alerts raised", ["kind"])
MAIL_SENT = Counter("authserver_mail_sent_total", "E-mails delivered")
MAIL_FAILURES = Counter("authserver_mail_delivery_failures_total", "Failed delivery attempts")
REQUEST_LATENCY = Histogram(
    "authserver_request_duration_seconds",
    "Request latency per endpoint",
    ["endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


class OutboxCollector:
    """Outbox depth and oldest pending age, read from the shared database at scrape time."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self):  # type: ignore[no-untyped-def]
        from authserver.db import get_database
        from authserver.models import OutboxMail, utcnow

        depth = GaugeMetricFamily("authserver_outbox_pending", "E-mails waiting for delivery")
        age = GaugeMetricFamily(
            "authserver_outbox_oldest_pending_seconds", "Age of the oldest pending e-mail"
        )
        try:
            with get_database(self.app).session_scope() as session:
                count, oldest = session.execute(
                    select(func.count(), func.min(OutboxMail.created_at)).where(
                        OutboxMail.status == "pending"
                    )
                ).one()
        except Exception:
            return
        depth.add_metric([], count or 0)
        if oldest is not None:
            oldest = oldest.replace(tzinfo=utcnow().tzinfo) if oldest.tzinfo is None else oldest
            age.add_metric([], max((utcnow() - oldest).total_seconds(), 0.0))
        else:
            age.add_metric([], 0.0)
        yield depth
        yield age


def _registry(app: Flask) -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        for collector in list(REGISTRY._collector_to_names):
            registry.register(collector)
    registry.register(OutboxCollector(app))
    return registry


def _access_logger() -> logging.Logger | None:
    """JSON access lines when AUTHSERVER_ACCESS_LOG is ``stdout`` or a file path."""
    target = os.environ.get("AUTHSERVER_ACCESS_LOG", "off")
    if target == "off":
        return None
    logger = logging.getLogger("authserver.access")
    if not logger.handlers:
        handler: logging.Handler = (
            logging.StreamHandler(sys.stdout)
            if target == "stdout"
            else logging.FileHandler(target, encoding="utf-8")
        )
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def init_app(app: Flask) -> None:
    registry = _registry(app)

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    access_log = _access_logger()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("request_started")
        if started is None:
            return response
        elapsed = time.perf_counter() - started
        REQUEST_LATENCY.labels(request.endpoint or "unmatched", request.method).observe(elapsed)
        if access_log is not None:
            # The route pattern, never the path: paths carry link tokens (/activate/<token>).
            rule = request.url_rule.rule if request.url_rule else "unmatched"
            access_log.info(
                json.dumps(
                    {
                        "time": datetime.now(timezone.utc).isoformat(),
                        "method": request.method,
                        "route": rule,
                        "status": response.status_code,
                        "duration_ms": round(elapsed * 1000, 2),
                        "ip": request.remote_addr,
                        "user_agent": (request.headers.get("User-Agent") or "")[:256],
                    }
                )
            )
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
