"""Accounts: sign-up, activation, password login and reset (views, services, forms)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from authserver.accounts import views_account, views_login, views_password, views_signup
    from authserver.accounts.blueprint import bp
    from authserver.accounts.passwords import PasswordHashing
    from authserver.accounts.service import HASHING_KEY

    settings = app.config["AUTHSERVER"]
    app.extensions[HASHING_KEY] = PasswordHashing(
        memory_kib=settings.argon2_memory_kib,
        time_cost=settings.argon2_time_cost,
        parallelism=settings.argon2_parallelism,
    )
    del views_account, views_login, views_password, views_signup  # imported for their routes
    app.register_blueprint(bp)
