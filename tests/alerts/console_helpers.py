"""Helpers for the security console tests: accounts of each role, rows inserted directly."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select

from authserver.accounts.service import hashing
from authserver.accounts.validation import email_key, username_key
from authserver.db import get_database
from authserver.models import LoginEvent, SecurityAction, SecurityEvent, User, utcnow
from tests.conftest import PASSWORD, Actions
from tests.services import SMTPServer
from tests.staff_login import passkey_session

# A fixed instant in the recent past (rows are placed around it), whole seconds.
BASE = utcnow().replace(microsecond=0) - timedelta(days=2)


_HASHES: dict[str, str] = {}


def _password_hash(app: Flask) -> str:
    """PASSWORD hashed by the app's hasher, once per test process (Argon2id is slow on purpose)."""
    with app.app_context():
        hasher = hashing()
        inner = hasher.hasher
        key = f"{inner.time_cost}/{inner.memory_cost}/{inner.parallelism}"
        if key not in _HASHES:
            _HASHES[key] = hasher.hash(PASSWORD)
        return _HASHES[key]


def add_user(
    app: Flask,
    username: str,
    *,
    role: str = "employer",
    siret: str | None = None,
    locked: bool = False,
) -> int:
    password_hash = _password_hash(app)
    now = utcnow()
    with get_database(app).session_scope() as session:
        user = User(
            username=username,
            username_key=username_key(username),
            email=f"{username}@example.fr",
            email_key=email_key(f"{username}@example.fr"),
            password_hash=password_hash,
            password_changed_at=now,
            role=role,
            siret=siret,
            first_name="Test",
            last_name=username,
            activated_at=now,
            locked_at=now if locked else None,
        )
        session.add(user)
        session.flush()
        return user.id


def client_as(app: Flask, smtp: SMTPServer, username: str, *, passkey: bool = True) -> FlaskClient:
    """A browser logged in as ``username`` with a password (the real login form), then, for
    staff (who need a passkey session), with a passkey enrolled in that session."""
    client = app.test_client()
    response = Actions(client, smtp).login(username)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    if passkey:
        passkey_session(app, client)
    return client


def add_alert(app: Flask, **fields: Any) -> int:
    fields.setdefault("kind", "new_device")
    fields.setdefault("severity", "low")
    with get_database(app).session_scope() as session:
        alert = SecurityEvent(**fields)
        session.add(alert)
        session.flush()
        return alert.id


def add_events(app: Flask, rows: list[dict[str, Any]]) -> None:
    """Insert login events in one executemany (keys filled with defaults)."""
    defaults = {
        "user_id": None,
        "username_attempt": "",
        "ip": "192.0.2.1",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0",
        "method": "password",
        "outcome": "success",
        "reason": "",
        "device_id": None,
    }
    with get_database(app).session_scope() as session:
        session.execute(insert(LoginEvent), [{**defaults, **row} for row in rows])


def event_ids(app: Flask, *conditions: Any) -> list[int]:
    with get_database(app).session_scope() as session:
        return list(session.scalars(select(LoginEvent.id).where(*conditions)))


def alert_of(app: Flask, alert_id: int) -> SecurityEvent:
    with get_database(app).session_scope() as session:
        alert = session.get(SecurityEvent, alert_id)
        assert alert is not None
        return alert


def user_of(app: Flask, user_id: int) -> User:
    with get_database(app).session_scope() as session:
        user = session.get(User, user_id)
        assert user is not None
        return user


def trail_of(app: Flask, alert_id: int) -> list[SecurityAction]:
    with get_database(app).session_scope() as session:
        return list(
            session.scalars(
                select(SecurityAction)
                .where(SecurityAction.alert_id == alert_id)
                .order_by(SecurityAction.id)
            )
        )


def parse_csv(body: bytes) -> list[dict[str, str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff"), "no byte-order mark"
    return list(csv.DictReader(io.StringIO(text[1:]), delimiter=";"))


def at(minutes: float = 0, base: datetime = BASE) -> datetime:
    return base + timedelta(minutes=minutes)
