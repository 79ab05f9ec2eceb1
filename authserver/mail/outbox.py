"""Queue an e-mail in the current transaction."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import current_app
from jinja2 import Environment
from sqlalchemy import event, insert
from sqlalchemy.orm import Session

from authserver import db
from authserver.db import Database
from authserver.mail.rendering import queued_row, render
from authserver.models import OutboxMail, utcnow

if TYPE_CHECKING:
    from authserver.mail.delivery import DeliveryWorker

_FLAG = "authserver.mail_enqueued"


INSERT = insert(OutboxMail.__table__)


def mail_row(
    templates: Environment,
    now: datetime,
    *,
    kind: str,
    to: str,
    subject: str,
    template: str,
    **context: Any,
) -> dict[str, Any]:
    """A queued mail's complete row of ``INSERT``: ``emails/<template>.txt`` and ``.html``
    rendered now with ``templates`` (the app's Jinja environment; e-mails use only what
    they are given, never a request). ``rendering.unrendered_row``: the same mail left for
    its deliverer to render."""
    words = render(templates, template, subject, context)
    return queued_row(now, kind=kind, to=to, subject=subject, words=words)


def enqueue(*, kind: str, to: str, subject: str, template: str, **context: Any) -> OutboxMail:
    """Render ``emails/<template>.txt`` and ``.html`` and add the mail to the session.

    Nothing is sent before the caller commits; a rollback drops the mail too.
    """
    row = mail_row(
        current_app.jinja_env,
        utcnow(),
        kind=kind,
        to=to,
        subject=subject,
        template=template,
        **context,
    )
    mail = OutboxMail(**row)
    session = db.session()
    session.add(mail)
    wake_after_commit(session)
    return mail


def wake_after_commit(session: Session) -> None:
    """Have the delivery worker run as soon as this session commits (mail, or mail jobs)."""
    session.info[_FLAG] = True


def install_wakeup(database: Database, worker: DeliveryWorker) -> None:
    """Wake the delivery worker right after a commit that queued mail."""

    @event.listens_for(database.factory, "after_commit")
    def _after_commit(session: Session) -> None:
        if session.info.pop(_FLAG, False):
            worker.notify()

    @event.listens_for(database.factory, "after_rollback")
    def _after_rollback(session: Session) -> None:
        session.info.pop(_FLAG, None)
