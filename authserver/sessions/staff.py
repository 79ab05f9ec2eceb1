"""Who may use the staff tools (security console, counsellor queue), and with which login.

Staff lock accounts, close alerts and certify employers: their sessions must come from a
phishing-resistant login (a passkey: NIST SP 800-63B AAL2 and up, ASVS 6.3.3), never from a
password that a fake portal page could have collected (issue 11). One rule, here; the
console's pages, its API and the counsellor pages all ask it.

Bearer tokens of the security API are created from the command line by an operator, not
typed by a person: they are judged by their owner's role alone.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from functools import wraps
from typing import Any, TypeVar, cast

from flask import render_template
from flask_login import current_user

from authserver.sessions.login import current_auth_session

SECURITY_ROLES = ("security", "admin")
COUNSELOR_ROLES = ("counselor", "admin")
STAFF_ROLES = ("security", "counselor", "admin")
View = TypeVar("View", bound=Callable[..., Any])
# The login methods staff sessions may come from.
PHISHING_RESISTANT = ("passkey",)


class Access(enum.Enum):
    ALLOWED = "allowed"
    ANONYMOUS = "anonymous"
    FORBIDDEN = "forbidden"  # not a role of this tool
    PASSKEY_REQUIRED = "passkey_required"  # the right role, a password session


def decide(*, role: str | None, login_method: str | None, roles: Collection[str]) -> Access:
    """May a session of ``role`` opened by ``login_method`` use a tool open to ``roles``?"""
    if role is None:
        return Access.ANONYMOUS
    if role not in roles:
        return Access.FORBIDDEN
    if login_method not in PHISHING_RESISTANT:
        return Access.PASSKEY_REQUIRED
    return Access.ALLOWED


def current_access(roles: Collection[str]) -> Access:
    """``decide`` for this request's browser."""
    if not current_user.is_authenticated:
        return Access.ANONYMOUS
    record = current_auth_session()
    return decide(
        role=current_user.role, login_method=record.method if record else None, roles=roles
    )


def passkey_required_page() -> tuple[str, int]:
    """The French page that sends a staff member on a password session to their passkey."""
    from authserver import db
    from authserver.webauthn import credentials

    has_passkey = credentials.count_for(db.session(), current_user.id) > 0
    return render_template("sessions/passkey_required.html", has_passkey=has_passkey), 403


def refusal_page(roles: Collection[str]) -> object | None:
    """What a staff page answers instead of itself for this browser (the login page, the
    403 page, the « use your passkey » page), or None when it may show: the one guard of the
    console, the counsellor tools, the helpdesk and the staff home."""
    from flask import abort

    from authserver.sessions.login import login_manager

    access = current_access(roles)
    if access is Access.ANONYMOUS:
        return login_manager.unauthorized()
    if access is Access.FORBIDDEN:
        abort(403)
    if access is Access.PASSKEY_REQUIRED:
        return passkey_required_page()
    return None


def staff_page(roles: Collection[str]) -> Callable[[View], View]:
    """Decorate a view open to ``roles`` on a passkey session (:func:`refusal_page`)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            refused = refusal_page(roles)
            return refused if refused is not None else view(*args, **kwargs)

        return cast(View, guarded)

    return decorate
