"""``authserver client list|delete|rotate-secret`` (``create`` is in authserver/cli.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click


def register(
    client: click.Group, database_only: Callable[[], Any], fail: Callable[..., None]
) -> None:
    """Add the commands to the ``client`` group (``database_only``: settings and database of
    the configured server; ``fail``: the CLI's one-line error)."""

    def _find(session: Any, client_id: str) -> Any:
        from sqlalchemy import select

        from authserver.models import OAuthClient

        row = session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
        if row is None:
            fail(f"aucun client n'a l'identifiant « {client_id} »", 1)
        return row

    @client.command("list")
    def client_list() -> None:
        """Lister les clients (une ligne JSON chacun, sans secret)."""
        from sqlalchemy import select

        from authserver.models import OAuthClient

        _, database = database_only()
        try:
            with database.session_scope() as session:
                rows = list(session.scalars(select(OAuthClient).order_by(OAuthClient.id)))
                lines = [
                    {
                        "client_id": row.client_id,
                        "name": row.name,
                        "public": row.public,
                        "first_party": row.first_party,
                        "redirect_uris": row.redirect_uris,
                        "created_at": row.created_at.isoformat(),
                        "disabled": row.disabled_at is not None,
                    }
                    for row in rows
                ]
        finally:
            database.dispose()
        for line in lines:
            click.echo(json.dumps(line, ensure_ascii=False))

    @client.command("delete")
    @click.argument("client_id")
    @click.option("--yes", is_flag=True, help="Ne pas demander de confirmation.")
    def client_delete(client_id: str, yes: bool) -> None:
        """Supprimer un client et tout ce qui lui a été délivré (jetons, codes, consentements)."""
        from authserver.sessions.oidc.clients import delete_client

        if not yes:
            click.confirm(f"Supprimer le client « {client_id} » et ses jetons ?", abort=True)
        _, database = database_only()
        try:
            with database.session_scope() as session:
                removed = delete_client(session, _find(session, client_id))
        finally:
            database.dispose()
        click.echo(json.dumps({"client_id": client_id, "deleted": True, **removed}))

    @client.command("rotate-secret")
    @click.argument("client_id")
    def client_rotate_secret(client_id: str) -> None:
        """Nouveau secret d'un client confidentiel (affiché une seule fois ; l'ancien cesse
        de fonctionner)."""
        from authserver.sessions.oidc.clients import InvalidClientMetadata, rotate_secret

        _, database = database_only()
        try:
            with database.session_scope() as session:
                try:
                    secret = rotate_secret(_find(session, client_id))
                except InvalidClientMetadata as exc:
                    fail(str(exc), 1)
        finally:
            database.dispose()
        click.echo(json.dumps({"client_id": client_id, "client_secret": secret}))
