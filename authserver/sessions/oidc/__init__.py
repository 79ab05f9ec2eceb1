"""OpenID Connect provider (Authlib): authorization code + PKCE, ES256 id_tokens with keys in
the database, refresh rotation, revocation, introspection, RP-initiated and back-channel logout.

Layers: ``claims`` and ``policy`` are protocol logic (no Flask, no I/O); ``keys``, ``clients``
and ``storage`` reach the database through small functions; ``server`` binds Authlib to them;
``authorize`` and ``views`` are the HTTP endpoints; ``backchannel`` delivers logout tokens.
"""

from __future__ import annotations

from flask import Flask

WORKER_KEY = "authserver.oidc.backchannel"


def init_app(app: Flask) -> None:
    from authserver.db import get_database
    from authserver.sessions import store
    from authserver.sessions.oidc.authorize import bp as authorize_bp
    from authserver.sessions.oidc.backchannel import (
        BackchannelWorker,
        install_wakeup,
        queue_logouts,
    )
    from authserver.sessions.oidc.server import build_server
    from authserver.sessions.oidc.views import bp as views_bp

    settings = app.config["AUTHSERVER"]
    build_server(app)
    app.register_blueprint(authorize_bp)
    app.register_blueprint(views_bp)

    store.on_revoke(queue_logouts)
    database = get_database(app)
    worker = BackchannelWorker(
        database,
        issuer=settings.base_url,
        secret_key=settings.secret_key,
        retry_base=float(app.config.get("OIDC_BACKCHANNEL_RETRY_BASE", 2.0)),
    )
    app.extensions[WORKER_KEY] = worker
    if not app.config.get("MAIL_WORKER_DISABLED"):  # one-shot CLI commands send nothing
        install_wakeup(database, worker)
        if worker.has_pending():
            worker.kick()


def backchannel_worker_of(app: Flask):  # type: ignore[no-untyped-def]
    return app.extensions[WORKER_KEY]
