"""Passkeys (WebAuthn Level 3) with py_webauthn: ceremonies, JSON API, pages."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from authserver import db
    from authserver.webauthn import recovery_codes_views
    from authserver.webauthn.challenges import DatabaseChallengeStore, RedisChallengeStore
    from authserver.webauthn.pages import bp as pages_bp
    from authserver.webauthn.recovery_views import bp as recovery_bp

    del recovery_codes_views  # imported for its routes
    from authserver.webauthn.related_origins import bp as related_bp
    from authserver.webauthn.service import STORE_KEY
    from authserver.webauthn.views import bp as api_bp

    redis_url = app.config["AUTHSERVER"].redis_url
    database = db.get_database(app)
    sqlite_file = database.engine.url.database if database.is_sqlite else None
    if redis_url:
        from authserver.ops import redis_client

        store = RedisChallengeStore(redis_client(redis_url))
    elif sqlite_file and sqlite_file != ":memory:":
        # Not in the main file: ceremonies would queue on its single write lock twice per
        # passkey login (see sidecar.py).
        from authserver.webauthn.sidecar import SidecarChallengeStore, sidecar_path

        store = SidecarChallengeStore(sidecar_path(sqlite_file))
    else:
        store = DatabaseChallengeStore(db.session)
    app.extensions[STORE_KEY] = store
    app.register_blueprint(api_bp)
    app.register_blueprint(pages_bp)
    app.register_blueprint(related_bp)
    app.register_blueprint(recovery_bp)

    from authserver.webauthn import fastpath

    fastpath.install(app)
