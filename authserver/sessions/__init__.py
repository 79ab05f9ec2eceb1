"""Server-side sessions and the Flask-Login glue (later: OIDC provider, forward-auth)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from authserver.sessions.login import init_app as init_login

    init_login(app)
