"""``authserver secret rotate``: a new AUTHSERVER_SECRET_KEY without fallout (issue 15).

The secret signs device cookies and Flask's session cookie and seals the OIDC private keys.
Changing it outright made every browser new (one new-device e-mail per employer) and swapped
the OIDC signing key unannounced. Now the earlier keys stay *fallbacks*: accepted to check a
cookie or open a sealed key, never used to sign. Cookies are signed again with the new key
at the next login, OIDC keys sealed again at their next use; after 400 days (a device
cookie's lifetime) the fallbacks can go.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import click

from authserver.plural import plural

KEEP_DEFAULT = 3


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically, readable by its owner only."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


@click.group("secret")
def secret_group() -> None:
    """Clé secrète du serveur (AUTHSERVER_SECRET_KEY)."""


@secret_group.command("rotate")
@click.option(
    "--keep",
    type=click.IntRange(1, 10),
    default=KEEP_DEFAULT,
    show_default=True,
    help="Anciennes clés gardées en secours.",
)
def rotate(keep: int) -> None:
    """Nouvelle clé secrète ; l'ancienne reste acceptée (cookies, clés OIDC) en secours."""
    from authserver.config import FALLBACKS_FILE, load_settings

    settings = load_settings()
    new_key = secrets.token_urlsafe(48)
    fallbacks = [settings.secret_key, *settings.secret_key_fallbacks][:keep]
    if os.environ.get("AUTHSERVER_SECRET_KEY"):
        # The key comes from the environment: only the operator can change it there.
        click.echo(json.dumps({"secret_key": new_key, "fallbacks": len(fallbacks)}))
        click.echo(
            "authserver : la clé vient de l'environnement. Sur chaque instance, définissez "
            "AUTHSERVER_SECRET_KEY avec la nouvelle clé ci-dessus et ajoutez l'ancienne en tête "
            "de AUTHSERVER_SECRET_KEY_FALLBACKS (séparées par des virgules), puis redémarrez.",
            err=True,
        )
        return
    folder = settings.instance_path
    try:
        _write_private(folder / FALLBACKS_FILE, "\n".join(fallbacks) + "\n")
        _write_private(folder / "secret_key", new_key)
    except OSError as exc:
        click.echo(f"authserver : impossible d'écrire dans {folder} ({exc.strerror})", err=True)
        sys.exit(2)
    click.echo(
        f"Nouvelle clé secrète écrite dans {folder / 'secret_key'} ; "
        f"{plural(len(fallbacks), 'ancienne clé acceptée', 'anciennes clés acceptées')} "
        f"en secours ({FALLBACKS_FILE}). "
        "Redémarrez le serveur et les processus « authserver mail deliver »."
    )
