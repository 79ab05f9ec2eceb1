"""Does a successful login alert its owner? One rule, for every login entry point.

A login from a browser the account did not know is the moment an intruder with the password
or a stolen passkey shows up, so its owner gets an e-mail (« Ce n'était pas moi ») and the
security team an event. The account's very first browser is no news: nothing to alert, and
the login counts as trusted (webauthn/review.py). Pure logic, no I/O: the password view, the
passkey view and the passkey login fast path all ask ``judge_device`` (through
``sessions.login_core.decide``) with the facts they read.
"""

from __future__ import annotations

from dataclasses import dataclass

# The login event's reason of a successful login from a browser the account did not know
# (webauthn/review.py counts logins without it as trusted).
NEW_DEVICE = "new_device"
# The login event's reason of the login that ends a recovery (« J'ai perdu ma clé d'accès »):
# a new passkey was enrolled on the strength of the mailbox alone.
RECOVERY = "recovery"


@dataclass(frozen=True)
class DeviceVerdict:
    new_device: bool  # record this browser as a device of the account
    alert: bool  # e-mail the owner, raise a security event
    reason: str  # the login event's reason ("" for a trusted login)


def judge_device(
    *, known: bool, account_has_devices: bool, recovery: bool = False
) -> DeviceVerdict:
    """``known``: this browser's device cookie is one of the account's devices;
    ``account_has_devices``: the account has logged in from some browser before;
    ``recovery``: the login ends an account recovery, which always alerts (whoever read the
    mailbox now holds a passkey), from a known browser too."""
    if recovery:
        return DeviceVerdict(new_device=not known, alert=True, reason=RECOVERY)
    if known:
        return DeviceVerdict(new_device=False, alert=False, reason="")
    alert = account_has_devices
    return DeviceVerdict(new_device=True, alert=alert, reason=NEW_DEVICE if alert else "")
