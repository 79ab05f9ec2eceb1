"""``python -m examples.csp_kit.devserver``: what ``make run`` starts — authserver and the
CSP kit side by side on this machine, stopped together.

1. The kit is registered once as a first-party OpenID Connect client of this authserver. Its
   id and secret are kept in ``instance/csp_kit_client.json`` (mode 0600) and reused while the
   database still knows that client, with that secret and the kit's addresses; otherwise (a
   fresh database, another CSPKIT_BASE_URL) a new client is registered and the file
   rewritten. A second ``make run`` registers nothing.
2. ``authserver serve`` and ``python -m examples.csp_kit`` start, with the same environment
   (AUTHSERVER_*); the kit gets CSPKIT_ISSUER, CSPKIT_CLIENT_ID and CSPKIT_CLIENT_SECRET.
3. Ctrl-C (or SIGTERM) stops both. If authserver stops, the kit is stopped too; if the kit
   cannot run (its port taken), authserver goes on alone, with one line saying so.

Arguments are passed on to ``authserver serve`` (``--workers 2``). CSPKIT_BASE_URL (default
``http://localhost:5001``) is where the kit answers; the espace's links to it come from the
services file (AUTHSERVER_SERVICES), which names that address.
"""

from __future__ import annotations

import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from authserver.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_KIT_URL = "http://localhost:5001"
CLIENT_FILE = "csp_kit_client.json"
CLIENT_NAME = "Kit CSP"
STOP_TIMEOUT = 25  # authserver serve finishes its requests within 20 s (GRACEFUL_TIMEOUT)


def say(message: str) -> None:
    print(f"csp_kit : {message}", file=sys.stderr, flush=True)


def kit_addresses(kit_url: str) -> dict[str, Any]:
    """The client metadata the kit needs: where authserver may send the browser back."""
    return {
        "redirect_uris": [f"{kit_url}/callback"],
        "post_logout_redirect_uris": [f"{kit_url}/"],
        "backchannel_logout_uri": f"{kit_url}/backchannel-logout",
    }


def ensure_client(settings: Settings, kit_url: str) -> dict[str, str]:
    """The kit's client id and secret: the registered ones when still valid, else new ones."""
    from authserver.db import Database
    from authserver.models import OAuthClient, utcnow
    from authserver.ops import engine_options
    from authserver.sessions.oidc.clients import create_client, hash_secret

    path = settings.instance_path / CLIENT_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    wanted = kit_addresses(kit_url)
    database = Database(settings.database_url, **engine_options(settings.database_url))
    try:
        with database.session_scope() as session:
            row = None
            if isinstance(saved, dict) and isinstance(saved.get("client_id"), str):
                row = session.scalar(
                    select(OAuthClient).where(OAuthClient.client_id == saved["client_id"])
                )
            if row is not None:
                secret = str(saved.get("client_secret") or "")
                if (
                    row.disabled_at is None
                    and row.secret_hash is not None
                    and hmac.compare_digest(row.secret_hash, hash_secret(secret))
                    and row.redirect_uris == wanted["redirect_uris"]
                    and row.post_logout_redirect_uris == wanted["post_logout_redirect_uris"]
                    and row.backchannel_logout_uri == wanted["backchannel_logout_uri"]
                ):
                    return {"client_id": row.client_id, "client_secret": secret}
                row.disabled_at = utcnow()  # ours, but for another address: retired
            created = create_client(session, name=CLIENT_NAME, first_party=True, **wanted)
            credentials = {"client_id": created.row.client_id, "client_secret": created.secret}
    finally:
        database.dispose()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({**credentials, "kit_url": kit_url}, handle)
    os.replace(temporary, path)
    say(f"kit CSP enregistré auprès d'authserver (client {credentials['client_id']})")
    return credentials  # type: ignore[return-value]


def _kit_url(env: dict[str, str]) -> str:
    value = (env.get("CSPKIT_BASE_URL") or DEFAULT_KIT_URL).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("CSPKIT_BASE_URL", f"URL http(s) attendue, reçu {value!r}")
    return value


class Stop(Exception):
    """SIGTERM received: stop both processes, as Ctrl-C does."""


def _on_term(_signum: int, _frame: FrameType | None) -> None:
    raise Stop


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> int:
    env = dict(os.environ)
    try:
        settings = load_settings(env)
        kit_url = _kit_url(env)
    except ConfigError as exc:
        say(f"configuration invalide — {exc.variable} : {exc.reason}")
        return 2
    credentials = ensure_client(settings, kit_url)
    if kit_url != DEFAULT_KIT_URL and not env.get("AUTHSERVER_SERVICES"):
        say(
            f"l'espace mène au kit sur {DEFAULT_KIT_URL} : pour {kit_url}, copiez "
            "authserver/data/portal_services.json, changez-y ses adresses et désignez la copie "
            "par AUTHSERVER_SERVICES"
        )
    kit_env = {
        **env,
        "CSPKIT_ISSUER": settings.base_url,
        "CSPKIT_BASE_URL": kit_url,
        "CSPKIT_CLIENT_ID": credentials["client_id"],
        "CSPKIT_CLIENT_SECRET": credentials["client_secret"],
    }
    signal.signal(signal.SIGTERM, _on_term)
    # Extra arguments go to `authserver serve` (e.g. --workers 2).
    serve = [sys.executable, "-m", "authserver.cli", "serve", *sys.argv[1:]]
    server = subprocess.Popen(serve, env=env)  # noqa: S603 (the caller's own arguments)
    kit: subprocess.Popen[bytes] | None = subprocess.Popen(
        [sys.executable, "-m", "examples.csp_kit"], cwd=ROOT, env=kit_env
    )
    say(f"kit CSP : {kit_url} — Ctrl-C arrête authserver et le kit")
    try:
        while server.poll() is None:
            if kit is not None and kit.poll() is not None:
                say(f"le kit CSP s'est arrêté (code {kit.returncode}) ; authserver continue")
                kit = None
            time.sleep(0.2)
    except (KeyboardInterrupt, Stop):
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: let them finish
        if kit is not None:
            _stop(kit)
        _stop(server)
    return 0 if server.returncode in (0, -signal.SIGTERM, -signal.SIGINT) else server.returncode


if __name__ == "__main__":
    sys.exit(main())
