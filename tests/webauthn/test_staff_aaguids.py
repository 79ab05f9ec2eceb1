"""The optional AAGUID allow-list for staff (issue 14): AUTHSERVER_STAFF_AAGUIDS, checked
against the shipped FIDO metadata at start-up and at every staff registration."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from authserver import settings_of
from authserver.config import ConfigError, load_settings
from authserver.db import get_database
from authserver.models import WebAuthnCredential
from authserver.webauthn.providers import provider_name
from tests.alerts.console_helpers import add_user, client_as
from tests.conftest import csrf_of
from tests.softauthn import SoftAuthenticator

YUBIKEY = "cb69481e-8ff7-4039-93ec-0a2729a154a8"  # YubiKey 5 Series, in the FIDO metadata
OTHER = "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"  # Google Password Manager


def test_the_ids_are_real_metadata_entries() -> None:
    assert provider_name(YUBIKEY) and provider_name(OTHER)


@pytest.mark.parametrize(
    ("value", "message"),
    [("pas-un-uuid", "AAGUID invalide"), (str(uuid.UUID(int=7)), "inconnu des métadonnées")],
)
def test_bad_values_stop_the_server(tmp_path, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "AUTHSERVER_INSTANCE_PATH": str(tmp_path),
                "AUTHSERVER_SECRET_KEY": "k" * 32,
                "AUTHSERVER_STAFF_AAGUIDS": value,
            }
        )
    assert caught.value.variable == "AUTHSERVER_STAFF_AAGUIDS"
    assert message in caught.value.reason


def _register(app, client, aaguid: str):
    settings = settings_of(app)
    auth = SoftAuthenticator(
        rp_id=settings.rp_id, origin=settings.origins[0], aaguid=uuid.UUID(aaguid).bytes
    )
    headers = {"X-CSRFToken": csrf_of(client.get("/account/passkeys").get_data(as_text=True))}
    options = client.post("/webauthn/register/options", json={}, headers=headers)
    return client.post(
        "/webauthn/register/verify",
        json={"credential": auth.register(options.get_json())},
        headers=headers,
    )


def _count(app) -> int:
    with get_database(app).session_scope() as session:
        return session.scalar(select(func.count()).select_from(WebAuthnCredential))


def test_staff_enrol_only_allowed_models_employers_any(make_app, smtp) -> None:
    app = make_app(AUTHSERVER_STAFF_AAGUIDS=f" {YUBIKEY.upper()} ,{YUBIKEY}")
    assert settings_of(app).staff_aaguids == (YUBIKEY,)
    add_user(app, "agent.securite", role="security")
    staff = client_as(app, smtp, "agent.securite", passkey=False)
    refused = _register(app, staff, OTHER)
    assert refused.status_code == 403
    assert refused.get_json()["error"] == "authenticator_not_allowed"
    assert "clé de sécurité fournie par votre service" in refused.get_json()["message"]
    assert _count(app) == 0
    assert _register(app, staff, YUBIKEY).status_code == 200
    add_user(app, "emma.employeur")
    employer = client_as(app, smtp, "emma.employeur", passkey=False)
    assert _register(app, employer, OTHER).status_code == 200
    assert _count(app) == 2


def test_without_the_setting_staff_enrol_anything(app, smtp) -> None:
    add_user(app, "agent.conseil", role="counselor")
    staff = client_as(app, smtp, "agent.conseil", passkey=False)
    assert _register(app, staff, OTHER).status_code == 200
