"""authserver: passwordless authentication for the employer portal.

``create_app`` builds the application: settings from the environment (validated
once), then each package's ``init_app``. Nothing else happens here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from authserver.config import Settings, asset_dir, load_settings


def create_app(
    env: Mapping[str, str] | None = None,
    *,
    settings: Settings | None = None,
    test_config: Mapping[str, Any] | None = None,
) -> Flask:
    """Build the app from ``settings`` (or the environment ``env``); raise ConfigError if bad."""
    if settings is None:
        settings = load_settings(env)

    app = Flask(
        __name__,
        template_folder=str(asset_dir("templates")),
        static_folder=str(asset_dir("static")),
        instance_path=str(settings.instance_path),
    )
    from authserver.formdata import Request
    from authserver.url_rules import LazyBuilderRule

    app.request_class = Request  # form bodies: named fields only
    app.url_rule_class = LazyBuilderRule
    app.config.update(
        SECRET_KEY=settings.secret_key,
        # Flask's signed session cookie accepts the earlier keys too (issue 15).
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),
        AUTHSERVER=settings,
        # Under https the __Host- prefix: a sibling subdomain cannot plant its own copy
        # (cookie tossing onto the CSRF secret, issue 11); the browser requires Path=/.
        SESSION_COOKIE_NAME=("__Host-" if settings.secure_cookies else "") + "authserver_flask",
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=settings.session_absolute,
        WTF_CSRF_SSL_STRICT=False,
        MAX_CONTENT_LENGTH=256 * 1024,
        JSON_AS_ASCII=False,
    )
    if test_config:
        app.config.update(test_config)

    from authserver import db, errors, metrics, openapi, ops, web
    from authserver.accounts import init_app as init_accounts
    from authserver.alerts import init_app as init_alerts
    from authserver.establishments import init_app as init_establishments
    from authserver.mail import init_app as init_mail
    from authserver.sessions import init_app as init_sessions
    from authserver.throttle import init_app as init_throttle
    from authserver.webauthn import init_app as init_webauthn

    options = ops.engine_options(settings.database_url, settings.threads)
    db.init_app(app, db.Database(settings.database_url, **options))
    web.init_app(app)
    errors.init_app(app)
    init_throttle(app)
    init_mail(app)
    init_sessions(app)
    init_alerts(app)
    init_accounts(app)
    init_webauthn(app)
    init_establishments(app)
    ops.init_app(app)
    openapi.init_app(app)
    metrics.init_app(app)
    if settings.trusted_proxies:
        # Behind N reverse proxies: the client address (throttling, login events) and scheme
        # are the ones they forward, never what a client could write in those headers itself.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    from authserver.hosts import HostCheck, HostPolicy
    from authserver.querystring import EscapedQuery

    # A query string's raw bytes escaped before anything reads it (werkzeug decodes it strictly).
    app.wsgi_app = EscapedQuery(app.wsgi_app)  # type: ignore[method-assign]
    # Outermost: a name we do not serve is refused before any fast path or proxy fix.
    app.wsgi_app = HostCheck(app.wsgi_app, HostPolicy(settings.allowed_hosts))  # type: ignore[method-assign]
    return app


def settings_of(app: Flask) -> Settings:
    return app.config["AUTHSERVER"]
