"""« Espace équipe »: the staff home (an administrator's landing), and the header's link to
a staff member's tool.

Staff do not use the employer espace: a counsellor lands on the certification queue, the
security team on the console, an administrator here, where both are listed
(sessions/landing.py). Like the tools themselves, this page needs a passkey session
(sessions/staff.py); it only lists links, each tool checks its own role again.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Flask, render_template, url_for
from flask_login import current_user

from authserver.sessions import staff
from authserver.sessions.landing import STAFF_TOOLS

bp = Blueprint("staff", __name__)


@dataclass(frozen=True)
class ToolEntry:
    endpoint: str
    title: str
    description: str
    roles: tuple[str, ...]


ENTRIES = (
    ToolEntry(
        "establishments.counselor_queue",
        "Certifications à traiter",
        "Les demandes de certification par un conseiller, de la plus ancienne à la plus "
        "récente : certifier un compte ou refuser avec un motif.",
        staff.COUNSELOR_ROLES,
    ),
    ToolEntry(
        "security.alerts",
        "Console de sécurité",
        "Les alertes de sécurité et les événements de connexion : examiner une alerte, "
        "bloquer un compte, fermer ses sessions.",
        staff.SECURITY_ROLES,
    ),
    ToolEntry(
        "helpdesk.search",
        "Assistance aux comptes",
        "Retrouver un compte par son identifiant, son adresse e-mail ou son SIRET : "
        "déverrouiller, supprimer ses clés d'accès, imposer un nouveau mot de passe, renvoyer "
        "l'e-mail d'activation, fermer ses sessions. Chaque action est motivée et tracée.",
        staff.STAFF_ROLES,
    ),
)


@bp.get("/staff")
def home() -> object:
    refused = staff.refusal_page(staff.STAFF_ROLES)
    if refused is not None:
        return refused
    entries = [entry for entry in ENTRIES if current_user.role in entry.roles]
    return render_template("sessions/staff_home.html", entries=entries)


def header_tool() -> dict[str, str] | None:
    """The header's link for a staff member: their landing tool (label and URL)."""
    if not current_user or not current_user.is_authenticated:
        return None
    tool = STAFF_TOOLS.get(current_user.role)
    if tool is None:
        return None
    return {"label": tool.label, "url": url_for(tool.endpoint)}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

    # A function, called by base.html only: e-mails rendered by the mail worker never ask.
    app.jinja_env.globals["staff_tool"] = header_tool
