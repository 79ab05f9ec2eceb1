"""INSEE's API Sirene 3.11 (an API key from the INSEE portal)."""

from __future__ import annotations

from authserver.establishments.directory.model import (
    SIRENE_KEY_HEADER,
    SIRENE_URL,
    Establishment,
    _as_siret,
    _build,
    _Malformed,
    _text,
)
from authserver.establishments.directory.remote import (
    _HttpDirectory,
)

_STREET_TYPES = {
    "ALL": "ALLEE",
    "AV": "AVENUE",
    "BD": "BOULEVARD",
    "CAR": "CARREFOUR",
    "CHE": "CHEMIN",
    "CHS": "CHAUSSEE",
    "CITE": "CITE",
    "COR": "CORNICHE",
    "CRS": "COURS",
    "DOM": "DOMAINE",
    "DSC": "DESCENTE",
    "ECA": "ECART",
    "ESP": "ESPLANADE",
    "FG": "FAUBOURG",
    "GR": "GRANDE RUE",
    "HAM": "HAMEAU",
    "HLE": "HALLE",
    "IMP": "IMPASSE",
    "LD": "LIEU DIT",
    "LOT": "LOTISSEMENT",
    "MAR": "MARCHE",
    "MTE": "MONTEE",
    "PAS": "PASSAGE",
    "PL": "PLACE",
    "PLN": "PLAINE",
    "PLT": "PLATEAU",
    "PRO": "PROMENADE",
    "PRV": "PARVIS",
    "QUA": "QUARTIER",
    "QUAI": "QUAI",
    "RES": "RESIDENCE",
    "RLE": "RUELLE",
    "ROC": "ROCADE",
    "RPT": "ROND POINT",
    "RTE": "ROUTE",
    "RUE": "RUE",
    "SEN": "SENTIER",
    "SQ": "SQUARE",
    "TPL": "TERRE PLEIN",
    "TRA": "TRAVERSE",
    "VLA": "VILLA",
    "VLGE": "VILLAGE",
}
_REPETITION = {"B": "BIS", "T": "TER", "Q": "QUATER", "C": "QUINQUIES"}


class SireneDirectory(_HttpDirectory):
    """INSEE's API Sirene 3.11: ``GET {base}/siret/{siret}`` with the integration key header.

    A 401 or 403 means the key is wrong, expired or not subscribed to API Sirene:
    ``DirectoryUnavailable`` says so (for the logs), without retrying.
    """

    service = "api-sirene"

    def __init__(
        self,
        api_key: str,
        base_url: str = SIRENE_URL,
        timeout: float = 3.0,
        retries: int = 2,
        *,
        total_timeout: float = 7.0,
        backoff: float = 0.25,
    ) -> None:
        if not api_key:
            raise ValueError("API Sirene needs a key (AUTHSERVER_SIRENE_API_KEY)")
        super().__init__(
            base_url, timeout=timeout, retries=retries, total_timeout=total_timeout, backoff=backoff
        )
        self._api_key = api_key

    def lookup(self, siret: str) -> Establishment | None:
        wanted = _as_siret(siret)
        if wanted is None:
            return None
        status, body = self._get(
            f"{self.base_url}/siret/{wanted}", {SIRENE_KEY_HEADER: self._api_key}
        )
        if status == 404:
            return None
        if status in (401, 403):
            raise self._unavailable(
                f"HTTP {status}: INSEE refused the API key; check AUTHSERVER_SIRENE_API_KEY "
                "(wrong or expired key, or application not subscribed to API Sirene)"
            )
        return self._read(status, body, _from_sirene, wanted)


def _from_sirene(payload: object, siret: str) -> Establishment | None:
    place = payload.get("etablissement") if isinstance(payload, dict) else None
    if not isinstance(place, dict):
        raise _Malformed("no 'etablissement' object")
    if place.get("siret") != siret:
        return None
    unit = place.get("uniteLegale") or {}
    address = place.get("adresseEtablissement") or {}
    periods = place.get("periodesEtablissement") or []
    if not isinstance(unit, dict) or not isinstance(address, dict) or not isinstance(periods, list):
        raise _Malformed("'uniteLegale', 'adresseEtablissement' or 'periodesEtablissement'")
    current = next(
        (p for p in periods if isinstance(p, dict) and p.get("dateFin") is None),
        periods[0] if periods and isinstance(periods[0], dict) else {},
    )
    name = _text(unit.get("denominationUniteLegale"), field="denominationUniteLegale")
    if not name:  # an individual entrepreneur: first name and surname
        first = _text(unit.get("prenom1UniteLegale"), field="prenom1UniteLegale")
        last = _text(unit.get("nomUniteLegale"), field="nomUniteLegale")
        name = f"{first} {last}".strip()
    street_type = _text(address.get("typeVoieEtablissement"), field="typeVoieEtablissement")
    repetition = _text(
        address.get("indiceRepetitionEtablissement"), field="indiceRepetitionEtablissement"
    )
    street = " ".join(
        part
        for part in (
            _text(address.get("numeroVoieEtablissement"), field="numeroVoieEtablissement"),
            _REPETITION.get(repetition.upper(), repetition),
            _STREET_TYPES.get(street_type.upper(), street_type),
            _text(address.get("libelleVoieEtablissement"), field="libelleVoieEtablissement"),
        )
        if part
    )
    naf = _text(
        current.get("activitePrincipaleEtablissement"), field="activitePrincipaleEtablissement"
    ) or _text(unit.get("activitePrincipaleUniteLegale"), field="activitePrincipaleUniteLegale")
    return _build(
        siret=siret,
        siren=_text(place.get("siren"), field="siren") or siret[:9],
        name=name,
        address=street,
        postal_code=_text(address.get("codePostalEtablissement"), field="codePostalEtablissement"),
        city=_text(address.get("libelleCommuneEtablissement"), field="libelleCommuneEtablissement"),
        naf_code=naf,
        naf_label="",
        active=current.get("etatAdministratifEtablissement") == "A",
    )
