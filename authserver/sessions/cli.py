"""``authserver session``: end sessions from the command line (ASVS 7.4.5).

An operator ends every session of one account (a stolen laptop reported by phone, a
compromised account) or of every account at once (a suspected leak of session data, a
change of security policy). The services those sessions logged in to are told through
OIDC back-channel logout, as for a logout: the revocation goes through the store's hooks.
"""

from __future__ import annotations

import sys

import click

from authserver.plural import plural


def _fail(message: str) -> None:
    click.echo(f"authserver : {message}", err=True)
    sys.exit(2)


@click.group("session")
def session_group() -> None:
    """Sessions des utilisateurs."""


@session_group.command("revoke")
@click.option("--username", default=None, help="Fermer toutes les sessions de ce compte.")
@click.option("--all-users", is_flag=True, help="Fermer les sessions de tous les comptes.")
def revoke(username: str | None, all_users: bool) -> None:
    """Fermer des sessions : celles d'un compte, ou de tous les comptes."""
    if (username is None) == (not all_users):
        _fail("indiquez soit --username, soit --all-users")
    from sqlalchemy import select

    from authserver import create_app
    from authserver.accounts.validation import lookup_username_key
    from authserver.config import ConfigError
    from authserver.db import get_database
    from authserver.models import AuthSession, User
    from authserver.sessions import store

    try:
        # The whole app: the revocation hooks (back-channel logout) are registered by it.
        app = create_app(test_config={"MAIL_WORKER_DISABLED": True})
    except ConfigError as exc:
        _fail(str(exc))
    database = get_database(app)
    try:
        with app.app_context(), database.session_scope() as session:
            if username is not None:
                key = lookup_username_key(username)
                user_id = (
                    session.scalar(select(User.id).where(User.username_key == key)) if key else None
                )
                if user_id is None:
                    _fail(f"aucun compte « {username} »")
                user_ids = [user_id]
            else:
                user_ids = list(
                    session.scalars(
                        select(AuthSession.user_id)
                        .where(AuthSession.revoked_at.is_(None))
                        .distinct()
                    )
                )
            total = sum(store.revoke_all(session, uid, "operator") for uid in user_ids)
    finally:
        database.dispose()
    click.echo(plural(total, "session fermée", "sessions fermées"))
