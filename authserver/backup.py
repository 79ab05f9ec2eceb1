"""``authserver db backup DEST``: a consistent copy of the embedded SQLite database, taken
while the server runs (SQLite's online backup API: readers and writers go on meanwhile).

What a restore needs, and what it may lose (docs/operations.md): the database (every
account, passkey, session, event, OIDC key) and the secret key with its fallbacks (it seals
the OIDC private keys and signs device cookies). The passkey ceremonies' file beside the
database holds only challenges of the last minutes: it is not copied. On PostgreSQL use
``pg_dump`` (the command says so).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


class BackupError(Exception):
    """The backup cannot be made; the message is the French line to show."""


def backup_sqlite(source: Path, destination: Path) -> int:
    """Copy ``source`` to ``destination`` (which must not exist); return its size in bytes."""
    if destination.exists():
        raise BackupError(f"{destination} existe déjà : choisissez un autre fichier")
    if not source.exists():
        raise BackupError(f"base SQLite introuvable : {source}")
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        writer = sqlite3.connect(destination)
        try:
            # Pages in steps, so that the server's writers are not held for the whole copy.
            reader.backup(writer, pages=1024, sleep=0.005)
            (check,) = writer.execute("PRAGMA integrity_check").fetchone()
        finally:
            writer.close()
    finally:
        reader.close()
    if check != "ok":
        destination.unlink(missing_ok=True)
        raise BackupError(f"copie incohérente ({check}) : recommencez")
    return destination.stat().st_size
