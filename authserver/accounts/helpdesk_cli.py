"""``authserver user list|show|unlock|lock|delete|remove-passkeys|reset-password|
resend-activation|revoke-sessions``: the helpdesk from the server's command line.

Every action goes through :func:`authserver.accounts.helpdesk.perform`, as the console's do:
same rules, same audit row (the actor is ``cli:<system user>``), same e-mail. A ``--reason``
is required, as the console's « Motif ».
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"authserver : {message}", err=True)
    sys.exit(code)


@contextmanager
def _app() -> Iterator[Any]:
    """The configured app, in a request context on the base URL (e-mails carry links)."""
    from authserver import create_app
    from authserver.config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(str(exc))
    app = create_app(settings=settings, test_config={"MAIL_WORKER_DISABLED": True})
    with app.test_request_context("/"):
        yield app


def _account(username: str) -> Any:
    from authserver.accounts.service import find_by_username

    account = find_by_username(username)
    if account is None:
        _fail(f"aucun compte n'a l'identifiant « {username} »", code=1)
    return account


def _state(account: Any) -> str:
    if account.locked_at is not None:
        return "verrouillé"
    if account.activated_at is None:
        return "non activé"
    return "actif"


def _actor() -> Any:
    from authserver.accounts.helpdesk import OPERATOR, Actor
    from authserver.cli import _operator

    return Actor(id=None, label=_operator(), role=OPERATOR)


def _perform(username: str, action: str, reason: str, passkey_id: int | None = None) -> None:
    from authserver import db
    from authserver.accounts import helpdesk

    with _app():
        session = db.session()
        account = _account(username)
        try:
            outcome = helpdesk.perform(
                session,
                target=account,
                actor=_actor(),
                action=action,
                reason=reason,
                passkey_id=passkey_id,
            )
        except helpdesk.Refused as exc:
            session.rollback()
            _fail(str(exc), code=1)
        session.commit()
        detail = outcome.record.detail
        click.echo(outcome.message + (f" ({detail})" if detail else ""))


REASON = click.option("--reason", required=True, help="Motif, conservé dans le journal d'audit.")


# The actions that take nothing but the account and the reason: command, action, help.
SIMPLE_ACTIONS = (
    ("unlock", "unlock", "Déverrouiller un compte."),
    ("lock", "lock", "Verrouiller un compte (ses sessions sont fermées)."),
    ("revoke-sessions", "revoke_sessions", "Fermer toutes les sessions d'un compte."),
    (
        "reset-password",
        "force_password_reset",
        "Imposer un nouveau mot de passe (lien de réinitialisation envoyé).",
    ),
    (
        "resend-activation",
        "resend_activation",
        "Renvoyer l'e-mail d'activation d'un compte non activé.",
    ),
    (
        "send-recovery-link",
        "send_recovery_link",
        "Envoyer un lien pour créer une nouvelle clé d'accès (compte certifié).",
    ),
)


def _simple_command(action: str, help_text: str) -> click.Command:
    @click.argument("username")
    @REASON
    def command(username: str, reason: str) -> None:
        _perform(username, action, reason)

    return click.command(help=help_text)(command)


def register(user: click.Group) -> None:
    """Add the helpdesk commands to the ``user`` group."""
    for name, action, help_text in SIMPLE_ACTIONS:
        user.add_command(_simple_command(action, help_text), name)

    @user.command("list")
    @click.option("--role", type=click.Choice(["employer", "security", "counselor", "admin"]))
    @click.option("--locked", is_flag=True, help="Seulement les comptes verrouillés.")
    @click.option("--search", default=None, help="Identifiant, adresse e-mail ou SIRET.")
    @click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Une ligne JSON par compte.")
    def user_list(
        role: str | None, locked: bool, search: str | None, limit: int, as_json: bool
    ) -> None:
        """Lister les comptes."""
        from authserver import db
        from authserver.accounts.account_search import search as find

        with _app():
            accounts = find(db.session(), search, role=role, locked=locked, limit=limit)
            for account in accounts:
                if as_json:
                    click.echo(json.dumps(_summary(account), ensure_ascii=False))
                else:
                    click.echo(
                        "\t".join([account.username, account.role, _state(account), account.email])
                    )

    @user.command("show")
    @click.argument("username")
    def user_show(username: str) -> None:
        """Afficher un compte : état, clés d'accès, sessions, journal de l'assistance (JSON)."""
        from authserver import db
        from authserver.accounts import helpdesk
        from authserver.webauthn import credentials

        with _app():
            session = db.session()
            account = _account(username)
            shown = _summary(account)
            shown["passkeys"] = [
                {
                    "id": row.id,
                    "name": row.name,
                    "created_at": row.created_at.isoformat(),
                    "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
                }
                for row in credentials.for_user(session, account.id)
            ]
            shown["helpdesk"] = [
                {
                    "at": row.created_at.isoformat(),
                    "actor": row.actor,
                    "action": row.action,
                    "detail": row.detail,
                    "reason": row.reason,
                }
                for row in helpdesk.history(session, account.id)
            ]
            click.echo(json.dumps(shown, ensure_ascii=False, indent=2))

    @user.command("delete")
    @click.argument("username")
    @REASON
    @click.option("--yes", is_flag=True, help="Ne pas demander de confirmation.")
    def user_delete(username: str, reason: str, yes: bool) -> None:
        """Supprimer un compte (définitif)."""
        if not yes:
            click.confirm(f"Supprimer définitivement le compte « {username} » ?", abort=True)
        _perform(username, "delete", reason)

    @user.command("remove-passkeys")
    @click.argument("username")
    @click.option("--passkey", "passkey_id", type=int, default=None, help="Seulement celle-ci.")
    @REASON
    def user_remove_passkeys(username: str, passkey_id: int | None, reason: str) -> None:
        """Supprimer une clé d'accès d'un compte, ou toutes."""
        action = "remove_passkeys" if passkey_id is None else "remove_passkey"
        _perform(username, action, reason, passkey_id)


def _summary(account: Any) -> dict[str, Any]:
    return {
        "username": account.username,
        "sub": account.public_id,
        "email": account.email,
        "role": account.role,
        "state": _state(account),
        "siret": account.siret,
        "certified": account.certified_at is not None,
        "has_password": account.password_hash is not None,
        "created_at": account.created_at.isoformat(),
    }
