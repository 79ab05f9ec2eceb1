"""Codes, tokens and consents in the database: small query functions, no Flask, no commit.

Only SHA-256 hashes of codes and tokens are stored. Every code and token carries the id
hash of the AuthSession it came from: a token is active only while that session is live,
so ending the session (logout, password reset, « ce n'était pas moi », the security team,
« Mes sessions ») ends its tokens in the same instant, with no list to walk.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from authserver.models import (
    AuthSession,
    Establishment,
    OAuthClient,
    OAuthCode,
    OAuthConsent,
    OAuthToken,
    User,
    utcnow,
)
from authserver.sessions import store

CODE_TTL = timedelta(seconds=120)  # counted from the code's own issue time
ACCESS_TTL = timedelta(minutes=10)


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def new_token(size: int = 32) -> str:
    return secrets.token_urlsafe(size)


# --------------------------------------------------------------------------- codes


def add_code(
    session: Session,
    *,
    code: str,
    client_id: str,
    auth_session: AuthSession,
    redirect_uri: str,
    scope: str,
    nonce: str | None,
    code_challenge: str | None,
    code_challenge_method: str | None,
    acr: str,
    now: datetime | None = None,
) -> OAuthCode:
    now = now or utcnow()
    row = OAuthCode(
        code_hash=digest(code),
        client_id=client_id,
        user_id=auth_session.user_id,
        session_id_hash=auth_session.id_hash,
        redirect_uri=redirect_uri,
        scope=scope,
        nonce=nonce,
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
        acr=acr,
        amr=auth_session.amr,
        auth_time=auth_session.authenticated_at or auth_session.created_at,
        issued_at=now,
        expires_at=now + CODE_TTL,
    )
    session.add(row)
    return row


@dataclass(frozen=True)
class CodeRedemption:
    code: OAuthCode | None
    reused: bool = False


def redeem_code(session: Session, code: str, now: datetime | None = None) -> CodeRedemption:
    """Spend a code: only the first presentation wins, even when two race."""
    if not code or len(code) > 200:
        return CodeRedemption(None)
    row = session.scalar(select(OAuthCode).where(OAuthCode.code_hash == digest(code)))
    if row is None:
        return CodeRedemption(None)
    now = now or utcnow()
    won = session.execute(
        update(OAuthCode)
        .where(OAuthCode.id == row.id, OAuthCode.used_at.is_(None))
        .values(used_at=now)
    ).rowcount
    if won != 1:
        return CodeRedemption(row, reused=True)
    row.used_at = now
    return CodeRedemption(row)


def nonce_used(session: Session, client_id: str, nonce: str) -> bool:
    return (
        session.scalar(
            select(OAuthCode.id)
            .where(OAuthCode.client_id == client_id, OAuthCode.nonce == nonce)
            .limit(1)
        )
        is not None
    )


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Loaded:
    """A token row with its session and user, from one query."""

    token: OAuthToken
    auth_session: AuthSession
    user: User


def _load(session: Session, column, value: bytes) -> Loaded | None:  # type: ignore[no-untyped-def]
    found = session.execute(
        select(OAuthToken, AuthSession, User)
        .join(AuthSession, AuthSession.id_hash == OAuthToken.session_id_hash)
        .join(User, User.id == OAuthToken.user_id)
        .where(column == value)
    ).first()
    if found is None:
        return None
    return Loaded(*found)


def by_access_token(session: Session, token: str) -> Loaded | None:
    if not token or len(token) > 200:
        return None
    return _load(session, OAuthToken.access_token_hash, digest(token))


def by_refresh_token(session: Session, token: str) -> Loaded | None:
    if not token or len(token) > 200:
        return None
    return _load(session, OAuthToken.refresh_token_hash, digest(token))


def add_token(
    session: Session,
    *,
    client_id: str,
    auth_session: AuthSession,
    access_token: str,
    refresh_token: str | None,
    scope: str,
    acr: str,
    amr: str,
    auth_time: datetime,
    family: str | None = None,
    code_id: int | None = None,
    now: datetime | None = None,
) -> OAuthToken:
    """A new access (and refresh) token; the refresh token lives as long as the session."""
    now = now or utcnow()
    row = OAuthToken(
        client_id=client_id,
        user_id=auth_session.user_id,
        session_id_hash=auth_session.id_hash,
        code_id=code_id,
        family=family or secrets.token_hex(16),
        access_token_hash=digest(access_token),
        refresh_token_hash=digest(refresh_token) if refresh_token else None,
        scope=scope,
        acr=acr,
        amr=amr,
        auth_time=auth_time,
        issued_at=now,
        access_expires_at=now + ACCESS_TTL,
        refresh_expires_at=auth_session.expires_at if refresh_token else None,
    )
    session.add(row)
    return row


def claim_refresh(session: Session, token_id: int, now: datetime | None = None) -> bool:
    """Mark a refresh token as exchanged; False when it already was (a reuse)."""
    return (
        session.execute(
            update(OAuthToken)
            .where(
                OAuthToken.id == token_id,
                OAuthToken.refresh_used_at.is_(None),
                OAuthToken.revoked_at.is_(None),
            )
            .values(refresh_used_at=now or utcnow())
        ).rowcount
        == 1
    )


def revoke_family(session: Session, family: str, reason: str) -> int:
    return (
        session.execute(
            update(OAuthToken)
            .where(OAuthToken.family == family, OAuthToken.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason=reason)
        ).rowcount
        or 0
    )


def revoke_issued_from_code(session: Session, code_id: int) -> int:
    """A code presented twice: whatever it produced is revoked (RFC 6749 §4.1.2)."""
    families = list(
        session.scalars(select(OAuthToken.family).where(OAuthToken.code_id == code_id).distinct())
    )
    return sum(revoke_family(session, family, "code_reuse") for family in families)


def expire_access_token(session: Session, token_id: int) -> None:
    session.execute(
        update(OAuthToken).where(OAuthToken.id == token_id).values(access_expires_at=utcnow())
    )


# --------------------------------------------------------------------------- sessions, users


def auth_session(session: Session, id_hash: bytes) -> AuthSession | None:
    return session.get(AuthSession, id_hash)


def session_is_live(record: AuthSession, lifetimes: store.Lifetimes) -> bool:
    return store.is_live(record, lifetimes)


def establishment_name(session: Session, siret: str | None) -> str | None:
    if not siret:
        return None
    return session.scalar(select(Establishment.name).where(Establishment.siret == siret))


# --------------------------------------------------------------------------- consents


def consent_covers(session: Session, user_id: int, client_id: str, scope: str) -> bool:
    granted = session.scalar(
        select(OAuthConsent.scope).where(
            OAuthConsent.user_id == user_id, OAuthConsent.client_id == client_id
        )
    )
    return granted is not None and set(scope.split()) <= set(granted.split())


def record_consent(session: Session, user_id: int, client_id: str, scope: str) -> None:
    row = session.scalar(
        select(OAuthConsent).where(
            OAuthConsent.user_id == user_id, OAuthConsent.client_id == client_id
        )
    )
    if row is None:
        session.add(OAuthConsent(user_id=user_id, client_id=client_id, scope=scope))
        return
    row.scope = " ".join(sorted(set(row.scope.split()) | set(scope.split())))
    row.granted_at = utcnow()


# --------------------------------------------------------------------------- connected services


@dataclass(frozen=True)
class ConnectedService:
    """A service the user let in (consent) or that holds live tokens of theirs."""

    client_id: str
    name: str
    first_party: bool
    scope: str  # what it may read: the consent, else what its live tokens carry
    consented_at: datetime | None
    last_login_at: datetime | None  # newest live token's issue time


def live_tokens(
    session: Session, user_id: int, lifetimes: store.Lifetimes, now: datetime | None = None
) -> list[OAuthToken]:
    """The user's tokens a service can still use: not revoked, not expired, session live."""
    now = now or utcnow()
    rows = session.execute(
        select(OAuthToken, AuthSession)
        .join(AuthSession, AuthSession.id_hash == OAuthToken.session_id_hash)
        .where(
            OAuthToken.user_id == user_id,
            OAuthToken.revoked_at.is_(None),
            AuthSession.revoked_at.is_(None),
            or_(OAuthToken.access_expires_at > now, OAuthToken.refresh_expires_at > now),
        )
    )
    return [token for token, record in rows if store.is_live(record, lifetimes, now)]


def connected_services(
    session: Session, user_id: int, lifetimes: store.Lifetimes, now: datetime | None = None
) -> list[ConnectedService]:
    held: dict[str, tuple[set[str], datetime]] = {}
    for token in live_tokens(session, user_id, lifetimes, now):
        scopes, last = held.get(token.client_id, (set(), token.issued_at))
        held[token.client_id] = (scopes | set(token.scope.split()), max(last, token.issued_at))
    consents = {
        row.client_id: row
        for row in session.scalars(select(OAuthConsent).where(OAuthConsent.user_id == user_id))
    }
    wanted = set(held) | set(consents)
    if not wanted:
        return []
    clients = session.scalars(select(OAuthClient).where(OAuthClient.client_id.in_(wanted)))
    found = []
    for client in clients:
        consent = consents.get(client.client_id)
        scopes, last = held.get(client.client_id, (set(), None))
        granted = set(consent.scope.split()) if consent is not None else scopes
        found.append(
            ConnectedService(
                client_id=client.client_id,
                name=client.name,
                first_party=client.first_party,
                scope=" ".join(sorted(granted)),
                consented_at=consent.granted_at if consent is not None else None,
                last_login_at=last,
            )
        )
    found.sort(key=lambda item: item.name.casefold())
    return found


def withdraw_service(session: Session, user_id: int, client_id: str, reason: str) -> int:
    """« Retirer l'autorisation »: forget the consent, revoke the service's tokens and codes of
    this user. Returns how many tokens were revoked. The caller queues the back-channel
    logouts first (they are computed from the tokens still live) and commits."""
    now = utcnow()
    revoked = (
        session.execute(
            update(OAuthToken)
            .where(
                OAuthToken.user_id == user_id,
                OAuthToken.client_id == client_id,
                OAuthToken.revoked_at.is_(None),
            )
            .values(revoked_at=now, revoked_reason=reason)
        ).rowcount
        or 0
    )
    session.execute(  # a code not yet exchanged is spent: it cannot bring the grant back
        update(OAuthCode)
        .where(
            OAuthCode.user_id == user_id,
            OAuthCode.client_id == client_id,
            OAuthCode.used_at.is_(None),
        )
        .values(used_at=now)
    )
    session.execute(
        delete(OAuthConsent).where(
            OAuthConsent.user_id == user_id, OAuthConsent.client_id == client_id
        )
    )
    return revoked


def narrow_consent(session: Session, user_id: int, client_id: str, scope: str, reason: str) -> bool:
    """Withdraw one scope of a consent (ASVS 10.7.3: consents can be modified): the consent
    keeps the others, and the service's tokens and codes of this user end (they may carry
    the scope; the service logs in again and asks for what it still needs). False when the
    consent did not include it. The caller queues the back-channel logouts first, and
    commits."""
    row = session.scalar(
        select(OAuthConsent).where(
            OAuthConsent.user_id == user_id, OAuthConsent.client_id == client_id
        )
    )
    granted = row.scope.split() if row is not None else []
    if row is None or scope not in granted or scope == "openid":
        return False
    remaining = " ".join(item for item in granted if item != scope)
    withdraw_service(session, user_id, client_id, reason)  # tokens, codes and the consent
    session.add(OAuthConsent(user_id=user_id, client_id=client_id, scope=remaining))
    return True
