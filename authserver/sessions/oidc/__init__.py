"""OpenID Connect provider (Authlib): authorization code + PKCE, ES256 id_tokens with keys in
the database, refresh rotation, revocation, introspection, RP-initiated and back-channel logout.

Layers: ``claims`` and ``policy`` are protocol logic (no Flask, no I/O); ``keys``, ``clients``
and ``storage`` reach the database through small functions; ``server`` binds Authlib to them;
``authorize`` and ``views`` are the HTTP endpoints; ``backchannel`` delivers logout tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

if TYPE_CHECKING:
    from authserver.sessions.oidc.backchannel import BackchannelWorker

WORKER_KEY = "authserver.oidc.backchannel"


def init_app(app: Flask) -> None:
    """Endpoints, the Authlib server and the back-channel sender; no database access here.

    A worker's boot must not wait on a hung database, and a server whose database is down
    must still start (to answer 503 on /readyz): logouts left pending by a previous run are
    looked for by the sender's thread, started at the process's first request.
    """
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
        key_fallbacks=settings.secret_key_fallbacks,
        retry_base=float(app.config.get("OIDC_BACKCHANNEL_RETRY_BASE", 2.0)),
    )
    app.extensions[WORKER_KEY] = worker
    if app.config.get("MAIL_WORKER_DISABLED"):  # one-shot CLI commands send nothing
        return
    install_wakeup(database, worker)
    first_request = [True]

    @app.before_request
    def _start_backchannel() -> None:
        if first_request[0]:
            first_request[0] = False
            worker.kick()  # a thread: the request does not wait for the database


def backchannel_worker_of(app: Flask) -> BackchannelWorker:
    return app.extensions[WORKER_KEY]
