"""Login events, device recognition, new-device alerts and the security console."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from authserver.alerts.console import init_app as init_console
    from authserver.alerts.events import init_security_log
    from authserver.alerts.views import bp

    init_security_log(app)
    app.register_blueprint(bp)
    init_console(app)
