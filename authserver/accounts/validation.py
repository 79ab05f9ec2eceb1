"""Input rules for account fields (identifiant, e-mail, phone). Pure functions, French errors."""

from __future__ import annotations

import re
import unicodedata

import phonenumbers
from email_validator import EmailNotValidError, validate_email

USERNAME_RULE = (
    "De 3 à 64 caractères : lettres sans accent, chiffres, et les signes . _ - @ "
    "(sans espace). Les majuscules et minuscules ne sont pas distinguées."
)
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,62}[A-Za-z0-9]$")


class InvalidField(ValueError):
    """The value cannot be accepted; the message is the French sentence to show."""


def username_key(username: str) -> str:
    """The form used for uniqueness and lookups: case and width folded."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def has_control_characters(value: str) -> bool:
    """NUL, escapes, zero-width and other invisible characters (Unicode category C*)."""
    return any(unicodedata.category(ch).startswith("C") for ch in value)


def lookup_username_key(value: str) -> str | None:
    """The lookup key of a typed identifiant, or None when no account can have it.

    Every account's identifiant passed :func:`clean_username`: anything else (NUL bytes,
    control characters, a password typed in the wrong field) is an unknown account, and is
    never sent to the database (PostgreSQL refuses NUL in text).
    """
    try:
        return username_key(clean_username(value))
    except InvalidField:
        return None


def looks_like_username(value: str) -> bool:
    return lookup_username_key(value) is not None


INVALID_ATTEMPT = "(invalide)"


def attempt_label(value: str) -> str:
    """What a login event keeps of a typed identifiant (stored, shown, logged).

    People type their password in the identifiant field: keep the value only when it could
    be an identifiant (allowed characters and length), else a marker.
    """
    value = unicodedata.normalize("NFKC", value or "").strip()
    return value if USERNAME_RE.fullmatch(value) else INVALID_ATTEMPT


def lookup_email_key(value: str) -> str | None:
    """The lookup key of a typed e-mail address, or None when no account can have it."""
    value = (value or "").strip()
    if not value or len(value) > 254 or has_control_characters(value) or "@" not in value:
        return None
    return email_key(value)


def clean_username(value: str) -> str:
    value = unicodedata.normalize("NFKC", value or "").strip()
    if not value:
        raise InvalidField("Veuillez saisir un identifiant.")
    if not USERNAME_RE.fullmatch(value):
        raise InvalidField("Identifiant invalide. " + USERNAME_RULE)
    return value


def clean_email(value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidField("Veuillez saisir une adresse e-mail.")
    if len(value) > 254:
        raise InvalidField("L'adresse e-mail est trop longue.")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidField("Adresse e-mail invalide. Exemple : contact@entreprise.fr") from None
    return result.normalized


def email_key(email: str) -> str:
    return email.strip().casefold()


def clean_phone(value: str, region: str = "FR") -> str:
    """Return the number in E.164 (``+33712345678``); French numbers by default."""
    value = (value or "").strip()
    if not value:
        raise InvalidField("Veuillez saisir un numéro de téléphone.")
    if len(value) > 32:
        raise InvalidField("Numéro de téléphone invalide.")
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise InvalidField(
            "Numéro de téléphone invalide. Exemple : +33 (0)712345678 ou 07 12 34 56 78"
        ) from None
    if not (phonenumbers.is_valid_number(number) or _french_shape(number)):
        raise InvalidField(
            "Numéro de téléphone invalide. Exemple : +33 (0)712345678 ou 07 12 34 56 78"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _french_shape(number: phonenumbers.PhoneNumber) -> bool:
    """A well-formed French number in a range the library does not list yet (the seed's
    own example, 07 12 34 56 78, is one): nine digits after the leading 0."""
    return number.country_code == 33 and bool(
        re.fullmatch(r"[1-9][0-9]{8}", str(number.national_number))
    )


def clean_name(value: str, label: str) -> str:
    value = " ".join((value or "").split())
    if not value:
        raise InvalidField(f"Veuillez saisir votre {label}.")
    if len(value) > 100:
        raise InvalidField(f"Le {label} ne doit pas dépasser 100 caractères.")
    if has_control_characters(value):
        raise InvalidField(f"Le {label} contient des caractères non autorisés.")
    return value
