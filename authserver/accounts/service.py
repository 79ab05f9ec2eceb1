"""Account operations: sign-up, activation, password login, password reset.

Views call these and commit once; these only add to the session. Nothing here
tells a caller whether an identifiant or e-mail exists beyond what the caller
already proved (a correct password).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from flask import current_app, url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from authserver import db
from authserver.accounts import tokens
from authserver.accounts.passwords import PasswordHashing, Verification
from authserver.accounts.validation import (
    email_key,
    lookup_username_key,
    username_key,
)
from authserver.alerts import events
from authserver.mail.outbox import enqueue
from authserver.models import User, utcnow
from authserver.sessions import store
from authserver.web import client_ip, settings
from authserver.webauthn import review

HASHING_KEY = "authserver.passwords"


def hashing() -> PasswordHashing:
    return current_app.extensions[HASHING_KEY]


class UsernameTaken(Exception):
    pass


@dataclass(frozen=True)
class SignupData:
    username: str
    password: str | None  # None: a passwordless sign-up
    civility: str
    last_name: str
    first_name: str
    email: str
    phone: str


def _link(endpoint: str, token: str) -> str:
    path = url_for(endpoint, token=token)
    return settings().base_url + path


def register(data: SignupData) -> User:
    """Create an inactive account and queue its activation e-mail; raise UsernameTaken."""
    # Slow: before any write. A passwordless sign-up (issue 14) has none.
    password_hash = hashing().hash(data.password) if data.password is not None else None
    now = utcnow()
    user = User(
        username=data.username,
        username_key=username_key(data.username),
        password_hash=password_hash,
        password_changed_at=now if password_hash else None,
        civility=data.civility,
        last_name=data.last_name,
        first_name=data.first_name,
        email=data.email,
        email_key=email_key(data.email),
        phone=data.phone,
        cgu_version=settings().cgu_version,
        cgu_accepted_at=now,
        created_at=now,
    )
    session = db.session()
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise UsernameTaken() from None
    events.after_commit(
        session,
        "account_created",
        account=user.username,
        ip=client_ip(),
        passwordless=password_hash is None,
    )
    send_activation(user)
    return user


def send_activation(user: User) -> None:
    token = tokens.issue(
        db.session(),
        purpose=tokens.ACTIVATION,
        user_id=user.id,
        ttl=settings().activation_ttl,
    )
    enqueue(
        kind="activation",
        to=user.email,
        subject="Activez votre compte France Travail",
        template="activation",
        user=user,
        link=_link("accounts.activate", token),
        hours=settings().activation_ttl // 3600,
    )


def activate(token: str) -> User:
    """Consume an activation link; raise tokens.TokenInvalid / TokenExpired / TokenUsed."""
    session = db.session()
    consumed = tokens.consume(session, token, tokens.ACTIVATION)
    user = session.get(User, consumed.user_id)
    if user is None:
        raise tokens.TokenInvalid()
    if user.activated_at is None:
        user.activated_at = utcnow()
        events.after_commit(session, "account_activated", account=user.username, ip=client_ip())
    return user


def find_by_username(username: str) -> User | None:
    """The account of a typed identifiant; None for anything no account can have."""
    key = lookup_username_key(username)
    if key is None:
        return None
    return db.session().scalar(select(User).where(User.username_key == key))


def resend_activation(username: str, email: str) -> None:
    """Queue the request: the mail worker sends a new link to each matching account not yet
    activated, nothing otherwise (mail_jobs.py: the same work here whatever was typed)."""
    from authserver.accounts import mail_jobs

    mail_jobs.queue(mail_jobs.ACTIVATION, username, email)


class LoginOutcome(Enum):
    OK = "success"
    BAD_CREDENTIALS = "bad_credentials"
    NOT_ACTIVATED = "not_activated"
    LOCKED = "locked"
    RESET_REQUIRED = "reset_required"


@dataclass(frozen=True)
class LoginResult:
    outcome: LoginOutcome
    user: User | None


def check_password(
    user: User | None, password: str, verification: Verification | None = None
) -> LoginResult:
    """Verify a password login; an unknown identifiant (None) costs one dummy hash too.
    ``verification``: the hash already checked against ``user``'s stored one (the password
    login fast path's, handed over with its attempt)."""
    if verification is None:
        verification = hashing().verify(user.password_hash if user else None, password)
    if user is None or not verification.ok:
        return LoginResult(LoginOutcome.BAD_CREDENTIALS, user)
    if verification.needs_rehash:
        user.password_hash = hashing().hash(password)
    outcome = account_outcome(
        activated=user.activated_at is not None,
        locked=user.locked_at is not None,
        reset_required=user.password_reset_required,
    )
    return LoginResult(outcome, user)


def account_outcome(*, activated: bool, locked: bool, reset_required: bool) -> LoginOutcome:
    """Whether an account whose password was right logs in, or why not (the password login
    fast path asks here too, before it spends anything)."""
    if not activated:
        return LoginOutcome.NOT_ACTIVATED
    if locked:
        return LoginOutcome.LOCKED
    if reset_required:
        return LoginOutcome.RESET_REQUIRED
    return LoginOutcome.OK


def request_password_reset(username: str, email: str) -> None:
    """Queue the request: the mail worker e-mails a reset link to each matching account, at
    most a few an hour (mail_jobs.py: the same work here whatever was typed)."""
    from authserver.accounts import mail_jobs

    mail_jobs.queue(mail_jobs.PASSWORD_RESET, username, email)


def send_reset_link(user: User, *, by_helpdesk: bool = False) -> None:
    """Issue a reset link and e-mail it (``by_helpdesk``: the e-mail says the helpdesk asked
    for it, and the password must be changed)."""
    token = tokens.issue(
        db.session(),
        purpose=tokens.PASSWORD_RESET,
        user_id=user.id,
        ttl=settings().reset_ttl,
        supersede=True,
    )
    enqueue(
        kind="password_reset",
        to=user.email,
        subject="Réinitialisation de votre mot de passe France Travail",
        template="password_reset",
        user=user,
        link=_link("accounts.reset_password", token),
        minutes=settings().reset_ttl // 60,
        by_helpdesk=by_helpdesk,
    )


def reset_user_of(token: str) -> User:
    """The account a reset link is for, without consuming it (to show the form)."""
    session = db.session()
    row = tokens.peek(session, token, tokens.PASSWORD_RESET)
    user = session.get(User, row.user_id)
    if user is None:
        raise tokens.TokenInvalid()
    return user


def reset_password(token: str, new_password: str) -> User:
    """Consume the link, set the password, revoke every session, notify the owner."""
    password_hash = hashing().hash(new_password)
    session = db.session()
    consumed = tokens.consume(session, token, tokens.PASSWORD_RESET)
    user = session.get(User, consumed.user_id)
    if user is None:
        raise tokens.TokenInvalid()
    # Before the new password: a passkey an intruder added must not outlive it (issue 11).
    review.review_since_trusted_login(session, user.id)
    set_password_hash(user, password_hash, reason="password_reset")
    if user.activated_at is None:
        # The link reached the account's mailbox: that proves the address too.
        user.activated_at = utcnow()
    return user


def set_password_hash(
    user: User, password_hash: str, *, reason: str, keep_session: bytes | None = None
) -> None:
    """The one way a password changes: sessions revoked (but ``keep_session``, the browser
    that changed it knowing the old one), pending reset links expired, owner told."""
    session = db.session()
    events.after_commit(
        session, "password_changed", account=user.username, ip=client_ip(), reason=reason
    )
    user.password_hash = password_hash
    user.password_changed_at = utcnow()
    user.password_reset_required = False
    store.revoke_all(session, user.id, reason, keep=keep_session)
    tokens.expire_pending(session, user_id=user.id, purpose=tokens.PASSWORD_RESET)
    enqueue(
        kind="password_changed",
        to=user.email,
        subject="Votre mot de passe France Travail a été modifié",
        template="password_changed",
        user=user,
        when=utcnow(),
        forgot_link=settings().base_url + url_for("accounts.forgot_password"),
        security_link=settings().base_url + url_for("alerts.security_info"),
    )
