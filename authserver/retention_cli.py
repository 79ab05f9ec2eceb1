"""``authserver retention purge``: apply the retention policy now (retention.py)."""

from __future__ import annotations

import json

import click


@click.group("retention")
def retention_group() -> None:
    """Durées de conservation (RGPD)."""


@retention_group.command("purge")
def purge_command() -> None:
    """Supprimer et pseudonymiser ce qui a dépassé sa durée de conservation."""
    from authserver.cli import _database_only
    from authserver.retention import Policy, purge

    settings, database = _database_only()
    try:
        done = purge(database, Policy.of(settings), settings.secret_key)
    finally:
        database.dispose()
    click.echo(json.dumps(done))
