"""Password policy (NIST SP 800-63B) and Argon2id hashing. No Flask, no I/O.

Policy: at least 12 characters, up to 256, any Unicode (NFKC-normalised before
hashing and checking, as 63B recommends), no composition rules; refused when it
is among the 30,000 most common passwords (the list shipped by the maintained
``zxcvbn`` package) or contains the identifiant or the e-mail's local part.
"""

from __future__ import annotations

import contextlib
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 256
CONTEXT_MIN = 3  # identifiants or local parts shorter than this are not searched for


def normalize(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.casefold() for word in FREQUENCY_LISTS["passwords"])


def policy_errors(password: str, *, username: str = "", email: str = "") -> list[str]:
    """Why this password is refused, in French; empty when it is acceptable."""
    password = normalize(password)
    length = len(password)
    if length < MIN_LENGTH:
        return [f"Le mot de passe doit contenir au moins {MIN_LENGTH} caractères."]
    if length > MAX_LENGTH:
        return [f"Le mot de passe ne doit pas dépasser {MAX_LENGTH} caractères."]
    folded = password.casefold()
    errors: list[str] = []
    if folded in common_passwords() or len(set(folded)) < 3:
        errors.append(
            "Ce mot de passe est trop courant : il figure dans les listes de mots de passe "
            "les plus utilisés ou divulgués. Choisissez-en un autre."
        )
    if len(username) >= CONTEXT_MIN and username.casefold() in folded:
        errors.append("Le mot de passe ne doit pas contenir votre identifiant.")
    local_part = email.split("@", 1)[0] if "@" in email else ""
    if len(local_part) >= CONTEXT_MIN and local_part.casefold() in folded:
        errors.append("Le mot de passe ne doit pas contenir votre adresse e-mail.")
    return errors


@dataclass(frozen=True)
class Verification:
    ok: bool
    needs_rehash: bool = False


class PasswordHashing:
    """Argon2id with configurable cost; verifying an unknown account costs the same."""

    def __init__(self, *, memory_kib: int, time_cost: int, parallelism: int) -> None:
        self.hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        self._dummy = self.hasher.hash("dummy password for timing equality")

    def hash(self, password: str) -> str:
        return self.hasher.hash(normalize(password))

    def verify(self, stored: str | None, password: str) -> Verification:
        if not stored:
            self.dummy_verify(password)
            return Verification(False)
        try:
            self.hasher.verify(stored, normalize(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return Verification(False)
        return Verification(True, needs_rehash=self.hasher.check_needs_rehash(stored))

    def dummy_verify(self, password: str) -> None:
        with contextlib.suppress(VerificationError):
            self.hasher.verify(self._dummy, normalize(password))
