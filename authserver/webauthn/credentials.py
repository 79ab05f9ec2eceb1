"""Passkey storage: small query functions; the caller commits."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from authserver.models import User, WebAuthnCredential
from authserver.webauthn.registration import ExistingCredential


def for_user(session: Session, user_id: int) -> list[WebAuthnCredential]:
    return list(
        session.scalars(
            select(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user_id)
            .order_by(WebAuthnCredential.created_at)
        )
    )


def descriptors_for(session: Session, user_id: int) -> list[ExistingCredential]:
    rows = session.execute(
        select(WebAuthnCredential.credential_id, WebAuthnCredential.transports).where(
            WebAuthnCredential.user_id == user_id
        )
    )
    return [
        ExistingCredential(credential_id, tuple(filter(None, transports.split(","))))
        for credential_id, transports in rows
    ]


def login_candidates(
    session: Session, username_key: str
) -> tuple[int | None, list[ExistingCredential]]:
    """The account of a lookup key and its passkeys, in one statement: (None, []) when
    there is no such account, (id, []) when it has no passkey."""
    rows = session.execute(
        select(User.id, WebAuthnCredential.credential_id, WebAuthnCredential.transports)
        .outerjoin(WebAuthnCredential, WebAuthnCredential.user_id == User.id)
        .where(User.username_key == username_key)
        .order_by(WebAuthnCredential.id)
    ).all()
    if not rows:
        return None, []
    return rows[0][0], [
        ExistingCredential(credential_id, tuple(filter(None, transports.split(","))))
        for _, credential_id, transports in rows
        if credential_id is not None
    ]


# Built once (every passkey login runs it): the passkey and, joined, its owner.
_BY_CREDENTIAL_ID = select(WebAuthnCredential).where(
    WebAuthnCredential.credential_id == bindparam("credential_id")
)


def by_credential_id(session: Session, credential_id: bytes) -> WebAuthnCredential | None:
    return session.scalar(_BY_CREDENTIAL_ID, {"credential_id": credential_id})


def count_for(session: Session, user_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user_id)
        )
        or 0
    )


def owned(session: Session, user_id: int, credential_pk: int) -> WebAuthnCredential | None:
    row = session.get(WebAuthnCredential, credential_pk)
    return row if row is not None and row.user_id == user_id else None


_CREDENTIALS = WebAuthnCredential.__table__
_USERS = User.__table__
# The passkey login fast path (fastpath.py) reads a passkey and its owner in one row.
LOGIN_CANDIDATE = (
    select(
        _CREDENTIALS.c.id,
        _CREDENTIALS.c.user_id,
        _CREDENTIALS.c.public_key,
        _CREDENTIALS.c.sign_count,
        _CREDENTIALS.c.backup_eligible,
        _CREDENTIALS.c.backup_state,
        _CREDENTIALS.c.cloned_at,
        _CREDENTIALS.c.review_required,
        _CREDENTIALS.c.last_used_at,
        _CREDENTIALS.c.last_used_ip,
        _USERS.c.user_handle,
        _USERS.c.username,
        _USERS.c.role,
        _USERS.c.activated_at,
        _USERS.c.locked_at,
        _USERS.c.certified_at,
    )
    .join(_USERS, _USERS.c.id == _CREDENTIALS.c.user_id)
    .where(_CREDENTIALS.c.credential_id == bindparam("credential_id"))
)
