"""Typed models shared by every package.

Times are stored as naive UTC (SQLite has no time zone type) and come back as
aware UTC datetimes through ``UTCDateTime``, so code never mixes the two.
Secrets that grant something (session ids, link tokens, device ids) are stored
only as SHA-256 hashes: a copy of the database does not log anyone in.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use authserver.models.utcnow()")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# The largest id an ``Integer`` key column holds on every database we run on: PostgreSQL's
# INTEGER is 32-bit (SQLite's, 64). A larger id read from a URL or a cursor names no row and
# must never reach a query: PostgreSQL answers « integer out of range » (a 500; issue 11).
MAX_ID = 2**31 - 1


ROLES = ("employer", "security", "counselor", "admin")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stable public identifier (OIDC ``sub``), never the identifiant.
    public_id: Mapped[str] = mapped_column(
        String(32), unique=True, default=lambda: uuid.uuid4().hex
    )
    # WebAuthn user handle: random, carries nothing personal.
    user_handle: Mapped[bytes] = mapped_column(
        LargeBinary(32), unique=True, default=lambda: secrets.token_bytes(32)
    )
    username: Mapped[str] = mapped_column(String(64))
    username_key: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    civility: Mapped[str] = mapped_column(String(8), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    first_name: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str] = mapped_column(String(254))
    email_key: Mapped[str] = mapped_column(String(254), index=True)
    phone: Mapped[str] = mapped_column(String(20), default="")
    role: Mapped[str] = mapped_column(String(16), default="employer")
    cgu_version: Mapped[str | None] = mapped_column(String(32))
    cgu_accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    password_reset_required: Mapped[bool] = mapped_column(Boolean, default=False)
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Passkey offer: "later" until this time, or refused for good.
    passkey_offer_after: Mapped[datetime | None] = mapped_column(UTCDateTime())
    passkey_offer_refused: Mapped[bool] = mapped_column(Boolean, default=False)
    # The establishment's SIRET once known (filled by the establishment flow); the
    # security console filters on it.
    siret: Mapped[str | None] = mapped_column(String(14), index=True)
    # Set when a counsellor or the online check certified the account.
    certified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # « Personnaliser vos accès »: the ids (services file) of the espace's direct accesses
    # this person chose; None: the file's own choice.
    espace_shortcuts: Mapped[list[str] | None] = mapped_column(JSON)

    @property
    def is_activated(self) -> bool:
        return self.activated_at is not None

    # Flask-Login's user protocol (kept here rather than importing Flask into models).
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.activated_at is not None and self.locked_at is None

    def get_id(self) -> str:
        return self.public_id

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.username


class AuthSession(Base):
    """A server-side login session; the cookie holds a random id, the row its hash."""

    __tablename__ = "auth_sessions"

    id_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    # Hash of the cookie value the browser holds now (equal to id_hash until a
    # re-authentication gives the browser a new value; see sessions/store.py).
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The login's proof of presence (a login again in this browser renews it): what OpenID
    # Connect reports as auth_time/acr/amr, with ``method`` and ``amr`` below.
    authenticated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The last « Confirmez votre identité » (issue 11): opens sensitive actions for a few
    # minutes, never changes what the login proved.
    reauthenticated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reauth_method: Mapped[str | None] = mapped_column(String(16))
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(16))
    amr: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))

    user: Mapped[User] = relationship(lazy="joined")

    __table_args__ = (Index("ix_auth_sessions_user_id", "user_id"),)


class LoginEvent(Base):
    """Every login attempt, success or failure; read by alerts and the security console."""

    __tablename__ = "login_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    username_attempt: Mapped[str] = mapped_column(String(64), default="")
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    method: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32), default="")
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))

    __table_args__ = (
        Index("ix_login_events_created_at", "created_at"),
        Index("ix_login_events_user_id_created_at", "user_id", "created_at"),
        Index("ix_login_events_ip_created_at", "ip", "created_at"),
        # Security console: failures and throttled attempts newest first; the method is
        # read from the index too (a combination matching few rows costs no table reads).
        Index("ix_login_events_outcome_created_at_method", "outcome", "created_at", "method"),
    )


class ActionToken(Base):
    """A single-use e-mailed link (activation, reset, ...); only the hash is stored."""

    __tablename__ = "action_tokens"

    id_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_action_tokens_user_id_purpose", "user_id", "purpose"),)


class Device(Base):
    """A browser known for one account, recognised by its device cookie's hash."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    cookie_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    browser: Mapped[str] = mapped_column(String(64), default="")
    system: Mapped[str] = mapped_column(String(64), default="")

    __table_args__ = (
        UniqueConstraint("user_id", "cookie_hash", name="uq_devices_user_cookie"),
        # One browser, many accounts: read by the burst detector.
        Index("ix_devices_cookie_hash", "cookie_hash"),
    )


class OutboxMail(Base):
    """An e-mail waiting for delivery, written in the transaction that caused it."""

    __tablename__ = "outbox_mails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(255))
    # Both empty for a mail queued as its facts (status ``facts``): ``template`` rendered
    # with ``context`` (JSON) by its deliverer right before the send (mail/rendering.py).
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    template: Mapped[str | None] = mapped_column(String(64))
    context: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(255))
    # Who holds the claim (a random token per claim): only its holder may renew, release or
    # mark the row sent, so a worker never touches a row another one is sending.
    claim_token: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (Index("ix_outbox_mails_status_next", "status", "next_attempt_at"),)


class AccountMailJob(Base):
    """A reset or activation-link request, waiting for the mail worker (accounts/mail_jobs.py).

    The request only writes this row, the same for any input, so that its time says nothing
    about the account; the worker finds the account and sends the e-mail, or nothing. Only
    the lookup keys of what was typed are kept (the worker needs them to find the account),
    and the row is deleted in the transaction that handles it.
    """

    __tablename__ = "account_mail_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    username_key: Mapped[str | None] = mapped_column(String(64))
    email_key: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebAuthnCredential(Base):
    """A passkey. Its credential id is unique across all users (a database constraint)."""

    __tablename__ = "webauthn_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    # WebAuthn counters are unsigned 32-bit: past 2**31 - 1 an INTEGER column overflows.
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[str] = mapped_column(String(128), default="")
    aaguid: Mapped[str] = mapped_column(String(36), default="")
    attestation_format: Mapped[str] = mapped_column(String(32), default="none")
    backup_eligible: Mapped[bool] = mapped_column(Boolean, default=False)
    backup_state: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_ip: Mapped[str | None] = mapped_column(String(45))
    # Set when the signature counter went backwards: refused from then on.
    cloned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set by "ce n'était pas moi": the owner must confirm the passkey is theirs.
    review_required: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship(lazy="joined")


class WebAuthnChallenge(Base):
    """A pending ceremony: the challenge's hash, its purpose, user and browser binding."""

    __tablename__ = "webauthn_challenges"

    challenge_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    binding: Mapped[bytes] = mapped_column(LargeBinary(32))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class SecurityEvent(Base):
    """Something the security team must see (cloned passkey, "not me", ...)."""

    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(8), default="medium")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    ip: Mapped[str] = mapped_column(String(45), default="")
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Triage by the security console: open, acknowledged, escalated, closed.
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_security_events_created_at", "created_at"),
        Index("ix_security_events_user_id_created_at", "user_id", "created_at"),
        Index("ix_security_events_kind_created_at", "kind", "created_at"),
        Index("ix_security_events_status_created_at", "status", "created_at"),
        Index("ix_security_events_ip_created_at", "ip", "created_at"),
    )


ALERT_STATUSES = ("open", "acknowledged", "escalated", "closed")
SECURITY_ACTIONS = ("acknowledge", "escalate", "lock_account", "revoke_sessions", "close", "note")


class SecurityAction(Base):
    """What a member of the security team did about an alert: append-only.

    No code updates or deletes these rows, and the database refuses it too
    (triggers created by migration 0003).
    """

    __tablename__ = "security_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("security_events.id"))
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    actor: Mapped[User] = relationship(lazy="joined")

    __table_args__ = (
        Index("ix_security_actions_alert_id_created_at", "alert_id", "created_at"),
        CheckConstraint(
            "action IN ('acknowledge', 'escalate', 'lock_account', 'revoke_sessions', "
            "'close', 'note')",
            name="action",
        ),
    )


HELPDESK_ACTIONS = (
    "unlock",
    "lock",
    "remove_passkey",
    "remove_passkeys",
    "force_password_reset",
    "resend_activation",
    "revoke_sessions",
    "send_recovery_link",
    "delete",
)


class AccountAction(Base):
    """What the helpdesk (console or command line) did to an account, and why: append-only.

    No foreign keys: the row must outlive the account it names (``delete`` is one of the
    actions) and its actor, so both are kept by id and by identifiant as they were. The
    database refuses UPDATE and DELETE (triggers of migration 0018).
    """

    __tablename__ = "account_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(64))
    # The staff account that acted; None for the command line (``actor`` names the operator).
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text)
    # What exactly: the passkey removed, how many sessions were closed…
    detail: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        Index("ix_account_actions_user_id_created_at", "user_id", "created_at"),
        Index("ix_account_actions_actor_id", "actor_id"),
    )


class RecoveryCode(Base):
    """One of an account's one-time recovery codes (issue 14): only its SHA-256 is kept (a
    random 60-bit code needs no slow hash), each spent once, all replaced when regenerated."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_recovery_codes_user_id", "user_id"),)


class ApiToken(Base):
    """A bearer token for the security API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(lazy="joined")


class DetectorState(Base):
    """Where a background detector stopped reading (high-water mark on an id)."""

    __tablename__ = "detector_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ThrottleCounter(Base):
    """A rate-limit counter shared by every worker and instance (when Redis is not configured).

    ``key`` names the limit and its subject (hashed when it holds an identifiant);
    ``expires_at`` is in seconds since the epoch, so that the window arithmetic is done by
    the database in the same statement that counts.
    """

    __tablename__ = "throttle_counters"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class Establishment(Base):
    """A company establishment, identified by its SIRET, as the directory described it."""

    __tablename__ = "establishments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    siret: Mapped[str] = mapped_column(String(14), unique=True)
    siren: Mapped[str] = mapped_column(String(9), index=True)
    name: Mapped[str] = mapped_column(String(255))
    address: Mapped[str] = mapped_column(String(255), default="")
    postal_code: Mapped[str] = mapped_column(String(10), default="")
    city: Mapped[str] = mapped_column(String(100), default="")
    naf_code: Mapped[str] = mapped_column(String(8), default="")
    naf_label: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


MEMBERSHIP_ROLES = ("admin", "member")
MEMBERSHIP_STATUSES = ("active", "pending", "refused", "removed")


class Membership(Base):
    """A user's link to one establishment: active, or waiting for its administrator."""

    __tablename__ = "memberships"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    establishment_id: Mapped[int] = mapped_column(
        ForeignKey("establishments.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(8), default="member")
    status: Mapped[str] = mapped_column(String(8), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    establishment: Mapped[Establishment] = relationship(lazy="joined")

    __table_args__ = (
        UniqueConstraint("user_id", name="uq_memberships_user_id"),
        Index("ix_memberships_establishment_id_status", "establishment_id", "status"),
    )


CERTIFICATION_METHODS = ("online", "counselor")
CERTIFICATION_STATUSES = ("pending", "certified", "rejected", "abandoned")


class CertificationRequest(Base):
    """How the user asked to be certified, and what became of it (who decided, when, why).

    The audit of who certified an account outlives the account: when it is deleted the rows
    stay, detached (``user_id`` NULL), with its identifiant and SIRET kept in ``account_*``
    (migration 0009), as login events keep ``username_attempt``.
    """

    __tablename__ = "certification_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    account_username: Mapped[str | None] = mapped_column(String(64))
    account_siret: Mapped[str | None] = mapped_column(String(14))
    method: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(Text)
    provider_reference: Mapped[str | None] = mapped_column(String(64), unique=True)

    user: Mapped[User | None] = relationship(foreign_keys=[user_id], lazy="joined")
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id], lazy="joined")

    __table_args__ = (Index("ix_certification_requests_status_created", "status", "created_at"),)


# --------------------------------------------------------------------------------------------
# OpenID Connect provider (issue 6): clients, codes, tokens, signing keys, back-channel logout.
# Every secret is stored as a SHA-256 hash; every code and token names the AuthSession it came
# from, so that ending the session ends them at once.


class OAuthClient(Base):
    """A portal service that delegates its logins to us (``authserver client create``)."""

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(48), unique=True)
    # SHA-256 of the random secret (public clients have none).
    secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    name: Mapped[str] = mapped_column(String(100))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(500))
    scope: Mapped[str] = mapped_column(String(255))
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    # First-party services of the portal skip the consent screen.
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    # The grants this client may use (ASVS 10.4.4); None: every grant the server offers.
    grant_types: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OAuthConsent(Base):
    """Scopes a user granted to a (third-party) client: asked once, not at every login."""

    __tablename__ = "oauth_consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(48))
    scope: Mapped[str] = mapped_column(String(255))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("user_id", "client_id", name="uq_oauth_consents_user_client"),
    )


class OAuthCode(Base):
    """An authorization code: single use, short-lived from its own issue time."""

    __tablename__ = "oauth_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    client_id: Mapped[str] = mapped_column(String(48))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    session_id_hash: Mapped[bytes] = mapped_column(
        ForeignKey("auth_sessions.id_hash", ondelete="CASCADE"), index=True
    )
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(255), default="")
    nonce: Mapped[str | None] = mapped_column(String(255))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(8))
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[str] = mapped_column(String(64))
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime())
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_oauth_codes_client_id_nonce", "client_id", "nonce"),)


class OAuthToken(Base):
    """An access token and its refresh token; rotation keeps one ``family`` per code."""

    __tablename__ = "oauth_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(48))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    session_id_hash: Mapped[bytes] = mapped_column(
        ForeignKey("auth_sessions.id_hash", ondelete="CASCADE"), index=True
    )
    code_id: Mapped[int | None] = mapped_column(
        ForeignKey("oauth_codes.id", ondelete="SET NULL"), index=True
    )
    family: Mapped[str] = mapped_column(String(32), index=True)
    access_token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    refresh_token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    scope: Mapped[str] = mapped_column(String(255), default="")
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[str] = mapped_column(String(64))
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime())
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    access_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    refresh_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set when the refresh token was exchanged (rotation): presenting it again is a reuse.
    refresh_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class OIDCSigningKey(Base):
    """An ES256 key pair: the newest live key whose ``signs_from`` has come signs, every
    unretired one (the next key included) is on the JWKS.

    The private half is encrypted with a key derived from AUTHSERVER_SECRET_KEY, so a copy
    of the database alone cannot forge id_tokens.
    """

    __tablename__ = "oidc_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(8), default="ES256")
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    private_jwk_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Published from creation, signing from this instant (rotation publishes ahead of use).
    signs_from: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BackchannelLogout(Base):
    """A logout token to deliver to a client (outbox: written with the revocation)."""

    __tablename__ = "oidc_backchannel_logouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    client_id: Mapped[str] = mapped_column(String(48))
    uri: Mapped[str] = mapped_column(String(500))
    sub: Mapped[str] = mapped_column(String(32))
    sid: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(255))
    # As in the e-mail outbox: only the holder of the claim renews, releases or marks the row.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    # Chosen when queued, the same at every attempt: a service can recognise a token it got.
    jti: Mapped[str | None] = mapped_column(String(32), default=lambda: secrets.token_urlsafe(16))

    __table_args__ = (
        Index("ix_oidc_backchannel_logouts_status_next", "status", "next_attempt_at"),
    )
