"""Answer only the host names the server is configured for (DNS rebinding, issue 11).

A web page of ``evil.example`` whose name an attacker re-points at 127.0.0.1 reads our
answers as its own origin: the development mailbox, the metrics, any page. The browser
sends ``Host: evil.example``; refusing names we do not serve ends the attack.

Allowed: the base URL's host and ``AUTHSERVER_ALLOWED_HOSTS`` (``.example.fr`` allows its
subdomains), any port; loopback names (``localhost``, 127.0.0.1, ``[::1]``) only from this
machine's own clients, so that local tools and probes keep working. ``/healthz`` and
``/readyz`` answer every name: orchestrators probe by address and they reveal nothing.

A ``Host`` werkzeug cannot read (an empty or out-of-range port, odd characters, an empty
label) is refused too, whatever its name and path: werkzeug takes it for no host at all
(absolute URLs then come out as ``http:///…``, which Authlib raised on) or cannot route it
(the error page then renders without its layout). Found by fuzzing (issue 11).

Plain WSGI, wrapped outermost: the fast paths answered before Flask are covered too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from authserver.config import is_loopback_host
from authserver.errors import JSON_PREFIXES

PROBES = ("/healthz", "/readyz")

_BODY_JSON = (
    b'{"error":"invalid_host","message":"Ce serveur ne r\\u00e9pond pas \\u00e0 ce nom."}\n'
)
_BODY_HTML = (
    '<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>Erreur 400</title>'
    "</head><body><h1>Erreur 400</h1><p>Ce serveur ne répond pas à ce nom d'hôte.</p>"
    "</body></html>"
).encode()


# The grammar werkzeug reads a Host with (``werkzeug.sansio.utils.host_is_trusted``): a name
# or IPv4 address of [a-z0-9.-], or a bracketed IPv6 address, then an optional port 1-65535.
_READABLE = re.compile(
    r"(?:[a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::([1-9][0-9]{0,4}))?", re.ASCII | re.IGNORECASE
)


@functools.lru_cache(maxsize=256)  # every request asks; a server has few names
def readable_host(header: str) -> bool:
    """A ``Host`` value werkzeug takes as a host and can route (its URL map encodes it as
    IDNA, which refuses empty and over-long labels)."""
    match = _READABLE.fullmatch(header)
    if match is None or (match.group(1) is not None and int(match.group(1)) > 65535):
        return False
    try:
        header.encode("idna")
    except UnicodeError:
        return False
    return True


def hostname_of(header: str) -> str:
    """``Host`` header → lowercased name without port or IPv6 brackets ("" if malformed)."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        return header[1:end] if end > 0 else ""
    name = header.rsplit(":", 1)[0] if header.count(":") == 1 else header
    return name.rstrip(".")


class HostPolicy:
    def __init__(self, allowed: Iterable[str]) -> None:
        names = [name.lower() for name in allowed]
        self.exact = frozenset(name for name in names if not name.startswith("."))
        self.suffixes = tuple(name for name in names if name.startswith("."))

    def allows(self, host_header: str | None, peer: str | None) -> bool:
        if host_header is None:
            return True  # HTTP/1.0 without Host: no name a rebinding page could have set
        name = hostname_of(host_header)
        if name in self.exact or (self.suffixes and name.endswith(self.suffixes)):
            return True
        return is_loopback_host(name) and is_loopback_host(peer or "") if name else False


class HostCheck:
    """WSGI middleware: 400 for a ``Host`` the policy refuses, before anything else runs."""

    def __init__(self, wsgi_app: Any, policy: HostPolicy) -> None:
        self.wsgi_app = wsgi_app
        self.policy = policy

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        host = environ.get("HTTP_HOST")
        if (host is None or readable_host(host)) and (
            self.policy.allows(host, environ.get("REMOTE_ADDR"))
            or environ.get("PATH_INFO") in PROBES
        ):
            return self.wsgi_app(environ, start_response)
        if environ.get("PATH_INFO", "").startswith(JSON_PREFIXES):
            content_type, body = "application/json", _BODY_JSON
        else:
            content_type, body = "text/html; charset=utf-8", _BODY_HTML
        start_response(
            "400 BAD REQUEST",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ],
        )
        return [body]
