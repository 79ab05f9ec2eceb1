"""The security team's console: alert triage pages, CSV exports, JSON API, burst detector.

Layers: ``filters`` and ``cursor`` check input (no I/O); ``queries``,
``actions``, ``api_tokens`` and ``detection`` reach the database through a
given session; ``views``, ``api`` and ``access`` are the Flask glue; ``worker``
runs the detector in a daemon thread; ``cli`` is ``authserver security``.
"""

from __future__ import annotations

from flask import Flask

EXTENSION_KEY = "authserver.detector"


def init_app(app: Flask) -> None:
    from authserver.alerts.console import api, views
    from authserver.alerts.console.worker import DetectorWorker, configured_interval
    from authserver.db import get_database

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    interval = configured_interval(app.config)
    if interval > 0 and not app.config.get("DETECTOR_DISABLED", app.testing):
        worker = DetectorWorker(get_database(app), interval, app)
        app.extensions[EXTENSION_KEY] = worker
        worker.start()
