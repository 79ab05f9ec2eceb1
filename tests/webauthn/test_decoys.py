"""Username-first passkey options say nothing about the account (issue 11).

For an unknown identifiant, or an account without passkeys, ``allowCredentials`` lists decoy
credentials: stable per identifiant, shaped like real ones, as many as a real account would
have. The answers of the three cases are compared field by field, header by header.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from flask import Flask
from webauthn.helpers import base64url_to_bytes

from tests.softauthn import SoftAuthenticator
from tests.webauthn.test_api import (
    OTHER,
    USER,
    assert_json_error,
    authenticator,
    create_accounts,
    enroll,
    new_browser,
)
from tests.webauthn.test_fastpath import Counted, answer

# What browsers report (getTransports(): sorted, from this set), and credential id sizes seen
# from the usual passkey providers and security keys.
TRANSPORTS = {"ble", "cable", "hybrid", "internal", "nfc", "smart-card", "usb"}
ID_LENGTHS = {16, 20, 32, 64}


def options_answer(app: Flask, username: str) -> Any:
    """A fresh browser's options call (so each sets the ceremony cookie)."""
    return app.test_client().post("/webauthn/login/options", json={"username": username})


def allowed(response: Any) -> list[dict[str, Any]]:
    return response.get_json()["allowCredentials"]


def shape(response: Any) -> dict[str, Any]:
    """Everything but the values that differ between any two ceremonies or accounts."""
    seen = answer(response)
    body = seen.pop("json")
    seen["fields"] = {key: type(value).__name__ for key, value in body.items()}
    seen["constants"] = {
        key: value for key, value in body.items() if key not in ("challenge", "allowCredentials")
    }
    seen["descriptor fields"] = {
        tuple(sorted((key, type(value).__name__) for key, value in d.items()))
        for d in body["allowCredentials"]
    }
    return seen


@pytest.fixture
def auth() -> SoftAuthenticator:
    return authenticator()


@pytest.fixture
def site(app: Flask, smtp, auth: SoftAuthenticator) -> Flask:
    """martin.dupont with one passkey, claire.martin without any."""
    create_accounts(app, smtp, USER, OTHER)
    enroll(app, smtp, auth, USER, create=False)
    return app


def test_unknown_and_passkeyless_answers_look_like_a_real_one(site):
    real = options_answer(site, USER)
    assert real.status_code == 200
    for name in (OTHER, "personne.inconnue", "Quelqu.Un@Ailleurs.fr"):
        # The fast path hands every username-first call to the view: one code answers all.
        with Counted(site) as counted:
            decoy = options_answer(site, name)
        assert (counted.answered, counted.handed) == (0, 1)
        assert shape(decoy) == shape(real), name
        for descriptor in allowed(decoy):
            assert descriptor["type"] == "public-key"
            assert len(base64url_to_bytes(descriptor["id"])) in ID_LENGTHS
            transports = descriptor["transports"]
            assert transports and set(transports) <= TRANSPORTS
            assert transports == sorted(transports)  # as browsers report them
        # The same list at every call (a fresh random one would give the game away), whatever
        # the case typed ...
        assert allowed(options_answer(site, name)) == allowed(decoy)
        assert allowed(options_answer(site, name.upper())) == allowed(decoy)
    # ... and a different one for each identifiant.
    assert allowed(options_answer(site, "personne.inconnue")) != allowed(
        options_answer(site, "quelqu.un.autre")
    )
    assert allowed(options_answer(site, OTHER)) != allowed(options_answer(site, "claire.martin2"))


def test_decoy_counts_and_shapes_follow_real_accounts(site):
    """Real accounts mostly have one passkey, some two or three: so do the decoys."""
    counts: Counter[int] = Counter()
    shapes: Counter[tuple[int, tuple[str, ...]]] = Counter()
    for i in range(60):
        descriptors = allowed(options_answer(site, f"inconnu.{i:02d}"))
        counts[len(descriptors)] += 1
        for d in descriptors:
            shapes[(len(base64url_to_bytes(d["id"])), tuple(d["transports"]))] += 1
    assert set(counts) <= {1, 2, 3}, counts
    assert counts.most_common(1)[0][0] == 1, counts
    assert counts[2] + counts[3] >= 3, counts  # not always one: that would mark decoys
    assert len(shapes) >= 2, shapes  # not one fixed shape either


def test_a_decoy_ceremony_is_an_ordinary_refusal(site, auth):
    for name in ("personne.inconnue", OTHER):
        browser = new_browser(site, None)
        options = browser.login_options(name)
        response = browser.login_verify(
            auth.assert_(options, credential_id=auth.credential().id_b64)
        )
        assert_json_error(response, 401, "unknown_credential")
