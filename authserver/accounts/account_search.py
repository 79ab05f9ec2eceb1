"""Finding accounts for the helpdesk (console page and ``authserver user list``): one query
for both, so a filter means the same thing in either place."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from authserver.accounts.validation import lookup_email_key, lookup_username_key
from authserver.models import User


def search(
    session: Session,
    query: str | None = None,
    *,
    role: str | None = None,
    locked: bool = False,
    limit: int = 50,
) -> list[User]:
    """Accounts in id order. ``query``: the identifiant or e-mail address (exact,
    case-folded) or the SIRET a caller gives; one that no account can have finds nothing."""
    statement = select(User).order_by(User.id).limit(limit)
    if query is not None:
        text = query.strip()
        conditions = []
        username = lookup_username_key(text)
        if username is not None:
            conditions.append(User.username_key == username)
        email = lookup_email_key(text)
        if email is not None:
            conditions.append(User.email_key == email)
        digits = text.replace(" ", "")
        if len(digits) == 14 and digits.isdigit():
            conditions.append(User.siret == digits)
        if not conditions:
            return []
        statement = statement.where(or_(*conditions))
    if role:
        statement = statement.where(User.role == role)
    if locked:
        statement = statement.where(User.locked_at.is_not(None))
    return list(session.scalars(statement))
