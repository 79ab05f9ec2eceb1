"""One password attempt, wherever a password is typed: the login page and « Confirmez votre
identité » (issue 11: the re-authentication could be brute-forced, 40 guesses in 3 s).

Both count the attempt in the same throttle before Argon2 runs (per IP, per account for
unknown browsers, per known browser), refund it when the password was right, record a login
event for every refusal and e-mail the owner when the account's limit is reached. The
callers only map the result to their pages; the successful login or re-authentication is
theirs to record.
"""

from __future__ import annotations

from dataclasses import dataclass

from authserver.accounts import service
from authserver.accounts.passwords import Verification
from authserver.accounts.validation import attempt_label, username_key
from authserver.alerts import devices, events, notify
from authserver.metrics import THROTTLED
from authserver.models import User
from authserver.throttle import Reservation, throttle
from authserver.web import client_ip

# Login event reasons of a re-authentication (method ``password``): the security console and
# the detector see them with the logins; « last trusted login » rules leave them out.
REAUTH = "reauth"


# The environ key of an attempt the password login fast path began and handed over
# (password_fastpath.py): its throttle reservation and its hash check, already spent.
PRECHECKED = "authserver.password.prechecked"


@dataclass(frozen=True)
class Prechecked:
    """What the fast path spent on this request's attempt before handing it to the view:
    the throttle's reservation and, when it was allowed, the password checked against
    ``password_hash`` (the view checks again if the account's changed meanwhile)."""

    username_key: str
    user_id: int
    reservation: Reservation
    password_hash: str | None = None
    verification: Verification | None = None


def _matching(found: object, key: str, user: User | None) -> Prechecked | None:
    """``found`` if it is this attempt's (same identifiant, same account)."""
    if not isinstance(found, Prechecked) or user is None:
        return None
    if found.username_key != key or found.user_id != user.id:
        return None
    return found


@dataclass(frozen=True)
class Attempt:
    outcome: service.LoginOutcome | None  # None: throttled, the password was not checked
    user: User | None
    retry_after: int = 0

    @property
    def throttled(self) -> bool:
        return self.outcome is None


def attempt(
    username: str,
    password: str,
    *,
    user: User | None,
    context: str = "login",
    prechecked: object = None,
) -> Attempt:
    """Check ``password`` for the account of ``username`` (``user``, None if unknown).

    ``context`` is ``"login"`` or ``REAUTH``: the re-authentication's events carry it in
    their reason. ``prechecked``: what the password login fast path already spent on this
    attempt (the request's ``PRECHECKED``), used when it is this attempt's. The caller
    commits.
    """
    prefix = "" if context == "login" else f"{context}_"
    label = attempt_label(username)
    key = username_key(username)

    def refused(outcome: str, reason: str) -> None:
        events.record_login(
            method="password",
            outcome=outcome,
            reason=f"{prefix}{reason}",
            user=user,
            username_attempt=label,
        )

    device = devices.known_device(user.id) if user else None
    device_key = device.cookie_hash.hex() if device else None

    pre = _matching(prechecked, key, user)
    # Counted before the (slow) password check: parallel guesses cannot all pass.
    if pre is not None:
        reservation = pre.reservation
    else:
        reservation = throttle().reserve_login(key, client_ip(), device_key)
    if not reservation.allowed:
        THROTTLED.labels(context).inc()
        refused("throttled", "throttled")
        return Attempt(None, user, reservation.retry_after)

    verification = None
    if pre is not None and user is not None and pre.password_hash == user.password_hash:
        verification = pre.verification
    result = service.check_password(user, password, verification)
    if result.outcome is service.LoginOutcome.BAD_CREDENTIALS:
        if reservation.reached and user is not None:
            notify.account_throttled(user)
        refused("failure", "bad_credentials")
        return Attempt(result.outcome, user)

    # The password was right: not a failed attempt.
    logged_in = result.outcome is service.LoginOutcome.OK
    throttle().password_right(reservation, key, device_key, logged_in=logged_in)
    if not logged_in:
        events.record_login(
            method="password",
            outcome="failure",
            reason=f"{prefix}{result.outcome.value}",
            user=user,
        )
    return Attempt(result.outcome, user)
