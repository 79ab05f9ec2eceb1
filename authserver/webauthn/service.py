"""Passkey ceremonies for the views: options, verification, storage. Callers commit.

Protocol checks live in registration.py and authentication.py; this module
binds them to our storage: the pending ceremony (its user and browser), the
credential's owner, clone marking and the login's side effects.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any

from flask import current_app, g, request
from sqlalchemy.exc import IntegrityError

from authserver import db
from authserver.accounts.service import find_by_username
from authserver.accounts.validation import username_key
from authserver.alerts import events
from authserver.models import SecurityEvent, User, WebAuthnCredential, utcnow
from authserver.web import client_ip, settings
from authserver.webauthn import authentication, credentials, registration
from authserver.webauthn.challenges import ChallengeStore, Pending
from authserver.webauthn.errors import (
    AccountUnavailable,
    AlreadyRegistered,
    CeremonyError,
    ChallengeInvalid,
    CloneDetected,
    UnknownCredential,
)
from authserver.webauthn.providers import provider_name
from authserver.webauthn.rp import CEREMONY_TIMEOUT_MS, CHALLENGE_BYTES, CHALLENGE_TTL, RelyingParty

STORE_KEY = "authserver.webauthn.challenges"
BINDING_COOKIE = "authserver_ceremony"
# A username-first ceremony for an unknown identifiant: bound to no account (the challenge
# row's user_id is a foreign key, so "no one" cannot be a made-up id), completed by nothing.
DECOY_LOGIN = "login-decoy"


def relying_party() -> RelyingParty:
    config = settings()
    return RelyingParty(id=config.rp_id, name="France Travail Pro", origins=config.origins)


def store() -> ChallengeStore:
    return current_app.extensions[STORE_KEY]


def browser_binding(*, create: bool) -> bytes | None:
    """Hash of this browser's ceremony cookie: a challenge only completes where it began."""
    token = request.cookies.get(BINDING_COOKIE)
    if not token or len(token) > 100:
        if not create:
            return None
        token = g.get("new_binding_cookie") or secrets.token_urlsafe(32)
        g.new_binding_cookie = token
    return hashlib.sha256(token.encode()).digest()


def _take(challenge: bytes, purposes: tuple[str, ...], user_id: int | None = None) -> Pending:
    pending = store().consume(challenge)
    if (
        pending is None
        or pending.purpose not in purposes
        or pending.binding != browser_binding(create=False)
        or (pending.purpose == "register" and pending.user_id != user_id)
    ):
        raise ChallengeInvalid("no pending ceremony for this challenge, browser and user")
    return pending


# --- Registration -------------------------------------------------------------------------


def begin_registration(user: User) -> dict[str, Any]:
    session = db.session()
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    options = registration.creation_options(
        rp=relying_party(),
        challenge=challenge,
        user_handle=user.user_handle,
        user_name=user.username,
        user_display_name=user.display_name,
        exclude_credentials=credentials.descriptors_for(session, user.id),
        timeout_ms=CEREMONY_TIMEOUT_MS,
    )
    binding = browser_binding(create=True)
    assert binding is not None
    store().save(challenge, Pending("register", user.id, binding), CHALLENGE_TTL)
    return options


def default_name(aaguid: str, when: datetime) -> str:
    provider = provider_name(aaguid)
    return (provider or "Clé d'accès") + f" ({when:%d/%m/%Y})"


def finish_registration(user: User, credential: Any, name: str | None) -> WebAuthnCredential:
    session = db.session()
    challenge = registration.challenge_of(credential)
    _take(challenge, ("register",), user.id)
    new = registration.verify_registration(
        rp=relying_party(), credential=credential, expected_challenge=challenge
    )
    if credentials.by_credential_id(session, new.credential_id) is not None:
        raise AlreadyRegistered("credential id already stored")
    now = utcnow()
    row = WebAuthnCredential(
        credential_id=new.credential_id,
        user_id=user.id,
        public_key=new.public_key,
        sign_count=new.sign_count,
        transports=",".join(new.transports),
        aaguid=new.aaguid,
        attestation_format=new.attestation_format,
        backup_eligible=new.backup_eligible,
        backup_state=new.backup_state,
        name=(name or "").strip()[:64] or default_name(new.aaguid, now),
        created_at=now,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        # Another account registered the same id in the meantime (the unique constraint).
        session.rollback()
        # The rollback brought the consumed ceremony back: spend it again (single use).
        store().consume(challenge)
        raise AlreadyRegistered("credential id unique constraint") from None
    return row


# --- Authentication -----------------------------------------------------------------------


def _decoy_descriptor(username: str) -> registration.ExistingCredential:
    """A stable fake credential for identifiants without passkeys: the answer does not say
    whether the account exists or has passkeys."""
    key = current_app.config["SECRET_KEY"].encode()
    fake_id = hmac.new(key, b"decoy:" + username_key(username).encode(), "sha256").digest()
    return registration.ExistingCredential(fake_id, ("internal", "hybrid"))


def begin_login(username: str | None) -> dict[str, Any]:
    session = db.session()
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    user_id = None
    allow = None
    purpose = "login"
    if username:
        user = find_by_username(username)
        allow = credentials.descriptors_for(session, user.id) if user else []
        if not allow:
            allow = [_decoy_descriptor(username)]
        # Unknown identifiant: bound to no one, so no credential can complete it.
        user_id = user.id if user else None
        purpose = "login" if user else DECOY_LOGIN
    options = authentication.request_options(
        rp=relying_party(),
        challenge=challenge,
        allow_credentials=allow,
        timeout_ms=CEREMONY_TIMEOUT_MS,
    )
    binding = browser_binding(create=True)
    assert binding is not None
    store().save(challenge, Pending(purpose, user_id, binding), CHALLENGE_TTL)
    return options


def finish_login(credential: Any) -> tuple[User, WebAuthnCredential]:
    """Verify an assertion; return the user and passkey. Raises a CeremonyError."""
    session = db.session()
    assertion = authentication.read_assertion(credential)
    pending = _take(assertion.challenge, ("login", DECOY_LOGIN))
    row = credentials.by_credential_id(session, assertion.credential_id)
    if (
        row is None
        or pending.purpose == DECOY_LOGIN
        or (pending.user_id is not None and row.user_id != pending.user_id)
    ):
        raise UnknownCredential("credential not found for this ceremony")
    try:
        return _verify_login(row, assertion, pending)
    except CeremonyError as exc:
        exc.user = row.user
        raise


def _verify_login(
    row: WebAuthnCredential, assertion: authentication.Assertion, pending: Pending
) -> tuple[User, WebAuthnCredential]:
    if row.cloned_at is not None:
        raise CloneDetected("credential already marked as cloned")
    if row.review_required:
        raise AccountUnavailable("passkey awaiting review after a 'not me' report")
    stored = authentication.StoredCredential(
        public_key=row.public_key,
        sign_count=row.sign_count,
        backup_eligible=row.backup_eligible,
        owner_user_handle=row.user.user_handle,
    )
    try:
        verified = authentication.verify_assertion(
            rp=relying_party(),
            assertion=assertion,
            expected_challenge=assertion.challenge,
            stored=stored,
            require_user_handle=pending.user_id is None,
        )
    except CloneDetected as exc:
        mark_cloned(row, exc.detail)
        raise
    user = row.user
    if not user.is_active:
        raise AccountUnavailable("account not activated or locked")
    row.sign_count = verified.new_sign_count
    row.backup_state = verified.backup_state
    row.last_used_at = utcnow()
    row.last_used_ip = client_ip()
    return user, row


def mark_cloned(row: WebAuthnCredential, detail: str) -> None:
    row.cloned_at = utcnow()
    db.session().add(
        SecurityEvent(
            kind="passkey_cloned",
            severity="high",
            user_id=row.user_id,
            ip=client_ip(),
            details={"credential": row.id, "name": row.name, "detail": detail},
        )
    )
    events.emit(
        "passkey_cloned",
        account=row.user.username,
        ip=client_ip(),
        credential=row.id,
        outcome="refused",
        detail=detail,
    )
