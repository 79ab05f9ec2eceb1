"""Who may use the console: the security team (role ``security``) and administrators.

Pages: anonymous people go to the login page, other accounts get the 403 page, console
users on a password session the page that sends them to their passkey (sessions/staff.py).
API: a bearer token created from the CLI, or a console user's passkey session; errors
in the contract's JSON form (401 without valid credentials, 403 otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import request
from flask_login import current_user

from authserver import db
from authserver.alerts.console.api_tokens import CONSOLE_ROLES, authenticate
from authserver.errors import APIError
from authserver.models import User
from authserver.sessions import staff

View = TypeVar("View", bound=Callable[..., Any])


class CallerRefused(APIError):
    """401 or 403 from the security API (401 answers carry ``WWW-Authenticate``)."""


console_page = staff.staff_page(CONSOLE_ROLES)


def api_caller() -> User:
    """The console user calling the API, by bearer token first, else by session."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        session = db.session()
        row = authenticate(session, value.strip()) if scheme.lower() == "bearer" else None
        if row is None or not row.user.is_active:
            raise CallerRefused(401, "invalid_token", "Jeton d'accès invalide ou révoqué.")
        if row.user.role not in CONSOLE_ROLES:
            raise CallerRefused(403, "forbidden", "Ce jeton ne donne pas accès à la console.")
        session.commit()  # last_used_at
        return row.user
    access = staff.current_access(CONSOLE_ROLES)
    if access is staff.Access.ANONYMOUS:
        raise CallerRefused(
            401, "unauthorized", "Authentification requise : session ou jeton d'accès."
        )
    if access is staff.Access.FORBIDDEN:
        raise CallerRefused(403, "forbidden", "Vous n'avez pas accès à la console de sécurité.")
    if access is staff.Access.PASSKEY_REQUIRED:
        raise CallerRefused(
            403,
            "passkey_required",
            "La console de sécurité exige une session ouverte avec une clé d'accès.",
        )
    return cast(User, current_user._get_current_object())
