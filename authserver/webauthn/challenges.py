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
    def save(self, challenge: bytes, pending: Pending, ttl: float) -> None: ...

    def consume(self, challenge: bytes) -> Pending | None: ...

    def peek(self, challenge: bytes) -> Pending | None: ...

    def spend(self, challenge: bytes) -> bool: ...

    def spend_pending(self, challenge: bytes, pending: Pending) -> bool:
        """Spend the ceremony only if it is ``pending`` (purpose, user, browser) and live:
        the check and the single use together, without a read before."""
        ...

    def take_pending(self, challenge: bytes, pending: Pending) -> float | None:
        """``spend_pending`` for a caller that may have to give it back: the seconds the
        ceremony had left, or None when nothing was spent."""
        ...

    def put_back(self, challenge: bytes, pending: Pending, seconds: float) -> None:
        """A ceremony taken by ``take_pending`` whose login then wrote nothing, live again
        for the ``seconds`` it had left: the view that judges the login next finds it as
        the browser left it."""
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

    def save(self, challenge: bytes, pending: Pending, ttl: float) -> None:
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
        return self.take_pending(challenge, pending) is not None

    def take_pending(self, challenge: bytes, pending: Pending) -> float | None:
        row = self._db().execute(_PEEK, {"key": challenge_key(challenge)}).first()
        if row is None or Pending(row.purpose, row.user_id, row.binding) != pending:
            return None
        left = (row.expires_at - utcnow()).total_seconds()
        if left <= 0 or not self.spend(challenge):
            return None
        return left

    def put_back(self, challenge: bytes, pending: Pending, seconds: float) -> None:
        if seconds > 0:
            self.save(challenge, pending, seconds)

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

    def save(self, challenge: bytes, pending: Pending, ttl: float) -> None:
        key = self.PREFIX + challenge_key(challenge).hex()
        self.client.set(key, _value(pending), px=max(1, round(ttl * 1000)))  # type: ignore[attr-defined]

    def consume(self, challenge: bytes) -> Pending | None:
        raw = self.client.getdel(self.PREFIX + challenge_key(challenge).hex())  # type: ignore[attr-defined]
        return self._pending(raw)

    def peek(self, challenge: bytes) -> Pending | None:
        return self._pending(self.client.get(self.PREFIX + challenge_key(challenge).hex()))  # type: ignore[attr-defined]

    def spend(self, challenge: bytes) -> bool:
        """DEL is atomic across instances: of two concurrent spends, one sees 1."""
        return self.client.delete(self.PREFIX + challenge_key(challenge).hex()) == 1  # type: ignore[attr-defined]

    def spend_pending(self, challenge: bytes, pending: Pending) -> bool:
        return self.take_pending(challenge, pending) is not None

    def take_pending(self, challenge: bytes, pending: Pending) -> float | None:
        """One script, atomic on the server: the key deleted only if its value is this
        ceremony's, and the time it had left read in the same step."""
        key = self.PREFIX + challenge_key(challenge).hex()
        left = self.client.eval(_TAKE_PENDING, 1, key, _value(pending))  # type: ignore[attr-defined]
        return None if left < 0 else left / 1000

    def put_back(self, challenge: bytes, pending: Pending, seconds: float) -> None:
        if seconds > 0:
            key = self.PREFIX + challenge_key(challenge).hex()
            self.client.set(key, _value(pending), px=max(1, round(seconds * 1000)), nx=True)  # type: ignore[attr-defined]

    @staticmethod
    def _pending(raw: bytes | str | None) -> Pending | None:
        if raw is None:
            return None
        data = json.loads(raw)
        return Pending(data["purpose"], data["user_id"], bytes.fromhex(data["binding"]))


# Redis expires the key itself: a live key is an unexpired ceremony. The answer: the
# milliseconds it had left (-3: not spent).
_TAKE_PENDING = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then"
    " local left = redis.call('PTTL', KEYS[1]) redis.call('DEL', KEYS[1])"
    " if left < 0 then return 0 end return left"
    " end return -3"
)


def _value(pending: Pending) -> str:
    """A ceremony as stored in Redis (always the same text for the same ceremony)."""
    return json.dumps(
        {"purpose": pending.purpose, "user_id": pending.user_id, "binding": pending.binding.hex()}
    )
