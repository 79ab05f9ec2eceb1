"""The last way into an account can never be removed: one rule, asked by every route that
removes a passkey or a password (the user's own pages, the helpdesk, the command line)."""

from __future__ import annotations

LAST_WAY_IN = (
    "Impossible : le compte n'aurait plus aucun moyen de connexion (ni mot de passe, "
    "ni clé d'accès)."
)


def remaining(*, has_password: bool, passkeys: int) -> int:
    """How many independent ways in the account has: its password, each passkey."""
    return int(has_password) + max(passkeys, 0)


def may_remove_password(*, has_password: bool, passkeys: int, recovery_codes: int) -> bool:
    """« Supprimer mon mot de passe »: only with two passkeys, or one and unused recovery
    codes, so that losing one device never locks the employer out for good."""
    return has_password and (passkeys >= 2 or (passkeys >= 1 and recovery_codes >= 1))


def may_remove(
    *, has_password: bool, passkeys: int, passkeys_removed: int = 0, password_removed: bool = False
) -> bool:
    """Would the account keep at least one way in after this removal?"""
    left_password = has_password and not password_removed
    return remaining(has_password=left_password, passkeys=passkeys - passkeys_removed) > 0
