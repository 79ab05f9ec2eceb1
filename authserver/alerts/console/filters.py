"""The console's filters, read from query parameters: pure input checking, no I/O.

The same names serve the pages, the CSV exports and the JSON API:
``account`` (identifiant), ``siret``, ``ip``, ``from`` / ``to`` (dates, Paris
time, both days included, or ISO 8601 date-times), ``kind`` and ``status``
(alerts), ``outcome`` and ``method`` (login events). An empty value means no
filter; a bad value raises :class:`InvalidFilters` naming every bad field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from authserver.models import ALERT_STATUSES

PARIS = ZoneInfo("Europe/Paris")

ALERT_KINDS: dict[str, str] = {
    "new_device": "Connexion depuis un nouvel appareil",
    "account_recovery": "Récupération du compte (nouvelle clé d'accès par e-mail)",
    "not_me": "Signalement « Ce n'était pas moi »",
    "passkey_cloned": "Clé d'accès copiée",
    "throttled": "Compte bloqué après des échecs répétés",
    "failure_burst_account": "Rafale d'échecs sur un compte",
    "failure_burst_ip": "Rafale d'échecs depuis une adresse IP",
    "many_accounts_ip": "Nombreux comptes depuis une adresse IP",
    "many_accounts_device": "Nombreux comptes depuis un appareil",
}
STATUS_LABELS: dict[str, str] = dict(
    zip(ALERT_STATUSES, ("Ouverte", "Prise en compte", "Escaladée", "Clôturée"), strict=True)
)
OUTCOME_LABELS = {"success": "Réussie", "failure": "Échec", "throttled": "Bloquée"}
METHOD_LABELS = {"password": "Mot de passe", "passkey": "Clé d'accès"}
SEVERITY_LABELS = {"low": "Faible", "medium": "Moyenne", "high": "Élevée"}
SIRET_RE = re.compile(r"^\d{14}$")


class InvalidFilters(ValueError):
    """Some filter values cannot be used; ``errors`` maps each field to a French sentence."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


@dataclass(frozen=True)
class Filters:
    account: str | None = None
    siret: str | None = None
    ip: str | None = None
    start: datetime | None = None  # inclusive, aware UTC
    end: datetime | None = None  # exclusive, aware UTC
    kind: str | None = None
    status: str | None = None
    outcome: str | None = None
    method: str | None = None


# The raw parameter names, in the order the forms show them.
ALERT_PARAMS = ("account", "siret", "ip", "from", "to", "kind", "status")
EVENT_PARAMS = ("account", "siret", "ip", "from", "to", "outcome", "method")


def _moment(value: str, *, end: bool) -> datetime:
    """A date (Paris day: its start, or the next day's start for ``end``) or a date-time."""
    if len(value) == 10:
        day = date.fromisoformat(value)
        if end:
            day += timedelta(days=1)
        moment = datetime.combine(day, time.min, tzinfo=PARIS)
    else:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=PARIS)
    if not 1900 <= moment.year <= 9000:
        raise ValueError("year out of range")
    return moment.astimezone(timezone.utc)


def _choice(allowed: Mapping[str, str]):  # type: ignore[no-untyped-def]
    def convert(value: str) -> str:
        if value not in allowed:
            raise ValueError("unknown value")
        return value

    return convert


def parse(args: Mapping[str, str], *, allowed: tuple[str, ...]) -> Filters:
    """Filters from query parameters; only the names in ``allowed`` are read."""
    raw = {name: (args.get(name) or "").strip() for name in allowed}
    values: dict[str, object] = {}
    errors: dict[str, str] = {}

    converters = {
        "account": _account,
        "siret": _siret,
        "ip": _ip,
        "from": lambda v: _moment(v, end=False),
        "to": lambda v: _moment(v, end=True),
        "kind": _choice(ALERT_KINDS),
        "status": _choice(STATUS_LABELS),
        "outcome": _choice(OUTCOME_LABELS),
        "method": _choice(METHOD_LABELS),
    }
    for name in allowed:
        if raw[name]:
            try:
                values[name] = converters[name](raw[name])
            except (ValueError, OverflowError):
                errors[name] = ERRORS[name]
    start, end = values.pop("from", None), values.pop("to", None)
    if isinstance(start, datetime) and isinstance(end, datetime) and start >= end:
        errors["to"] = "La date de fin doit être postérieure à la date de début."
    if errors:
        raise InvalidFilters(errors)
    return Filters(start=start, end=end, **values)  # type: ignore[arg-type]


ERRORS = {
    "account": "L'identifiant est trop long.",
    "siret": "Le numéro de SIRET doit comporter 14 chiffres.",
    "ip": "L'adresse IP n'est pas valide.",
    "from": "Date invalide : utilisez le format AAAA-MM-JJ.",
    "to": "Date invalide : utilisez le format AAAA-MM-JJ.",
    "kind": "Type d'alerte inconnu : choisissez une valeur de la liste.",
    "status": "Statut inconnu : choisissez une valeur de la liste.",
    "outcome": "Résultat inconnu : choisissez une valeur de la liste.",
    "method": "Méthode inconnue : choisissez une valeur de la liste.",
}


def _account(value: str) -> str:
    if len(value) > 64:
        raise ValueError("too long")
    return value


def _siret(value: str) -> str:
    digits = re.sub(r"\s", "", value)
    if not SIRET_RE.match(digits):
        raise ValueError("bad siret")
    return digits


def _ip(value: str) -> str:
    return str(ipaddress.ip_address(value))


def query_args(args: Mapping[str, str], allowed: tuple[str, ...]) -> dict[str, str]:
    """The non-empty filter parameters, to carry into pagination and export links."""
    return {name: args[name] for name in allowed if args.get(name)}
