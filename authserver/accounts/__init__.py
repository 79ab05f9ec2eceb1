"""Accounts: sign-up, activation, password login and reset (views, services, forms)."""

from __future__ import annotations

from functools import partial

from flask import Flask


def init_app(app: Flask) -> None:
    from authserver.accounts import (
        breached,
        mail_jobs,
        views_account,
        views_helpdesk,
        views_login,
        views_password,
        views_password_change,
        views_password_removal,
        views_signup,
    )
    from authserver.accounts.blueprint import bp
    from authserver.accounts.passwords import PasswordHashing
    from authserver.accounts.service import HASHING_KEY
    from authserver.mail import worker_of

    settings = app.config["AUTHSERVER"]
    app.extensions[HASHING_KEY] = PasswordHashing(
        memory_kib=settings.argon2_memory_kib,
        time_cost=settings.argon2_time_cost,
        parallelism=settings.argon2_parallelism,
    )
    app.extensions[breached.EXTENSION_KEY] = breached.build(
        settings.breached_passwords, settings.breached_passwords_url
    )
    del (
        views_account,
        views_login,
        views_password,
        views_password_change,
        views_password_removal,
        views_signup,
    )  # imported for their routes
    app.register_blueprint(bp)
    app.register_blueprint(views_helpdesk.bp)
    # Reset and activation-link requests are resolved by the mail worker, off the request.
    worker_of(app).add_producer(partial(mail_jobs.run_pending, app))
