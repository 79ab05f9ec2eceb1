"""Passkeys (WebAuthn Level 3) with py_webauthn: ceremonies, JSON API, pages."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from authserver import db
    from authserver.webauthn.challenges import DatabaseChallengeStore, RedisChallengeStore
    from authserver.webauthn.pages import bp as pages_bp
    from authserver.webauthn.service import STORE_KEY
    from authserver.webauthn.views import bp as api_bp

    redis_url = app.config["AUTHSERVER"].redis_url
    if redis_url:
        from authserver.ops import redis_client

        store = RedisChallengeStore(redis_client(redis_url))
    else:
        store = DatabaseChallengeStore(db.session)
    app.extensions[STORE_KEY] = store
    app.register_blueprint(api_bp)
    app.register_blueprint(pages_bp)
