"""What the console shows for the codes it stores: login event reasons, alert details, devices.

Pure functions, no I/O: the views hand them rows. Codes stay codes in the database, the
JSON API and the SIEM lines (machines read them); a person reads French. A code without a
label (one added later and forgotten here) is still shown, marked as such, never hidden:
``tests/alerts/test_console_labels.py`` checks that every code the app writes has one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
NONE = "—"

# LoginEvent.reason, by the code that writes it.
REASON_LABELS: dict[str, str] = {
    # accounts/password_attempt.py and accounts/service.py (LoginOutcome)
    "bad_credentials": "Identifiant ou mot de passe incorrect",
    "throttled": "Trop de tentatives (refusée sans vérifier le mot de passe)",
    "not_activated": "Compte pas encore activé",
    "locked": "Compte verrouillé",
    "reset_required": "Nouveau mot de passe exigé avant toute connexion",
    # accounts/views_login.py
    "invalid_input": "Saisie invalide (champ vide ou trop long)",
    # sessions/completion.py: a success from a browser the account did not know
    "new_device": "Nouvel appareil : alerte envoyée au titulaire",
    "recovery": "Récupération du compte : nouvelle clé d'accès, alerte envoyée au titulaire",
    # webauthn/pages.py: « Confirmez votre identité » with the password, succeeded
    "reauth": "Confirmation d'identité avant une opération sensible",
    # webauthn/errors.py (CeremonyError.error)
    "invalid_credential": "Clé d'accès non vérifiée",
    "malformed_credential": "Réponse de la clé d'accès mal formée",
    "challenge_invalid": "Demande de connexion expirée ou déjà utilisée",
    "origin_mismatch": "Clé d'accès utilisée depuis un site non autorisé",
    "cross_origin": "Clé d'accès utilisée dans un cadre d'un autre site",
    "authenticator_not_allowed": "Modèle de clé d'accès non autorisé pour un agent",
    "verification_failed": "Signature de la clé d'accès invalide",
    "user_verification_required": "L'appareil n'a pas vérifié l'identité (empreinte, visage, code)",
    "unknown_credential": "Clé d'accès inconnue (supprimée ou jamais enregistrée)",
    "user_handle_mismatch": "Clé d'accès d'un autre compte",
    "credential_cloned": "Clé d'accès copiée (compteur incohérent) : bloquée",
    "backup_eligibility_mismatch": "Clé d'accès différente de celle enregistrée",
    "already_registered": "Clé d'accès déjà enregistrée",
    "account_unavailable": "Compte indisponible (verrouillé ou pas encore activé)",
}

# A password typed elsewhere than on the login page: its events' reasons carry a prefix
# (password_attempt.attempt's ``context``).
CONTEXT_LABELS: dict[str, str] = {
    "reauth": "Confirmation d'identité",
    "change": "Changement de mot de passe",
}
# Where the general wording reads wrong after the prefix (the account is known there).
CONTEXT_REASON_LABELS: dict[str, str] = {
    "reauth_bad_credentials": "Confirmation d'identité : mot de passe incorrect",
    "change_bad_credentials": "Changement de mot de passe : mot de passe actuel incorrect",
}


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def reason_label(code: str | None) -> str:
    """« Identifiant ou mot de passe incorrect » for ``bad_credentials``; « — » for none."""
    if not code:
        return NONE
    if code in CONTEXT_REASON_LABELS:
        return CONTEXT_REASON_LABELS[code]
    if code in REASON_LABELS:
        return REASON_LABELS[code]
    context, _, rest = code.partition("_")
    if context in CONTEXT_LABELS and rest in REASON_LABELS:
        return f"{CONTEXT_LABELS[context]} : {_lower_first(REASON_LABELS[rest])}"
    return f"Motif non répertorié ({code})"


# --- Alert details (SecurityEvent.details) ----------------------------------------------------

DETAIL_LABELS: dict[str, str] = {
    "subject": "Objet de l'alerte",
    "failures": "Échecs",
    "accounts": "Comptes",
    "usernames": "Identifiants",
    "ips": "Adresses IP",
    "ip": "Adresse IP de la connexion signalée",
    "first_at": "Début",
    "last_at": "Fin",
    "window_minutes": "Fenêtre (minutes)",
    "threshold": "Seuil",
    "device": "Navigateur (empreinte du cookie d'appareil)",
    "device_id": "Appareil",
    "browser": "Navigateur",
    "system": "Système",
    "method": "Méthode de connexion",
    "reason": "Motif",
    "sessions_revoked": "Sessions fermées",
    "devices_forgotten": "Appareils oubliés (alerte à leur prochaine connexion)",
    "reporter_ip": "Adresse IP du signalement",
    "credential": "Clé d'accès",
    "name": "Nom de la clé d'accès",
    "detail": "Détail technique",
}
# Values of the ``reason`` detail (alerts/notify.py).
DETAIL_REASONS = {"too_many_failures": "Trop d'échecs de mot de passe"}
SUBJECT_KINDS = {"account": "Compte n°", "ip": "Adresse IP", "device": "Navigateur (empreinte)"}


class DeviceLike(Protocol):
    id: int
    browser: str
    system: str


def device_label(device: DeviceLike | None, device_id: Any = None) -> str:
    """« Chrome 131 sur Windows 10 (appareil n° 8) », or « Appareil n° 8 » when unknown."""
    if device is None:
        return f"Appareil n° {device_id}" if device_id not in (None, "") else NONE
    return f"{device.browser} sur {device.system} (appareil n° {device.id})"


def table_time(moment: datetime) -> str:
    """A table cell's time: « 26/11/2026 17:45 », its column saying « (heure de Paris) »."""
    return moment.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")


def _moment(value: Any) -> str:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return moment.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M:%S") + " (heure de Paris)"


def _subject(value: Any) -> str:
    kind, _, rest = str(value).partition(":")
    return f"{SUBJECT_KINDS[kind]} {rest}" if kind in SUBJECT_KINDS and rest else str(value)


# webauthn/authentication.py and webauthn/service.py (CloneDetected's detail, in English
# for the logs).
SIGN_COUNT = re.compile(r"sign count (\d+) after (\d+)( \(concurrent login\))?")


def _technical(value: Any) -> str:
    found = SIGN_COUNT.fullmatch(str(value))
    if found is None:
        return str(value)
    text = f"Compteur de signature reçu : {found[1]} (plus de {found[2]} attendu)"
    return text + (", connexions simultanées" if found[3] else "")


def _joined(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value) or NONE
    return str(value)


@dataclass(frozen=True)
class Detail:
    key: str
    label: str
    text: str
    device_ids: tuple[int, ...] = ()  # rows of the devices table this line names


def details(
    values: Mapping[str, Any] | None,
    *,
    devices: Iterable[DeviceLike] = (),
    methods: Mapping[str, str],
) -> list[Detail]:
    """The alert's details as the alert page lists them: French labels and values, devices
    named by browser and system, dates in Paris time; in a fixed order (labels' order)."""
    known = {device.id: device for device in devices}
    values = values or {}
    order = list(DETAIL_LABELS)

    def position(key: str) -> tuple[int, str]:
        return (order.index(key) if key in order else len(order), key)

    shown = []
    for key in sorted(values, key=position):
        value = values[key]
        ids: tuple[int, ...] = ()
        if key == "device_id":
            ids = (value,) if isinstance(value, int) else ()
            text = device_label(known.get(value), value)
        elif key == "devices_forgotten":
            ids = tuple(v for v in value if isinstance(v, int)) if isinstance(value, list) else ()
            text = ", ".join(device_label(known.get(v), v) for v in ids) or "aucun"
        elif key == "method":
            text = methods.get(str(value), str(value))
        elif key == "reason":
            text = DETAIL_REASONS.get(str(value), reason_label(str(value)))
        elif key in ("first_at", "last_at"):
            text = _moment(value)
        elif key == "subject":
            text = _subject(value)
        elif key == "credential":
            text = f"n° {value}"
        elif key == "detail":
            text = _technical(value)
        else:
            text = _joined(value)
        shown.append(Detail(key, DETAIL_LABELS.get(key, key), text, ids))
    return shown
