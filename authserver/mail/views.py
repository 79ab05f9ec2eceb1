"""The development mailbox: every e-mail of the outbox, shown only with ``console`` mail."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template
from sqlalchemy import select

from authserver import db
from authserver.mail.rendering import bodies
from authserver.models import OutboxMail
from authserver.web import is_local_request

bp = Blueprint("mail", __name__)

# The outbox's states (leases.py), as the mailbox shows them.
STATUS_LABELS = {
    "facts": "En attente d'envoi",  # its words are put together at its send (rendering.py)
    "pending": "En attente d'envoi",
    "sent": "Envoyé",
    "failed": "Échec de l'envoi",
}


def _require_dev() -> None:
    """Console mail only (itself refused off localhost), and only to this machine's browsers.

    The mailbox shows every activation and reset link: a server listening on another
    address (AUTHSERVER_HOST=0.0.0.0), or a local proxy forwarding outside requests, must
    not hand them out.
    """
    if not current_app.config["AUTHSERVER"].console_mail or not is_local_request():
        abort(404)


@bp.get("/dev/mailbox")
def dev_mailbox() -> str:
    _require_dev()
    mails = db.session().scalars(select(OutboxMail).order_by(OutboxMail.id.desc()).limit(100))
    return render_template("mail/mailbox.html", mails=list(mails), status_labels=STATUS_LABELS)


@bp.get("/dev/mailbox/<int:mail_id>")
def dev_mail(mail_id: int) -> str:
    _require_dev()
    mail = db.session().get(OutboxMail, mail_id)
    if mail is None:
        abort(404)
    text, _html = bodies(
        current_app.jinja_env,
        mail.subject,
        mail.body_text,
        mail.body_html,
        mail.template,
        mail.context,
    )
    return render_template("mail/mail.html", mail=mail, text=text, status_labels=STATUS_LABELS)
