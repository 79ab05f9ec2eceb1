"""Queue an e-mail in the current transaction."""

from __future__ import annotations

import threading
from typing import Any

from flask import render_template
from sqlalchemy import event
from sqlalchemy.orm import Session

from authserver import db
from authserver.db import Database
from authserver.models import OutboxMail

_FLAG = "authserver.mail_enqueued"


def enqueue(*, kind: str, to: str, subject: str, template: str, **context: Any) -> OutboxMail:
    """Render ``emails/<template>.txt`` and ``.html`` and add the mail to the session.

    Nothing is sent before the caller commits; a rollback drops the mail too.
    """
    context.setdefault("subject", subject)
    text = render_template(f"emails/{template}.txt", **context)
    html = render_template(f"emails/{template}.html", **context)
    mail = OutboxMail(kind=kind, recipient=to, subject=subject, body_text=text, body_html=html)
    session = db.session()
    session.add(mail)
    wake_after_commit(session)
    return mail


def wake_after_commit(session: Session) -> None:
    """Have the delivery worker run as soon as this session commits (mail, or mail jobs)."""
    session.info[_FLAG] = True


def install_wakeup(database: Database, wakeup: threading.Event) -> None:
    """Wake the delivery worker right after a commit that queued mail."""

    @event.listens_for(database.factory, "after_commit")
    def _after_commit(session: Session) -> None:
        if session.info.pop(_FLAG, False):
            wakeup.set()

    @event.listens_for(database.factory, "after_rollback")
    def _after_rollback(session: Session) -> None:
        session.info.pop(_FLAG, None)
