"""The facts of a login the fast paths read in one statement, and the decision made of them.

The passkey and the password login fast paths (webauthn/fastpath.py,
accounts/password_fastpath.py) each read a login in one prepared statement: each statement
costs more than the rows it reads. Both end with the same columns, added here, and hand them
to ``decide_row``: what a login reads about the browser and the account beyond its own
credential is stated once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, exists, select

from authserver.alerts import devices
from authserver.models import CertificationRequest, Device, Membership, User
from authserver.sessions import login_core

_USERS = User.__table__
_DEVICES = Device.__table__
_ANY_DEVICE = _DEVICES.alias("any_device")
_MEMBERSHIPS = Membership.__table__
_CERTIFICATIONS = CertificationRequest.__table__
FACTS = 7  # the columns ``with_facts`` adds, last in the row


def with_facts(statement: Select[Any]) -> Select[Any]:
    """``statement`` (which reads ``users``) with this browser's device row for the account
    (NULL: a new device; bound parameter ``cookie``: its cookie's hash), whether the account
    has any device (its first browser does not alert), and what the landing needs
    (login_core.Account): the e-mail, the membership's status (one per user) and whether a
    certification was ever asked."""
    return statement.outerjoin(
        _DEVICES,
        and_(_DEVICES.c.user_id == _USERS.c.id, _DEVICES.c.cookie_hash == bindparam("cookie")),
    ).add_columns(
        _DEVICES.c.id,
        _DEVICES.c.last_seen_at,
        _DEVICES.c.last_ip,
        exists().where(_ANY_DEVICE.c.user_id == _USERS.c.id),
        _USERS.c.email,
        select(_MEMBERSHIPS.c.status)
        .where(_MEMBERSHIPS.c.user_id == _USERS.c.id)
        .scalar_subquery(),
        exists().where(_CERTIFICATIONS.c.user_id == _USERS.c.id),
    )


def decide_row(
    method: str,
    *,
    user_id: int,
    username: str,
    role: str,
    certified_at: datetime | None,
    facts: Sequence[Any],
) -> tuple[login_core.Account, devices.KnownDevice | None, login_core.LoginDecision]:
    """``login_core.decide`` for a row read with ``with_facts`` (``facts``: its last
    ``FACTS`` columns)."""
    device_id, last_seen_at, last_ip, has_devices, email, status, certification_asked = facts
    account = login_core.Account(
        user_id=user_id,
        username=username,
        email=email,
        role=role,
        membership_status=status,
        certified=certified_at is not None,
        certification_asked=lambda: True if certification_asked else None,
    )
    known = None
    if device_id is not None:
        known = devices.KnownDevice(device_id, last_seen_at, last_ip)
    decision = login_core.decide(
        method, account, known=known, account_has_devices=bool(has_devices)
    )
    return account, known, decision
