"""Pending ceremonies, stored server-side and consumed exactly once.

Three stores: Redis when configured (several machines); beside an SQLite main
database, a file of its own (sidecar.py); otherwise the main database. The
database store deletes the row inside the request's transaction and reads it
back in the same statement (DELETE … RETURNING): of two concurrent verifies of one
assertion, only the one whose DELETE removed the row goes on (SQLite serialises
writers; PostgreSQL's row lock makes the second DELETE wait and then find nothing).
The Redis store uses GETDEL, atomic across instances. Only a hash of the challenge
is kept.

The login hot path splits consumption in two: ``peek`` reads the ceremony (no lock
taken), the assertion is verified, then ``spend`` deletes it as the first write of
the login's one short transaction. Exactly one of two concurrent spends removes the
row (or the Redis key); the other refuses. A write transaction therefore never spans
the signature check, which keeps SQLite's single write lock free most of the time.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import bindparam, delete, func, insert, select, update
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

    def peek(self, challenge: bytes) -> Pending | None: ...

    def spend(self, challenge: bytes) -> bool: ...

    def spend_pending(self, challenge: bytes, pending: Pending) -> bool:
        """Spend the ceremony only if it is ``pending`` (purpose, user, browser) and live:
        the check and the single use together, without a read before."""
        ...


_TABLE = WebAuthnChallenge.__table__
# Built once: constructing a statement costs more than running it on SQLite.
_SAVE = insert(_TABLE)
_PEEK = select(_TABLE.c.purpose, _TABLE.c.user_id, _TABLE.c.binding, _TABLE.c.expires_at).where(
    _TABLE.c.challenge_hash == bindparam("key")
)
_SPEND = delete(_TABLE).where(_TABLE.c.challenge_hash == bindparam("key"))


class DatabaseChallengeStore:
    def __init__(self, session_getter: object) -> None:
        self._session = session_getter

    def _db(self) -> Session:
        return self._session()  # type: ignore[operator, no-any-return]

    def save(self, challenge: bytes, pending: Pending, ttl: int) -> None:
        session = self._db()
        now = utcnow()
        if random.random() < 0.02:  # sweep expired ceremonies now and then
            session.execute(delete(_TABLE).where(_TABLE.c.expires_at < now))
        # Core, not the unit of work: this runs on every login page and every passkey login.
        session.execute(
            _SAVE,
            {
                "challenge_hash": challenge_key(challenge),
                "purpose": pending.purpose,
                "user_id": pending.user_id,
                "binding": pending.binding,
                "expires_at": now + timedelta(seconds=ttl),
            },
        )

    def peek(self, challenge: bytes) -> Pending | None:
        row = (
            self._db()
            .execute(
                select(
                    _TABLE.c.purpose, _TABLE.c.user_id, _TABLE.c.binding, _TABLE.c.expires_at
                ).where(_TABLE.c.challenge_hash == challenge_key(challenge))
            )
            .first()
        )
        if row is None or row.expires_at <= utcnow():
            return None
        return Pending(row.purpose, row.user_id, row.binding)

    def expire_all(self) -> None:
        """For tests: every pending ceremony is now past its time."""
        self._db().execute(update(_TABLE).values(expires_at=utcnow() - timedelta(seconds=1)))

    def pending_count(self) -> int:
        return self._db().scalar(select(func.count()).select_from(_TABLE)) or 0

    def spend(self, challenge: bytes) -> bool:
        """Delete the ceremony inside the caller's transaction; True if this call removed it."""
        return self._db().execute(_SPEND, {"key": challenge_key(challenge)}).rowcount == 1

    def spend_pending(self, challenge: bytes, pending: Pending) -> bool:
        return self.peek(challenge) == pending and self.spend(challenge)

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
        self.client.set(self.PREFIX + challenge_key(challenge).hex(), _value(pending), ex=ttl)  # type: ignore[attr-defined]

    def consume(self, challenge: bytes) -> Pending | None:
        raw = self.client.getdel(self.PREFIX + challenge_key(challenge).hex())  # type: ignore[attr-defined]
        return self._pending(raw)

    def peek(self, challenge: bytes) -> Pending | None:
        return self._pending(self.client.get(self.PREFIX + challenge_key(challenge).hex()))  # type: ignore[attr-defined]

    def spend(self, challenge: bytes) -> bool:
        """DEL is atomic across instances: of two concurrent spends, one sees 1."""
        return self.client.delete(self.PREFIX + challenge_key(challenge).hex()) == 1  # type: ignore[attr-defined]

    def spend_pending(self, challenge: bytes, pending: Pending) -> bool:
        """One script, atomic on the server: DEL only if the value is this ceremony's."""
        key = self.PREFIX + challenge_key(challenge).hex()
        return self.client.eval(_SPEND_PENDING, 1, key, _value(pending)) == 1  # type: ignore[attr-defined]

    @staticmethod
    def _pending(raw: bytes | str | None) -> Pending | None:
        if raw is None:
            return None
        data = json.loads(raw)
        return Pending(data["purpose"], data["user_id"], bytes.fromhex(data["binding"]))


# Redis expires the key itself: a live key is an unexpired ceremony.
_SPEND_PENDING = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


def _value(pending: Pending) -> str:
    """A ceremony as stored in Redis (always the same text for the same ceremony)."""
    return json.dumps(
        {"purpose": pending.purpose, "user_id": pending.user_id, "binding": pending.binding.hex()}
    )
