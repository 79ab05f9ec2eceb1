"""Server-side sessions, the Flask-Login glue, « Mes sessions », forward-auth and the
OpenID Connect provider."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from authserver.sessions.login import init_app as init_login

    init_login(app)

    # Issue 6: delegation to the portal's other services.
    from authserver.sessions import forward_auth, staff_home, views
    from authserver.sessions.oidc import init_app as init_oidc

    forward_auth.install(app)
    app.register_blueprint(views.bp)
    staff_home.init_app(app)
    init_oidc(app)
