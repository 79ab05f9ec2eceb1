"""SIRET normalization, the Luhn key and La Poste's rule."""

from __future__ import annotations

import pytest

from authserver.establishments.siret import (
    MESSAGE_LENGTH,
    InvalidSiret,
    format_siret,
    is_valid,
    key_valid,
    luhn_valid,
    normalize,
    siren_of,
    validate,
)

DEMO = "69279251800015"  # first entry of the embedded directory
LA_POSTE_BY_SUM = "35600000052135"  # digits sum to 30, Luhn fails: valid by La Poste's rule


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (DEMO, DEMO),
        ("69279251800023", "69279251800023"),  # second establishment of the same company
        ("73282932000074", "73282932000074"),  # python-stdnum's example
        ("692 792 518 00015", DEMO),
        ("  69279251800015\t", DEMO),
        ("692\u00a0792\u00a0518\u00a000015", DEMO),  # no-break spaces (pasted)
        ("692\u202f792\u202f518\u202f00015", DEMO),  # narrow no-break spaces
        ("692.792.518.00015", DEMO),
        ("692-792-518-00015", DEMO),
        ("692 792 518 - 00015", DEMO),
        # Invisible characters a copy from a PDF or a web page brings along.
        ("692\u200b792\u200b518\u200b00015", DEMO),  # zero-width space
        ("\ufeff69279251800015\u2060", DEMO),  # BOM, word joiner
        ("692\u200c792\u200d51800015", DEMO),  # zero-width non-joiner, joiner
        # Wide spacing, as pasted from some documents: up to the field's 40 characters.
        ("6 9 2 7 9 2 5 1 8 0 0 0 1 5", DEMO),
        ("692   792   518   00015".ljust(40), DEMO),
        # La Poste (SIREN 356000000): the sum of the digits is a multiple of 5...
        (LA_POSTE_BY_SUM, LA_POSTE_BY_SUM),
        ("35600000074082", "35600000074082"),
        ("356 000 000 52135", LA_POSTE_BY_SUM),
        # ...except its head office, numbered with an ordinary Luhn key.
        ("35600000000048", "35600000000048"),
    ],
)
def test_valid(value: str, expected: str) -> None:
    assert validate(value) == expected
    assert is_valid(value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("69279251800016", "key"),  # last digit changed
        ("69279251900015", "key"),  # a digit of the SIREN changed
        ("69279251800051", "key"),  # two digits swapped
        # The SIRET's Luhn key is right but the SIREN's own key is not (stdnum's
        # siren.validate): SIREN 123456789, 692792519 and 111111111 are invalid.
        ("12345678900007", "key"),
        ("69279251900005", "key"),
        ("111 111 111 00006", "key"),
        # Longer than the field allows (41 characters), even if only spaces are added.
        ("692 792 518 00015".ljust(41), "length"),
        ("6927925180001", "length"),  # 13 digits
        ("692792518000150", "length"),  # 15 digits
        ("692792518", "length"),  # a SIREN, not a SIRET
        ("6927925180001A", "digits"),
        ("ABCDEFGHIJKLMN", "digits"),
        ("692_792_518_00015", "digits"),
        ("69279251800015.", "digits"),  # a dot not between digits
        ("٦٩٢٧٩٢٥١٨٠٠٠١٥", "digits"),  # Arabic-Indic digits
        # La Poste: the sum of the digits is not a multiple of 5...
        ("35600000052136", "key"),
        # ...even when the plain Luhn key would accept the number.
        ("35600000000113", "key"),
        ("35600000000049", "key"),  # head office with a digit changed
    ],
)
def test_invalid(value: str, reason: str) -> None:
    with pytest.raises(InvalidSiret) as caught:
        validate(value)
    assert caught.value.reason == reason
    assert str(caught.value) == caught.value.message
    assert not is_valid(value)


def test_la_poste_exception_is_needed() -> None:
    assert not luhn_valid(LA_POSTE_BY_SUM)
    assert key_valid(LA_POSTE_BY_SUM)
    assert luhn_valid("356000000")  # La Poste's SIREN itself has an ordinary key
    assert luhn_valid("35600000000113") and not key_valid("35600000000113")


def test_messages_are_french_sentences() -> None:
    with pytest.raises(InvalidSiret, match=r"^Le numéro SIRET est composé de 14 chiffres\.$"):
        validate("123")
    assert MESSAGE_LENGTH == "Le numéro SIRET est composé de 14 chiffres."
    for value in ("", "12345678901234", "1234567890123A"):
        with pytest.raises(InvalidSiret) as caught:
            validate(value)
        message = str(caught.value)
        assert message[0].isupper() and message.endswith(".")
        assert "SIRET" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1 2\u00a03", "123"),
        ("1.2-3", "123"),
        ("a-b", "a-b"),  # separators are dropped between digits only
        ("12 -", "12-"),
    ],
)
def test_normalize(value: str, expected: str) -> None:
    assert normalize(value) == expected


def test_siren_and_display() -> None:
    assert siren_of("692 792 518 00015") == "692792518"
    assert siren_of(LA_POSTE_BY_SUM) == "356000000"
    with pytest.raises(InvalidSiret):
        siren_of("69279251800016")
    assert format_siret(DEMO) == "692 792 518 00015"


@pytest.mark.parametrize(
    ("digits", "valid"),
    [("0", True), ("18", True), ("79927398713", True), ("79927398710", False), ("", True)],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


def test_siren_key_is_checked_like_python_stdnum() -> None:
    # Each of these passes the 14-digit Luhn key: only the SIREN's key rejects it.
    for value in ("12345678900007", "69279251900005", "11111111100006"):
        assert luhn_valid(value) and not luhn_valid(value[:9])
        assert not key_valid(value)
    # La Poste: its SIREN has an ordinary valid key, so its establishments stay valid.
    assert luhn_valid(LA_POSTE_BY_SUM[:9])
    assert key_valid(LA_POSTE_BY_SUM) and key_valid("35600000000048")


def test_the_form_field_allows_what_the_server_accepts() -> None:
    from pathlib import Path

    from authserver.establishments.siret import SIRET_INPUT_MAX

    template = Path(__file__).resolve().parents[2] / "templates/establishments/siret.html"
    assert 'maxlength="{{ siret_input_max }}"' in template.read_text()
    assert validate("6 9 2 7 9 2 5 1 8 0 0 0 1 5".center(SIRET_INPUT_MAX)) == DEMO
