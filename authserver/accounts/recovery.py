"""« J'ai perdu ma clé d'accès » (issue 14): a single-use, short-lived e-mailed link that
enrols a **new passkey**, not a password, so that the password can go away.

The request is queued like « Mot de passe oublié » (mail_jobs.py: the same answer and the
same work whatever was typed); the mail worker e-mails the link to an activated, unlocked
account. Following the link proves the mailbox; the passkey is stored, and the link spent,
in the transaction of the login that follows (webauthn/recovery_views.py). That login always
sends the new-device alert and raises a security event (alerts/policy.py).
"""

from __future__ import annotations

from flask import url_for

from authserver import db
from authserver.accounts import tokens
from authserver.mail.outbox import enqueue
from authserver.models import User
from authserver.sessions.login_core import may_log_in
from authserver.web import settings

# Short: whoever reads the mailbox can enrol a passkey with it.
RECOVERY_TTL = 15 * 60
# The first passkey of a passwordless sign-up, from the activation page: the time to do it.
ENROL_TTL = 60 * 60
# Purposes whose link enrols a passkey; only a recovery always alerts (an enrolment is the
# account's first login, which never does).
PURPOSES = (tokens.PASSKEY_RECOVERY, tokens.PASSKEY_ENROL)


def may_recover(user: User) -> bool:
    """Recovery is a way back into an account that may log in, nothing more."""
    return may_log_in(activated=user.activated_at is not None, locked=user.locked_at is not None)


def send_recovery_link(user: User, *, by_helpdesk: bool = False) -> None:
    """Issue the link (earlier ones stop working) and queue its e-mail; the caller commits.
    ``by_helpdesk``: a counsellor sent it (helpdesk.py), the e-mail says so."""
    token = tokens.issue(
        db.session(),
        purpose=tokens.PASSKEY_RECOVERY,
        user_id=user.id,
        ttl=RECOVERY_TTL,
        supersede=True,
    )
    enqueue(
        kind="passkey_recovery",
        to=user.email,
        subject="Créez une nouvelle clé d'accès pour votre compte France Travail",
        template="passkey_recovery",
        user=user,
        link=settings().base_url + url_for("recovery.page", token=token),
        minutes=RECOVERY_TTL // 60,
        by_helpdesk=by_helpdesk,
        forgot_link=settings().base_url + url_for("accounts.forgot_password"),
    )


def issue_enrolment(user: User) -> str:
    """The token of the activation page's « Créer ma clé d'accès » (passwordless sign-up)."""
    return tokens.issue(
        db.session(),
        purpose=tokens.PASSKEY_ENROL,
        user_id=user.id,
        ttl=ENROL_TTL,
        supersede=True,
    )


def _purpose_of(token: str) -> str:
    """Which of :data:`PURPOSES` the token is for (TokenInvalid if none)."""
    session = db.session()
    for purpose in PURPOSES:
        try:
            tokens.peek(session, token, purpose)
        except tokens.TokenInvalid:
            continue
        return purpose
    raise tokens.TokenInvalid()


def _account(user_id: int, purpose: str) -> tuple[User, bool]:
    user = db.session().get(User, user_id)
    if user is None or not may_recover(user):
        raise tokens.TokenInvalid()
    return user, purpose == tokens.PASSKEY_RECOVERY


def user_of(token: str) -> tuple[User, bool]:
    """The account a live link is for, and whether it is a recovery (else a first
    enrolment), without spending it; raise tokens.Token* otherwise (a link of an account
    that may no longer log in is invalid)."""
    purpose = _purpose_of(token)
    return _account(tokens.peek(db.session(), token, purpose).user_id, purpose)


def spend(token: str) -> tuple[User, bool]:
    """Spend the link (single use, in the caller's transaction): its account, and whether
    it is a recovery."""
    purpose = _purpose_of(token)
    return _account(tokens.consume(db.session(), token, purpose).user_id, purpose)
