"""``authserver security``: run the burst detector, manage the API's bearer tokens."""

from __future__ import annotations

import sys

import click

from authserver.plural import plural


def _database():  # type: ignore[no-untyped-def]
    from authserver.alerts.security_log import open_target
    from authserver.config import load_settings
    from authserver.db import Database

    settings = load_settings()
    open_target(settings.security_log)  # the alerts this command raises are logged too
    return Database(settings.database_url)


def _fail(message: str) -> None:
    click.echo(f"authserver : {message}", err=True)
    sys.exit(2)


@click.group("security")
def security() -> None:
    """Console de sécurité : détection, jetons d'API."""


@security.command("detect")
def detect_command() -> None:
    """Chercher les rafales d'échecs et de comptes depuis le dernier passage."""
    from authserver.alerts.console.detection import detect

    database = _database()
    try:
        with database.session_scope() as session:
            raised = detect(session)
            summary = [f"{alert.kind} {alert.details.get('subject')}" for alert in raised]
    finally:
        database.dispose()
    click.echo(plural(len(summary), "alerte levée", "alertes levées"))
    for line in summary:
        click.echo(f"  {line}")


@security.group("token")
def token() -> None:
    """Jetons d'accès à l'API /api/security (Authorization: Bearer)."""


@token.command("create")
@click.option("--username", required=True, help="Compte security ou admin titulaire du jeton.")
@click.option("--name", required=True, help="Nom du jeton (unique), pour le révoquer.")
def token_create(username: str, name: str) -> None:
    """Créer un jeton ; il est affiché une seule fois."""
    from sqlalchemy import select

    from authserver.accounts.validation import username_key
    from authserver.alerts.console import api_tokens
    from authserver.models import User

    database = _database()
    try:
        with database.session_scope() as session:
            user = session.scalar(select(User).where(User.username_key == username_key(username)))
            if user is None:
                _fail("aucun compte ne porte cet identifiant")
            try:
                value = api_tokens.create(session, user=user, name=name)
            except api_tokens.TokenError as exc:
                _fail(str(exc))
    finally:
        database.dispose()
    click.echo(value)


@token.command("revoke")
@click.option("--name", required=True)
def token_revoke(name: str) -> None:
    """Révoquer un jeton par son nom."""
    from authserver.alerts.console import api_tokens

    database = _database()
    try:
        with database.session_scope() as session:
            if not api_tokens.revoke(session, name):
                _fail("aucun jeton actif ne porte ce nom")
    finally:
        database.dispose()
    click.echo("Jeton révoqué.")
