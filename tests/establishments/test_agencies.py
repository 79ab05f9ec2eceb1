"""The agency table of « Mon accompagnement »: département of a postal code, the file's checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authserver.config import ConfigError, load_settings
from authserver.establishments.agencies import (
    DEFAULT_PATH,
    AgencyContact,
    departement_of,
    load_agency_table,
)

FALLBACK = AgencyContact(name="", phone="01 56 56 11 06", email="entreprise@francetravail.example")


@pytest.mark.parametrize(
    ("postal_code", "departement"),
    [
        ("69002", "69"),
        ("01000", "01"),
        ("75008", "75"),
        (" 33800 ", "33"),
        ("20000", "2A"),  # Ajaccio
        ("20169", "2A"),  # Bonifacio
        ("20200", "2B"),  # Bastia
        ("20600", "2B"),  # Bastia too
        ("97400", "974"),  # Saint-Denis, La Réunion
        ("97110", "971"),  # Pointe-à-Pitre
        ("98800", "988"),  # Nouméa
        ("", None),
        ("6900", None),
        ("69 002", None),
        ("٦٩٠٠٢", None),  # not ASCII digits
    ],
)
def test_departement_of(postal_code: str, departement: str | None) -> None:
    assert departement_of(postal_code) == departement


def test_the_shipped_table_loads_and_falls_back() -> None:
    table = load_agency_table(None, FALLBACK)
    assert table.for_postal_code("75008").phone == "01 56 56 11 06"
    assert table.for_postal_code("75008").name == "France Travail Paris Saint-Pétersbourg"
    assert table.for_postal_code("20000").name == "France Travail Ajaccio"
    assert table.for_postal_code("20200").name == "France Travail Bastia"
    assert table.for_postal_code("26000") is FALLBACK
    assert table.for_postal_code(None) is FALLBACK
    assert table.for_postal_code("") is FALLBACK
    assert json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))["departements"]


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"departements": []}',
        '{"departements": {"99": {"phone": "x", "email": "y"}}}',
        '{"departements": {"69": {"phone": "04 00 00 00 00"}}}',
        '{"departements": {"69": {"phone": " ", "email": "a@b.example"}}}',
    ],
)
def test_a_bad_table_stops_the_server_naming_the_variable(
    make_app, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "agences.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError):
        load_agency_table(path, FALLBACK)
    with pytest.raises(ConfigError) as caught:
        make_app(AUTHSERVER_AGENCY_CONTACTS=str(path), AUTHSERVER_MAIL_WORKER="0")
    assert caught.value.variable == "AUTHSERVER_AGENCY_CONTACTS"


def test_a_missing_table_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "AUTHSERVER_INSTANCE_PATH": str(tmp_path),
                "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
                "AUTHSERVER_AGENCY_CONTACTS": str(tmp_path / "absent.json"),
            }
        )
    assert caught.value.variable == "AUTHSERVER_AGENCY_CONTACTS"


def test_a_bad_table_is_refused_when_the_settings_load(tmp_path: Path) -> None:
    """Before any worker builds the app: one line from `authserver serve`, no traceback."""
    path = tmp_path / "agences.json"
    path.write_text('{"departements": []}', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "AUTHSERVER_INSTANCE_PATH": str(tmp_path),
                "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
                "AUTHSERVER_AGENCY_CONTACTS": str(path),
            }
        )
    assert caught.value.variable == "AUTHSERVER_AGENCY_CONTACTS"
