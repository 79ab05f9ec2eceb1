"""Passkey ceremonies for the views: options, verification, storage. Callers commit.

Protocol checks live in registration.py and authentication.py; this module
binds them to our storage: the pending ceremony (its user and browser), the
credential's owner, clone marking and the login's side effects.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from authserver import db
from authserver.accounts.validation import lookup_username_key, username_key
from authserver.alerts import events
from authserver.models import SecurityEvent, User, WebAuthnCredential, utcnow
from authserver.sessions.login_core import may_log_in
from authserver.web import client_ip, settings
from authserver.webauthn import authentication, credentials, decoys, registration
from authserver.webauthn.challenges import ChallengeStore, Pending
from authserver.webauthn.errors import (
    AccountUnavailable,
    AlreadyRegistered,
    AuthenticatorNotAllowed,
    CeremonyError,
    ChallengeInvalid,
    CloneDetected,
    PasskeyUnderReview,
    UnknownCredential,
)
from authserver.webauthn.providers import aaguid_allowed, provider_name
from authserver.webauthn.rp import CEREMONY_TIMEOUT_MS, CHALLENGE_BYTES, CHALLENGE_TTL, RelyingParty

STORE_KEY = "authserver.webauthn.challenges"
BINDING_COOKIE = "authserver_ceremony"
# A username-first ceremony for an unknown identifiant: bound to no account (the challenge
# row's user_id is a foreign key, so "no one" cannot be a made-up id), completed by nothing.
DECOY_LOGIN = "login-decoy"


RP_NAME = "France Travail Pro"


def relying_party() -> RelyingParty:
    config = settings()
    return RelyingParty(id=config.rp_id, name=RP_NAME, origins=config.origins)


def store() -> ChallengeStore:
    return current_app.extensions[STORE_KEY]


def usable_binding(token: str | None) -> str | None:
    """The browser's ceremony cookie when it can be one of ours (random, 43 characters; at
    most 100 are looked at), else None: the views and the login fast path ask here."""
    if not token or len(token) > 100:
        return None
    return token


def new_binding_token() -> str:
    """A ceremony cookie for a browser that has none."""
    return secrets.token_urlsafe(32)


def binding_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def set_binding_cookie_on(
    response: Response, token: str, secure: bool, script_root: str = ""
) -> None:
    """Sent back only to the passkey API (under the app's mount point, if any)."""
    response.set_cookie(
        BINDING_COOKIE,
        token,
        httponly=True,
        secure=secure,
        samesite="Strict",
        path=script_root.rstrip("/") + "/webauthn/",
    )


def _take(
    challenge: bytes, purposes: tuple[str, ...], user_id: int, binding: bytes | None
) -> Pending:
    """Consume a registration ceremony begun by this browser (``binding``, the hash of its
    ceremony cookie) for this user."""
    pending = store().consume(challenge)
    if (
        pending is None
        or pending.purpose not in purposes
        or pending.binding != binding
        or pending.user_id != user_id
    ):
        raise ChallengeInvalid("no pending ceremony for this challenge, browser and user")
    return pending


# --- Registration -------------------------------------------------------------------------


REGISTER = "register"
# A conditional create (WebAuthn L3 `mediation: "conditional"` on create()): the browser makes
# the passkey without a gesture, so its response has UP=0 (and often UV=0); only a ceremony
# begun as such is verified without them. (The purpose column holds 16 characters.)
REGISTER_CONDITIONAL = "register-cond"
# A passkey enrolled from an e-mailed recovery link, by a browser with no session.
RECOVER = "recover"


def begin_registration(
    user: User, binding: bytes, *, conditional: bool = False, recovery: bool = False
) -> dict[str, Any]:
    """Creation options, the ceremony bound to this browser (``binding``: the hash of its
    ceremony cookie); ``conditional`` for a conditional create (see REGISTER_CONDITIONAL),
    ``recovery`` for a recovery link's ceremony (only its verify may complete it)."""
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
    purpose = RECOVER if recovery else REGISTER_CONDITIONAL if conditional else REGISTER
    store().save(challenge, Pending(purpose, user.id, binding), CHALLENGE_TTL)
    return options


# A default name is "<provider> (dd/mm/yyyy)" in the 64 characters of the name column; a
# few provider names of the shipped table are longer than what is left.
NAME_LENGTH = 64


def default_name(aaguid: str, when: datetime) -> str:
    suffix = f" ({when:%d/%m/%Y})"
    provider = provider_name(aaguid) or "Clé d'accès"
    room = NAME_LENGTH - len(suffix)
    if len(provider) > room:
        provider = provider[: room - 1].rstrip() + "…"
    return provider + suffix


def finish_registration(
    user: User, credential: Any, name: str | None, binding: bytes | None, *, recovery: bool = False
) -> WebAuthnCredential:
    session = db.session()
    challenge = registration.challenge_of(credential)
    purposes = (RECOVER,) if recovery else (REGISTER, REGISTER_CONDITIONAL)
    pending = _take(challenge, purposes, user.id, binding)
    new = registration.verify_registration(
        rp=relying_party(),
        credential=credential,
        expected_challenge=challenge,
        conditional=pending.purpose == REGISTER_CONDITIONAL,
    )
    if not aaguid_allowed(role=user.role, aaguid=new.aaguid, allow_list=settings().staff_aaguids):
        raise AuthenticatorNotAllowed(f"aaguid {new.aaguid} not allowed for {user.role}")
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
        name=" ".join((name or "").split())[:NAME_LENGTH] or default_name(new.aaguid, now),
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


def begin_login(username: str | None, binding: bytes) -> dict[str, Any]:
    """Request options: discoverable without ``username``, else listing that account's
    passkeys, or decoys shaped like them (decoys.py) when it has none or does not exist; the
    ceremony bound to this browser (``binding``: the hash of its ceremony cookie)."""
    session = db.session()
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    user_id = None
    allow = None
    purpose = "login"
    if username:
        key = lookup_username_key(username)
        user_id, allow = credentials.login_candidates(session, key) if key else (None, [])
        if not allow:
            allow = decoys.decoy_credentials(
                secret=current_app.config["SECRET_KEY"].encode(),
                lookup_key=key or username_key(username),
            )
        # Unknown identifiant: bound to no one, so no credential can complete it.
        purpose = "login" if user_id is not None else DECOY_LOGIN
    options = authentication.request_options(
        rp=relying_party(),
        challenge=challenge,
        allow_credentials=allow,
        timeout_ms=CEREMONY_TIMEOUT_MS,
    )
    store().save(challenge, Pending(purpose, user_id, binding), CHALLENGE_TTL)
    return options


def finish_login(credential: Any, binding: bytes | None) -> tuple[User, WebAuthnCredential]:
    """Verify an assertion; return the user and passkey. Raises a CeremonyError.

    Reads and the signature check come first, with no lock taken; the ceremony is
    then spent as the first write of the login's transaction (also when refused:
    a challenge serves once). Of two concurrent verifies, only one spends it.
    """
    assertion = authentication.read_assertion(credential)
    challenge = assertion.challenge
    try:
        user, row, verified = _check_login(assertion, binding)
    except CeremonyError as exc:
        spent = store().spend(challenge)
        clone = exc.credential if isinstance(exc, CloneDetected) else None
        if isinstance(clone, WebAuthnCredential):
            if not spent:
                # The login this assertion belongs to stored its counter between our peek and
                # our read: a replay racing it, not a clone (the passkey must not be blocked).
                replay = ChallengeInvalid("ceremony spent by a concurrent verify")
                replay.user = exc.user
                raise replay from None
            mark_cloned(clone, exc.detail)
        raise
    if not store().spend(challenge):
        exc = ChallengeInvalid("ceremony spent by a concurrent verify")
        exc.user = user
        raise exc
    _record_use(row, verified)
    return user, row


def _check_login(
    assertion: authentication.Assertion, binding: bytes | None
) -> tuple[User, WebAuthnCredential, authentication.VerifiedAssertion]:
    pending = store().peek(assertion.challenge)
    if (
        pending is None
        or pending.purpose not in ("login", DECOY_LOGIN)
        or pending.binding != binding
    ):
        raise ChallengeInvalid("no pending ceremony for this challenge and browser")
    row = credentials.by_credential_id(db.session(), assertion.credential_id)
    if (
        row is None
        or pending.purpose == DECOY_LOGIN
        or (pending.user_id is not None and row.user_id != pending.user_id)
    ):
        raise UnknownCredential("credential not found for this ceremony")
    try:
        return row.user, row, _verify_login(row, assertion, pending)
    except CeremonyError as exc:
        exc.user = row.user
        raise


def _verify_login(
    row: WebAuthnCredential, assertion: authentication.Assertion, pending: Pending
) -> authentication.VerifiedAssertion:
    if row.cloned_at is not None:
        raise CloneDetected("credential already marked as cloned")
    if row.review_required:
        raise PasskeyUnderReview("passkey awaiting review after a recovery")
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
        exc.credential = row  # marked in finish_login, once the ceremony is spent
        raise
    user = row.user
    if not may_log_in(activated=user.activated_at is not None, locked=user.locked_at is not None):
        raise AccountUnavailable("account not activated or locked")
    return verified


# "Last used" is shown to the day: a passkey used again within this delay from the same
# address, with nothing else changed (synced passkeys keep a zero counter), is not rewritten.
LAST_USED_PRECISION = timedelta(seconds=60)
_CREDENTIALS = WebAuthnCredential.__table__
RECORD_USE = (
    update(_CREDENTIALS)
    .where(_CREDENTIALS.c.id == bindparam("pk"), _CREDENTIALS.c.sign_count == bindparam("seen"))
    .values(
        sign_count=bindparam("count"),
        backup_state=bindparam("bs"),
        last_used_at=bindparam("now"),
        last_used_ip=bindparam("ip"),
    )
)


def use_to_record(
    sign_count: int,
    backup_state: bool,
    last_used_ip: str | None,
    last_used_at: datetime | None,
    verified: authentication.VerifiedAssertion,
    ip: str,
    now: datetime,
) -> bool:
    """Does this use change anything worth a write (see LAST_USED_PRECISION)?"""
    return not (
        verified.new_sign_count == sign_count
        and verified.backup_state == backup_state
        and last_used_ip == ip
        and last_used_at is not None
        and now - last_used_at < LAST_USED_PRECISION
    )


def _record_use(row: WebAuthnCredential, verified: authentication.VerifiedAssertion) -> None:
    """Store the new counter and backup state, compare-and-set on the counter read.

    A login that raced another one with the same credential finds the counter moved:
    judged against the stored value, as if the two had come one after the other.
    """
    now = utcnow()
    ip = client_ip()
    new_count = verified.new_sign_count
    if not use_to_record(
        row.sign_count, row.backup_state, row.last_used_ip, row.last_used_at, verified, ip, now
    ):
        return
    session = db.session()
    values = {"pk": row.id, "count": new_count, "bs": verified.backup_state, "now": now, "ip": ip}
    if session.execute(RECORD_USE, {**values, "seen": row.sign_count}).rowcount == 1:
        return
    stored = session.scalar(select(_CREDENTIALS.c.sign_count).where(_CREDENTIALS.c.id == row.id))
    if stored is not None and new_count > stored:
        session.execute(RECORD_USE, {**values, "seen": stored})
        return
    detail = f"sign count {new_count} after {stored} (concurrent login)"
    mark_cloned(row, detail)
    exc = CloneDetected(detail)
    exc.user = row.user
    raise exc


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
