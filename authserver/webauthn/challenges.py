"""Pending ceremonies, stored server-side and consumed exactly once.

The database store deletes the row inside the request's transaction and reads it
back in the same statement (DELETE … RETURNING): of two concurrent verifies of one
assertion, only the one whose DELETE removed the row goes on (SQLite serialises
writers; PostgreSQL's row lock makes the second DELETE wait and then find nothing).
The Redis store uses GETDEL, atomic across instances. Only a hash of the challenge
is kept.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete
from sqlalchemy.orm import Session

from authserver.models import WebAuthnChallenge, utcnow


@dataclass(frozen=True)
class Pending:
    purpose: str
    user_id: int | None
    binding: bytes


def challenge_key(challenge: bytes) -> bytes:
    return hashlib.sha256(challenge).digest()


class ChallengeStore(Protocol):
    def save(self, challenge: bytes, pending: Pending, ttl: int) -> None: ...

    def consume(self, challenge: bytes) -> Pending | None: ...


class DatabaseChallengeStore:
    def __init__(self, session_getter: object) -> None:
        self._session = session_getter

    def _db(self) -> Session:
        return self._session()  # type: ignore[operator, no-any-return]

    def save(self, challenge: bytes, pending: Pending, ttl: int) -> None:
        session = self._db()
        now = utcnow()
        if random.random() < 0.02:  # sweep expired ceremonies now and then
            session.execute(delete(WebAuthnChallenge).where(WebAuthnChallenge.expires_at < now))
        session.add(
            WebAuthnChallenge(
                challenge_hash=challenge_key(challenge),
                purpose=pending.purpose,
                user_id=pending.user_id,
                binding=pending.binding,
                expires_at=now + timedelta(seconds=ttl),
            )
        )

    def consume(self, challenge: bytes) -> Pending | None:
        # One statement: the row is deleted and read back at once (DELETE … RETURNING, SQLite
        # 3.35+ and PostgreSQL), so of two concurrent verifies only one gets it.
        row = (
            self._db()
            .execute(
                delete(WebAuthnChallenge)
                .where(WebAuthnChallenge.challenge_hash == challenge_key(challenge))
                .returning(
                    WebAuthnChallenge.purpose,
                    WebAuthnChallenge.user_id,
                    WebAuthnChallenge.binding,
                    WebAuthnChallenge.expires_at,
                ),
                execution_options={"synchronize_session": False},
            )
            .first()
        )
        if row is None or row.expires_at <= utcnow():
            return None
        return Pending(row.purpose, row.user_id, row.binding)


class RedisChallengeStore:
    PREFIX = "authserver:webauthn:challenge:"

    def __init__(self, client: object) -> None:
        self.client = client

    def save(self, challenge: bytes, pending: Pending, ttl: int) -> None:
        value = json.dumps(
            {
                "purpose": pending.purpose,
                "user_id": pending.user_id,
                "binding": pending.binding.hex(),
            }
        )
        self.client.set(self.PREFIX + challenge_key(challenge).hex(), value, ex=ttl)  # type: ignore[attr-defined]

    def consume(self, challenge: bytes) -> Pending | None:
        raw = self.client.getdel(self.PREFIX + challenge_key(challenge).hex())  # type: ignore[attr-defined]
        if raw is None:
            return None
        data = json.loads(raw)
        return Pending(data["purpose"], data["user_id"], bytes.fromhex(data["binding"]))
