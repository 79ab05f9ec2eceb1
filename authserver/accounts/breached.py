"""Breached passwords (ASVS 6.2.12), behind an adapter: is this password in known leaks?

The policy (passwords.py) refuses the 30,000 most common passwords, offline. This adds the
whole corpus of Have I Been Pwned's « Pwned Passwords » (close to a billion leaked
passwords) through its k-anonymity range API: only the first 5 hex digits of the password's
SHA-1 leave the server, and the answer lists every leaked hash with that prefix (padded with
decoys, ``Add-Padding: true``), so the service never learns the password nor whether it
matched.

Adapters, chosen by AUTHSERVER_BREACHED_PASSWORDS:

- ``off`` (the default): no lookup (development, or no outbound network);
- ``pwnedpasswords``: ``AUTHSERVER_BREACHED_PASSWORDS_URL`` (by default
  https://api.pwnedpasswords.com; a mirror or a self-hosted copy of the range API).

A lookup that fails (unreachable, slow, a bad answer) lets the password through — the
offline policy still applies — and logs one line without the prefix: a leak service's outage
must not stop sign-ups and resets. No Flask here except ``check_field``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import urllib.error
import urllib.request
from typing import Protocol

log = logging.getLogger(__name__)

EXTENSION_KEY = "authserver.breached"
KINDS = ("off", "pwnedpasswords")
DEFAULT_URL = "https://api.pwnedpasswords.com"
TIMEOUT = 2.0
MAX_BODY = 2 * 1024 * 1024  # a range answer is ~30 KB; padding adds a little
USER_AGENT = "authserver (breached password check)"
_LINE = re.compile(r"([0-9A-F]{35}):(\d{1,12})")

MESSAGE = (
    "Ce mot de passe figure dans des fuites de données connues : des pirates l'essaieront en "
    "premier. Choisissez-en un autre."
)


class BreachedPasswords(Protocol):
    def times_seen(self, password: str) -> int | None:
        """How often the password appears in known leaks; None when the lookup failed."""


class Disabled:
    def times_seen(self, password: str) -> int | None:
        return None


class PwnedPasswords:
    """The Pwned Passwords range API (k-anonymity)."""

    def __init__(self, base_url: str = DEFAULT_URL, timeout: float = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._opener = urllib.request.build_opener()

    def times_seen(self, password: str) -> int | None:
        digest = hashlib.sha1(password.encode("utf-8", "surrogatepass")).hexdigest().upper()  # noqa: S324 (the API's own key; not a password hash we store)
        prefix, suffix = digest[:5], digest[5:]
        request = urllib.request.Request(  # noqa: S310 (an http(s) URL checked at start-up)
            f"{self.base_url}/range/{prefix}",
            headers={"Add-Padding": "true", "User-Agent": USER_AGENT},
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                body = answer.read(MAX_BODY + 1)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            log.warning("breached password lookup failed: %s", type(exc).__name__)
            return None
        if len(body) > MAX_BODY:
            log.warning("breached password lookup failed: answer too large")
            return None
        for line in body.decode("ascii", "replace").splitlines():
            match = _LINE.fullmatch(line.strip())
            if match and match.group(1) == suffix:
                return int(match.group(2))  # 0: a padding decoy
        return 0


def build(kind: str, url: str | None) -> BreachedPasswords:
    if kind == "pwnedpasswords":
        return PwnedPasswords(url or DEFAULT_URL)
    return Disabled()


def check_field(field: object, password: str) -> bool:
    """Flask glue for the forms' views: add the refusal to ``field``; True when accepted."""
    from flask import current_app

    checker: BreachedPasswords = current_app.extensions[EXTENSION_KEY]
    seen = checker.times_seen(password)
    if seen:
        field.errors = [*field.errors, MESSAGE]  # type: ignore[attr-defined]
        return False
    return True
