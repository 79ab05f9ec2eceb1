"""Query strings read the same whatever bytes the client sent (issue 11, found by fuzzing).

WSGI servers hand ``QUERY_STRING`` over as sent, one latin-1 character per byte. Two things
went wrong with bytes a URI may not carry raw (RFC 3986):

- werkzeug decodes the query as strict UTF-8 whenever ``request.args``, ``request.values``
  or ``request.full_path`` is read: a raw byte that is not UTF-8 (``?next=\\xff``) raised
  UnicodeDecodeError in every view reading a parameter, Authlib's endpoints included;
- werkzeug's routing redirects (``""`` → ``/``) copy the query as is into ``Location``: a
  raw CR or LF made the header raise out of the app.

This middleware percent-escapes those bytes (controls, space, DEL, anything outside ASCII)
as the client should have, before anything reads the request. werkzeug then reads them as
it reads any escape: the text they encode when it is UTF-8 (raw « é » from an address bar
reads as « é »), else the escape kept as text (« %FF »), as if the client had sent it so.
"""

from __future__ import annotations

import re
from typing import Any

_UNSAFE = re.compile(r"[^\x21-\x7e]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    # A WSGI string holds bytes as latin-1 characters; anything wider is not a byte.
    raw = char.encode("latin-1") if ord(char) < 0x100 else char.encode("utf-8", "replace")
    return "".join(f"%{byte:02X}" for byte in raw)


def escaped_query(query: str) -> str:
    """``QUERY_STRING`` with every byte a URI may not carry raw percent-escaped."""
    return _UNSAFE.sub(_escape, query)


class EscapedQuery:
    """WSGI middleware: ``QUERY_STRING`` made of printable ASCII for everything behind it."""

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        query = environ.get("QUERY_STRING")
        if query and _UNSAFE.search(query):
            environ["QUERY_STRING"] = escaped_query(query)
        return self.wsgi_app(environ, start_response)
