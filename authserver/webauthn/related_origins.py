"""``/.well-known/webauthn`` (WebAuthn Level 3 « related origin requests »).

A sibling portal origin (another host of the portal under a different domain) may use the
passkeys registered for our RP ID if the RP ID's host lists it here: browsers fetch
``https://<rp_id>/.well-known/webauthn`` and accept ``{"origins": [...]}``. The list is the
one the server already accepts in client data (``AUTHSERVER_ORIGINS``): one setting, so an
origin can never be announced to browsers and refused by our own check, or the reverse.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from authserver.web import settings

bp = Blueprint("webauthn_related_origins", __name__)

# Browsers fetch it once per ceremony from a related origin: a short cache keeps a change of
# AUTHSERVER_ORIGINS visible within the hour.
CACHE = "public, max-age=3600"


def document(origins: tuple[str, ...]) -> dict[str, list[str]]:
    """The well-known document for these accepted origins (order kept, duplicates dropped)."""
    return {"origins": list(dict.fromkeys(origins))}


@bp.get("/.well-known/webauthn")
def well_known() -> Response:
    response = jsonify(document(settings().origins))
    response.headers["Cache-Control"] = CACHE
    return response
