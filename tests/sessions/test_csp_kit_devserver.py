"""What `make run` runs (examples/csp_kit/devserver.py): the CSP kit registered once as an
OIDC client (idempotent), then authserver and the kit started side by side and stopped
together by Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from flask import Flask
from sqlalchemy import func, select

from authserver import settings_of
from authserver.db import get_database
from authserver.models import OAuthClient
from examples.csp_kit.devserver import CLIENT_FILE, ensure_client
from tests.services import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
KIT = "http://localhost:5001"


def clients(app: Flask) -> list[OAuthClient]:
    with get_database(app).session_scope() as session:
        return list(session.scalars(select(OAuthClient).order_by(OAuthClient.id)))


def test_the_kit_is_registered_once(app: Flask) -> None:
    settings = settings_of(app)
    first = ensure_client(settings, KIT)
    saved = settings.instance_path / CLIENT_FILE
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    (row,) = clients(app)
    assert row.client_id == first["client_id"] and row.first_party
    assert row.redirect_uris == [f"{KIT}/callback"]
    assert row.post_logout_redirect_uris == [f"{KIT}/"]
    assert row.backchannel_logout_uri == f"{KIT}/backchannel-logout"

    # A second `make run`: the same client, nothing registered.
    assert ensure_client(settings, KIT) == first
    assert len(clients(app)) == 1

    # The kit elsewhere: a new client; the old one, ours, is retired.
    moved = ensure_client(settings, "http://localhost:5002")
    assert moved["client_id"] != first["client_id"]
    old, new = clients(app)
    assert old.disabled_at is not None and new.disabled_at is None

    # A file whose secret the database does not know (a new database, a hand edit).
    data = json.loads(saved.read_text())
    saved.write_text(json.dumps({**data, "client_secret": "not-the-secret"}))
    again = ensure_client(settings, "http://localhost:5002")
    assert again["client_id"] != moved["client_id"]
    with get_database(app).session_scope() as session:
        live = session.scalar(
            select(func.count()).select_from(OAuthClient).where(OAuthClient.disabled_at.is_(None))
        )
    assert live == 1


def test_make_run_starts_both_and_ctrl_c_stops_both(tmp_path: Path) -> None:
    port, kit_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path),
        "AUTHSERVER_PORT": str(port),
        "AUTHSERVER_SECURITY_LOG": "off",
        "AUTHSERVER_ACCESS_LOG": "off",
        "CSPKIT_BASE_URL": f"http://localhost:{kit_port}",
    }
    cli = str(ROOT / ".venv" / "bin" / "authserver")
    subprocess.run([cli, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=60)
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    launcher = subprocess.Popen(
        [sys.executable, "-m", "examples.csp_kit.devserver", "--workers=1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        wait_for_port(port, timeout=30)
        wait_for_port(kit_port, timeout=30)
        with urllib.request.urlopen(f"http://localhost:{kit_port}/", timeout=5) as answer:
            assert "J'accède au service" in answer.read().decode()
        with urllib.request.urlopen(f"http://localhost:{port}/healthz", timeout=5) as answer:
            assert answer.status == 200
        # Ctrl-C: the terminal sends SIGINT to the whole foreground group.
        started = time.monotonic()
        os.killpg(launcher.pid, signal.SIGINT)
        assert launcher.wait(timeout=40) == 0
        # Not the master's 20 s kill timeout: every process heard its stop (a worker's stop
        # handler run once more used to block it for good, about one Ctrl-C in seven).
        assert time.monotonic() - started < 10
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
        log.close()
    survivors = subprocess.run(
        ["pgrep", "-g", str(launcher.pid)], capture_output=True, text=True
    ).stdout.split()
    assert survivors == [], (tmp_path / "run.log").read_text(errors="replace")
    output = (tmp_path / "run.log").read_text(errors="replace")
    assert "kit CSP enregistré" in output and "Traceback" not in output
