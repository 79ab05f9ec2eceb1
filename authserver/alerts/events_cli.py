"""``authserver events verify FILE``: is a security log file whole (ecs.py's hash chains)?"""

from __future__ import annotations

import sys

import click

from authserver.plural import plural


@click.group("events")
def events_group() -> None:
    """Journal des événements de sécurité."""


@events_group.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def verify_command(path: str) -> None:
    """Vérifier qu'aucune ligne du journal n'a été modifiée, supprimée ou déplacée."""
    from authserver.alerts.ecs import verify

    with open(path, encoding="utf-8", errors="replace") as lines:
        report = verify(lines)
    summary = (
        f"{plural(report.lines, 'ligne')}, {plural(len(report.chains), 'chaîne')} "
        f"({plural(len(report.chains), 'processus', 'processus')} d'écriture)"
    )
    if report.ok:
        click.echo(f"Journal intègre : {summary}.")
        return
    for number, problem in report.problems:
        click.echo(f"ligne {number} : {problem}", err=True)
    click.echo(f"Journal altéré : {summary}, {plural(len(report.problems), 'anomalie')}.", err=True)
    sys.exit(1)
