"""Company directories: from a SIRET to the establishment's details (the Kbis screen).

One small interface, ``Directory.lookup(siret)``, and three adapters:

- ``EmbeddedDirectory``: ``authserver/data/establishments.json``, the default for
  development, demos and tests (no network).
- ``RechercheEntreprisesDirectory``: the public « API Recherche d'entreprises » of the
  French administration (https://recherche-entreprises.api.gouv.fr, no key).
- ``SireneDirectory``: INSEE's API Sirene 3.11 (an API key from the INSEE portal).

``lookup`` returns ``None`` for an unknown SIRET and a closed establishment with
``active=False`` (the caller decides what to show); it raises ``DirectoryUnavailable``
when the service cannot answer: down, too slow, 5xx, 429, wrong key, or an answer
that is not the documented JSON.

Time bound of the HTTP adapters (the page must not hang): each attempt waits at most
``timeout`` per socket operation, a failed attempt (connection error, timeout, 5xx,
429; never another 4xx) is retried at most ``retries`` times after a short backoff,
and no attempt starts or goes on reading past ``total_timeout`` (7 s by default)
after the call. With the defaults the worst case is about 7 s: 3 s + 0.25 s +
3 s + 0.5 s, then the time left. A server that trickles its headers one byte at a
time could stretch this by at most one ``timeout``; the body is read in chunks
against the deadline.

No Flask here: the views call ``lookup`` and turn the outcome into a page.
"""

from __future__ import annotations

from authserver.establishments.directory.embedded import EmbeddedDirectory
from authserver.establishments.directory.model import (
    DEFAULT_EMBEDDED_PATH,
    DEMO_SIRET,
    DIRECTORY_KINDS,
    MAX_BODY_BYTES,
    NAF_LABELS,
    RECHERCHE_ENTREPRISES_URL,
    SIRENE_KEY_HEADER,
    SIRENE_URL,
    UNAVAILABLE_MESSAGE,
    UNKNOWN_MESSAGE,
    USER_AGENT,
    Directory,
    DirectoryUnavailable,
    Establishment,
    naf_label,
    normalize_naf,
)
from authserver.establishments.directory.recherche import RechercheEntreprisesDirectory
from authserver.establishments.directory.sirene import SireneDirectory

__all__ = [
    "DEFAULT_EMBEDDED_PATH",
    "DEMO_SIRET",
    "DIRECTORY_KINDS",
    "MAX_BODY_BYTES",
    "NAF_LABELS",
    "RECHERCHE_ENTREPRISES_URL",
    "SIRENE_KEY_HEADER",
    "SIRENE_URL",
    "UNAVAILABLE_MESSAGE",
    "UNKNOWN_MESSAGE",
    "USER_AGENT",
    "Directory",
    "DirectoryUnavailable",
    "EmbeddedDirectory",
    "Establishment",
    "RechercheEntreprisesDirectory",
    "SireneDirectory",
    "make_directory",
    "naf_label",
    "normalize_naf",
]


# --- configuration ----------------------------------------------------------------------------


def make_directory(
    kind: str, *, api_key: str | None = None, base_url: str | None = None
) -> Directory:
    """The directory named by AUTHSERVER_DIRECTORY: ``embedded`` (default),
    ``recherche-entreprises`` or ``sirene`` (which needs AUTHSERVER_SIRENE_API_KEY).
    ``base_url`` (AUTHSERVER_DIRECTORY_URL) replaces the public URL of an HTTP adapter."""
    kind = (kind or "embedded").strip().lower()
    if kind == "embedded":
        return EmbeddedDirectory()
    if kind == "recherche-entreprises":
        return RechercheEntreprisesDirectory(base_url or RECHERCHE_ENTREPRISES_URL)
    if kind == "sirene":
        if not api_key:
            raise ValueError(
                "AUTHSERVER_SIRENE_API_KEY is required with AUTHSERVER_DIRECTORY=sirene"
            )
        return SireneDirectory(api_key, base_url or SIRENE_URL)
    raise ValueError(
        f"unknown directory {kind!r} (AUTHSERVER_DIRECTORY): expected one of "
        + ", ".join(DIRECTORY_KINDS)
    )
