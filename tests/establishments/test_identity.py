"""Online identity verification adapters: the hosted HMAC protocol's callback checks (bad
input is a 400 French page, never a 500) and the abandoned-check fallback."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask

from authserver.establishments.identity import HostedVerifier, InvalidCallback
from tests.conftest import Actions
from tests.establishments.test_flow import (
    active_establishments,
    attach,
    certification_rows,
    choose_certification,
    employer,
    unescape,
    user_row,
)
from tests.services import SMTPServer

SECRET = "hosted-shared-secret-0123456789"
INVALID_PAGE = "Le retour du service de vérification d'identité n'est pas valide ou a expiré."


def _mac(*parts: str) -> str:
    return hmac.new(SECRET.encode(), "|".join(parts).encode(), hashlib.sha256).hexdigest()


@pytest.fixture
def hosted_app(make_app) -> Flask:
    return make_app(
        AUTHSERVER_IDENTITY_PROVIDER="hosted",
        AUTHSERVER_IDENTITY_URL="https://verify.example.test",
        AUTHSERVER_IDENTITY_SECRET=SECRET,
    )


def _start_hosted(app: Flask, smtp: SMTPServer) -> tuple[Actions, str]:
    actions = employer(app, smtp, "martin.dupont")
    attach(actions, active_establishments()[0].siret)
    response = choose_certification(actions, "online")
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    assert (target.scheme, target.netloc, target.path) == (
        "https",
        "verify.example.test",
        "/verify",
    )
    query = parse_qs(target.query)
    reference = query["reference"][0]
    # The redirect is signed too.
    expected = _mac(reference, query["return_url"][0], query["ts"][0])
    assert query["sig"][0] == expected
    return actions, reference


def _callback(actions: Actions, **fields: str):
    return actions.client.get("/certification/callback?" + urlencode(fields))


def test_hosted_signed_callback_certifies(hosted_app: Flask, smtp: SMTPServer) -> None:
    actions, reference = _start_hosted(hosted_app, smtp)
    ts = str(int(time.time()))
    response = _callback(
        actions, reference=reference, outcome="approved", ts=ts, sig=_mac(reference, "approved", ts)
    )
    assert response.status_code == 302
    assert user_row(hosted_app, "martin.dupont").certified_at is not None


@pytest.mark.parametrize(
    "tamper",
    [
        {"ts": "²"},  # str.isdigit() is True, int() fails
        {"ts": "١٧٠٠٠٠٠٠٠٠"},  # Arabic-Indic digits
        {"ts": "-1"},
        {"ts": "9" * 40},
        {"sig": "é" * 64},  # non-ASCII: hmac.compare_digest would raise TypeError
        {"sig": "Z" * 64},
        {"sig": ""},
        {"reference": "réf"},
        {"reference": "x" * 65},
        {"outcome": "maybe"},
        {"sig": "0" * 64},  # well-formed, wrong
        {"ts": "1000"},  # well-formed, expired
    ],
)
def test_hosted_bad_callback_is_a_400_french_page(
    hosted_app: Flask, smtp: SMTPServer, tamper: dict[str, str]
) -> None:
    actions, reference = _start_hosted(hosted_app, smtp)
    ts = str(int(time.time()))
    fields = {
        "reference": reference,
        "outcome": "approved",
        "ts": ts,
        "sig": _mac(reference, "approved", ts),
        **tamper,
    }
    response = _callback(actions, **fields)
    assert response.status_code == 400
    html = unescape(response.get_data(as_text=True))
    assert INVALID_PAGE in html
    assert "Traceback" not in html
    assert user_row(hosted_app, "martin.dupont").certified_at is None
    assert [r.status for r in certification_rows(hosted_app, "martin.dupont")] == ["pending"]


@pytest.mark.parametrize(
    "args",
    [
        {"reference": "abc", "outcome": "approved", "ts": "²", "sig": "0" * 64},
        {"reference": "abc", "outcome": "approved", "ts": "1", "sig": "é"},
        {"reference": "abc", "outcome": "approved", "ts": "1", "sig": "\x00" * 64},
    ],
)
def test_hosted_read_callback_raises_invalid_callback_only(args: dict[str, str]) -> None:
    with pytest.raises(InvalidCallback):
        HostedVerifier("https://verify.example.test", SECRET).read_callback(args)
