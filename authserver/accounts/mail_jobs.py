"""Password-reset and activation-link requests, handled by the mail worker (issue 11).

Anyone may type an identifiant or an e-mail address on « Mot de passe oublié » or « Recevoir
un nouveau lien »; the answer is always the same. Its *time* was not: for a real account the
request looked the account up, issued a token, rendered an e-mail and queued it. Now the
request only queues one job (:func:`queue`): the same INSERT whatever was typed. The mail
worker (``DeliveryWorker``: the thread of each server process, or ``authserver mail
deliver``) runs :func:`run_pending` before each delivery round; it finds the accounts, applies
the rules below and queues their e-mails (or nothing), then delivers them.

A job keeps the minimum: the lookup keys of what was typed (``validation.lookup_*_key``; a
keyed hash would not do, the worker must find the account), never the text itself. It is
not shown anywhere (the development mailbox lists sent mail only), never logged, and
deleted in the transaction that queues its e-mails.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from authserver import db
from authserver.accounts import recovery, service
from authserver.accounts.validation import lookup_email_key, lookup_username_key
from authserver.db import get_database
from authserver.mail.outbox import wake_after_commit
from authserver.models import AccountMailJob, User, utcnow
from authserver.throttle import throttle

log = logging.getLogger(__name__)

PASSWORD_RESET = "password_reset"  # noqa: S105 (a job kind)
ACTIVATION = "activation"
PASSKEY_RECOVERY = "passkey_recovery"
KINDS = (PASSWORD_RESET, ACTIVATION, PASSKEY_RECOVERY)

BATCH = 20
# At most this many reset e-mails per account and hour: the form cannot bomb a mailbox.
RESET_MAILS_PER_HOUR = 5
# A job that keeps failing (a bug) is retried each round, then dropped past this age: a link
# asked for that long ago is of no use, and what was typed must not linger.
MAX_AGE = timedelta(hours=1)
EMAIL_KEY_LENGTH = AccountMailJob.__table__.c.email_key.type.length


def queue(kind: str, username: str, email: str) -> None:
    """Queue the request in the caller's transaction: the same work for any input.

    Keys no account can have (malformed input) are stored as NULL: the row, and the
    statement that writes it, stay the same.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown account mail job {kind!r}")
    by_username = lookup_username_key(username) if username.strip() else None
    by_email = lookup_email_key(email) if email.strip() else None
    if by_email is not None and len(by_email) > EMAIL_KEY_LENGTH:
        by_email = None  # case folding made it longer than any stored address
    session = db.session()
    session.add(AccountMailJob(kind=kind, username_key=by_username, email_key=by_email))
    wake_after_commit(session)


def run_pending(app: Flask) -> int:
    """Handle the queued jobs (the mail worker, before each delivery round); return how many.

    Several workers may run at once: each job is claimed by deleting it, in the transaction
    that queues its e-mails, so one worker handles it and a failure leaves it for later.
    """
    database = get_database(app)
    with database.session_scope() as session:
        ids = list(
            session.scalars(select(AccountMailJob.id).order_by(AccountMailJob.id).limit(BATCH))
        )
    handled = 0
    for job_id in ids:
        # A request context of our own: links and e-mails are built as in the request
        # (url_for, templates), on the base URL of the settings.
        with app.test_request_context("/"):
            try:
                handled += _handle(job_id)
            except Exception as exc:
                db.session().rollback()
                log.warning("account mail job %s failed: %s", job_id, type(exc).__name__)
                _drop_if_stale(app, job_id)
    return handled


def _handle(job_id: int) -> int:
    """One job: find its accounts, apply its rule, queue the e-mails; 0 if another worker
    took it meanwhile."""
    session = db.session()
    job = session.get(AccountMailJob, job_id)
    if job is None:
        return 0
    kind = job.kind
    accounts = matching_accounts(session, job.username_key, job.email_key)
    recipients = [user for user in accounts if _wanted(kind, user)]
    # End the read before the throttle's own writes (SQLite: a read transaction cannot
    # become a write one after another connection wrote).
    session.commit()
    if kind in (PASSWORD_RESET, PASSKEY_RECOVERY):
        recipients = [user for user in recipients if _link_allowed(kind, user)]
    claimed = session.execute(
        delete(AccountMailJob)
        .where(AccountMailJob.id == job_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        session.rollback()
        return 0
    for user in recipients:
        if kind == PASSWORD_RESET:
            service.send_reset_link(user)
        elif kind == PASSKEY_RECOVERY:
            recovery.send_recovery_link(user)
        else:
            service.send_activation(user)
    session.commit()
    return 1


def _wanted(kind: str, user: User) -> bool:
    """A new activation link only for an account not activated yet; a reset link for all; a
    recovery link for an account that may log in."""
    if kind == PASSKEY_RECOVERY:
        return recovery.may_recover(user)
    return kind == PASSWORD_RESET or user.activated_at is None


def _link_allowed(kind: str, user: User) -> bool:
    name = "reset-mail" if kind == PASSWORD_RESET else "recovery-mail"
    verdict = throttle().hit(name, RESET_MAILS_PER_HOUR, 3600, str(user.id))
    return verdict.allowed


def matching_accounts(
    session: Session, username_key: str | None, email_key: str | None
) -> list[User]:
    """The accounts of an identifiant's and an e-mail address's lookup keys (either may be
    None; e-mail addresses are not unique, hence a few)."""
    conditions = []
    if username_key is not None:
        conditions.append(User.username_key == username_key)
    if email_key is not None:
        conditions.append(User.email_key == email_key)
    if not conditions:
        return []
    return list(session.scalars(select(User).where(or_(*conditions)).order_by(User.id).limit(5)))


def _drop_if_stale(app: Flask, job_id: int) -> None:
    try:
        with get_database(app).session_scope() as session:
            session.execute(
                delete(AccountMailJob).where(
                    AccountMailJob.id == job_id, AccountMailJob.created_at < utcnow() - MAX_AGE
                )
            )
    except Exception as exc:  # the database is away: the next round sees the job again
        log.warning("account mail job %s not dropped: %s", job_id, type(exc).__name__)
