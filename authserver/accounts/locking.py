"""Locking and unlocking an account: one definition for the security console (an alert's
« Verrouiller le compte ») and the helpdesk (console page and command line)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from authserver.alerts import events
from authserver.establishments import service as establishments
from authserver.models import User
from authserver.sessions import store


class AlreadyInState(Exception):
    """Locking a locked account, unlocking an unlocked one."""


def lock(session: Session, account: User, now: datetime, *, reason: str) -> int:
    """Lock ``account``: its sessions are closed, and an establishment administrator hands
    the role over as one who leaves does (nobody could decide the members' requests
    otherwise). Return how many sessions were closed; the caller commits."""
    if account.locked_at is not None:
        raise AlreadyInState()
    account.locked_at = now
    events.after_commit(session, "account_locked", account=account.username, reason=reason)
    membership = establishments.membership_of(account)
    if membership is not None and membership.status == "active":
        establishments.hand_over(membership)
    return store.revoke_all(session, account.id, reason)


def unlock(session: Session, account: User) -> None:
    """Let ``account`` log in again. Its administrator role, handed over when it was locked,
    does not come back: the new administrator keeps it."""
    if account.locked_at is None:
        raise AlreadyInState()
    account.locked_at = None
    events.after_commit(session, "account_unlocked", account=account.username)
