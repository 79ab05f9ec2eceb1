"""What the security team does about an alert; each action leaves one audit row.

The audit rows (``security_actions``) are only ever inserted: nothing here
updates or deletes them, and the database refuses it (migration 0003). The
caller commits, once, with the action's effect and its audit row together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from authserver.accounts import locking
from authserver.alerts import events
from authserver.models import SecurityAction, SecurityEvent, User, utcnow
from authserver.sessions import store

NOTE_MAX = 2000

ACTION_LABELS = {
    "acknowledge": "Prendre en compte",
    "escalate": "Escalader",
    "lock_account": "Verrouiller le compte",
    "revoke_sessions": "Fermer les sessions du compte",
    "close": "Clôturer",
    "note": "Ajouter une note",
}
DONE_LABELS = {
    "acknowledge": "Alerte prise en compte.",
    "escalate": "Alerte escaladée.",
    "lock_account": "Compte verrouillé : ses sessions sont refusées.",
    "revoke_sessions": "Sessions du compte fermées.",
    "close": "Alerte clôturée.",
    "note": "Note ajoutée.",
}
# Status an action moves the alert to, and the statuses it may start from.
TRANSITIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "acknowledge": ("acknowledged", ("open",)),
    "escalate": ("escalated", ("open", "acknowledged")),
    "close": ("closed", ("open", "acknowledged", "escalated")),
}


class ActionRefused(Exception):
    """The action cannot apply to this alert; the message is the French sentence to show."""


@dataclass(frozen=True)
class Outcome:
    record: SecurityAction
    sessions_revoked: int = 0


def perform(
    session: Session,
    *,
    alert: SecurityEvent,
    actor: User,
    action: str,
    note: str,
    now: datetime | None = None,
) -> Outcome:
    """Apply ``action`` to ``alert`` as ``actor`` and append its audit row (caller commits)."""
    if action not in ACTION_LABELS:
        raise ActionRefused("Action inconnue.")
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise ActionRefused(f"La note ne peut pas dépasser {NOTE_MAX} caractères.")
    if action == "note" and not note:
        raise ActionRefused("Saisissez la note à ajouter.")
    now = now or utcnow()
    revoked = 0
    if action in TRANSITIONS:
        target, sources = TRANSITIONS[action]
        if alert.status not in sources:
            raise ActionRefused(
                "Cette action n'est pas possible dans le statut actuel de l'alerte."
            )
        alert.status = target
    elif action in ("lock_account", "revoke_sessions"):
        account = session.get(User, alert.user_id) if alert.user_id is not None else None
        if account is None:
            raise ActionRefused("Cette alerte ne concerne aucun compte.")
        if action == "lock_account":
            if account.id == actor.id:
                raise ActionRefused("Vous ne pouvez pas verrouiller votre propre compte.")
            try:
                revoked = locking.lock(session, account, now, reason="security_console")
            except locking.AlreadyInState:
                raise ActionRefused("Ce compte est déjà verrouillé.") from None
        else:
            revoked = store.revoke_all(session, account.id, "security_console")
    alert.updated_at = now
    record = SecurityAction(
        alert_id=alert.id, actor_id=actor.id, action=action, note=note, created_at=now
    )
    session.add(record)
    events.after_commit(
        session,
        "security_action",
        alert=alert.id,
        kind=alert.kind,
        action=action,
        actor=actor.username,
        status=alert.status,
        sessions_revoked=revoked if action in ("lock_account", "revoke_sessions") else None,
    )
    return Outcome(record=record, sessions_revoked=revoked)
