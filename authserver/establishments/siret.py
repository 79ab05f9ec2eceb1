"""SIRET numbers: normalization and the check key. Pure logic, no I/O.

A SIRET is 14 digits: the company's SIREN (9 digits) followed by the
establishment's NIC (5 digits). Its last digit is a Luhn key computed on all
14 digits, and the SIREN carries its own Luhn key (its 9th digit): both are
checked, as python-stdnum's ``stdnum.fr.siret.validate`` does (it ends with
``siren.validate(number[:9])``).

Known exception: La Poste (SIREN 356000000) numbered more establishments than a
Luhn key allows, so INSEE checks its SIRETs differently: the sum of the 14
digits must be a multiple of 5. Its head office, 356 000 000 00048, was
numbered before and carries an ordinary Luhn key (python-stdnum's
``stdnum.fr.siret`` applies the same two rules). La Poste's SIREN itself,
356 000 000, has an ordinary valid key, so the SIREN check applies to it too.
"""

from __future__ import annotations

import re

SIRET_LENGTH = 14
# The longest input considered (the form field's maxlength too): 14 digits with generous
# separators ("692 792 518 00015" is 17; "6 9 2 7 9 2 5 1 8 0 0 0 1 5" is 27).
SIRET_INPUT_MAX = 40
SIREN_LENGTH = 9
LA_POSTE_SIREN = "356000000"
LA_POSTE_HEAD_OFFICE = "35600000000048"

MESSAGE_EMPTY = "Veuillez saisir le numéro SIRET de votre établissement."
MESSAGE_DIGITS = "Le numéro SIRET ne contient que des chiffres."
MESSAGE_LENGTH = "Le numéro SIRET est composé de 14 chiffres."
MESSAGE_KEY = (
    "Ce numéro SIRET n'est pas valide : vérifiez les 14 chiffres "
    "(ils figurent sur votre extrait Kbis ou vos fiches de paie)."
)

# Spaces people type or paste: ordinary, tab, no-break (U+00A0), narrow no-break (U+202F),
# figure space (U+2007), and the invisible ones a copy from a PDF or a web page brings along
# (zero-width space, non-joiner, joiner, word joiner, BOM): ``\s`` does not match those.
_SPACES = re.compile(r"[\s\u00a0\u202f\u2007\u200b\u200c\u200d\u2060\ufeff]+")
# A dot or dash (hyphen, non-breaking hyphen, en dash) used as a group separator.
_SEPARATOR = re.compile(r"(?<=\d)[.\-\u2010\u2011\u2013](?=\d)")


class InvalidSiret(ValueError):
    """The value is not a valid SIRET. ``str(exc)`` is the French message for the user.

    ``reason`` says which check failed: ``"empty"``, ``"digits"``, ``"length"`` or ``"key"``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


def normalize(value: str) -> str:
    """Drop spaces (also non-breaking ones) and dots or dashes between digits.

    ``"356 000 000 00048"``, ``"356.000.000.00048"`` and ``"356-000-000-00048"``
    all give ``"35600000000048"``. Anything else is kept, for ``validate`` to reject.
    """
    compact = _SPACES.sub("", value)
    return _SEPARATOR.sub("", compact)


def luhn_valid(digits: str) -> bool:
    """The Luhn check: doubling every second digit from the right, the sum is a multiple of 10."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def key_valid(siret: str) -> bool:
    """Whether a 14-digit string carries valid check keys: the SIRET's (La Poste's rule
    included) and its SIREN's."""
    if siret.startswith(LA_POSTE_SIREN) and siret != LA_POSTE_HEAD_OFFICE:
        siret_key = sum(int(char) for char in siret) % 5 == 0
    else:
        siret_key = luhn_valid(siret)
    return siret_key and luhn_valid(siret[:SIREN_LENGTH])


def validate(value: str) -> str:
    """Return the 14-digit SIRET written in ``value``, or raise ``InvalidSiret``."""
    if len(value) > SIRET_INPUT_MAX:
        raise InvalidSiret(MESSAGE_LENGTH, reason="length")
    siret = normalize(value)
    if not siret:
        raise InvalidSiret(MESSAGE_EMPTY, reason="empty")
    if not siret.isascii() or not siret.isdigit():
        raise InvalidSiret(MESSAGE_DIGITS, reason="digits")
    if len(siret) != SIRET_LENGTH:
        raise InvalidSiret(MESSAGE_LENGTH, reason="length")
    if not key_valid(siret):
        raise InvalidSiret(MESSAGE_KEY, reason="key")
    return siret


def is_valid(value: str) -> bool:
    try:
        validate(value)
    except InvalidSiret:
        return False
    return True


def siren_of(siret: str) -> str:
    """The company's SIREN: the first 9 digits of a (validated) SIRET."""
    return validate(siret)[:SIREN_LENGTH]


def format_siret(siret: str) -> str:
    """The usual display form, ``"356 000 000 00048"``."""
    digits = normalize(siret)
    return f"{digits[:3]} {digits[3:6]} {digits[6:9]} {digits[9:]}"
