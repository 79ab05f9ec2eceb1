"""The public « API Recherche d'entreprises » (https://recherche-entreprises.api.gouv.fr)."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from authserver.establishments.directory.model import (
    RECHERCHE_ENTREPRISES_URL,
    Establishment,
    _as_siret,
    _build,
    _Malformed,
    _text,
)
from authserver.establishments.directory.remote import (
    _HttpDirectory,
)


class RechercheEntreprisesDirectory(_HttpDirectory):
    """The public « API Recherche d'entreprises » (api.gouv.fr), no key.

    ``GET {base}/search?q=<siret>&page=1&per_page=1``; the establishment is taken from
    ``matching_etablissements`` (or ``siege``) by its SIRET. The API allows about
    7 requests per second per IP; a 429 is retried like a 5xx.
    """

    service = "recherche-entreprises"

    def __init__(
        self,
        base_url: str = RECHERCHE_ENTREPRISES_URL,
        timeout: float = 3.0,
        retries: int = 2,
        *,
        total_timeout: float = 7.0,
        backoff: float = 0.25,
    ) -> None:
        super().__init__(
            base_url, timeout=timeout, retries=retries, total_timeout=total_timeout, backoff=backoff
        )

    def lookup(self, siret: str) -> Establishment | None:
        wanted = _as_siret(siret)
        if wanted is None:
            return None
        query = urllib.parse.urlencode({"q": wanted, "page": 1, "per_page": 1})
        status, body = self._get(f"{self.base_url}/search?{query}", {})
        if status == 404:
            return None
        return self._read(status, body, _from_recherche, wanted)


def _from_recherche(payload: object, siret: str) -> Establishment | None:
    if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
        raise _Malformed("no 'results' list")
    for unit in payload["results"]:
        if not isinstance(unit, dict):
            raise _Malformed("a result is not an object")
        matching = unit.get("matching_etablissements") or []
        if not isinstance(matching, list):
            raise _Malformed("'matching_etablissements' is not a list")
        for place in [*matching, unit.get("siege")]:
            if isinstance(place, dict) and place.get("siret") == siret:
                return _recherche_establishment(unit, place, siret)
    return None


def _recherche_establishment(
    unit: dict[str, Any], place: dict[str, Any], siret: str
) -> Establishment:
    postal_code = _text(place.get("code_postal"), field="code_postal")
    city = _text(place.get("libelle_commune"), field="libelle_commune")
    address = _text(place.get("adresse"), field="adresse")
    # "adresse" is the whole address ("14 RUE X 69002 LYON"): keep the street line.
    if postal_code and f" {postal_code}" in f" {address}":
        address = f" {address}".split(f" {postal_code}", 1)[0].strip()
    name = _text(unit.get("nom_complet"), field="nom_complet") or _text(
        unit.get("nom_raison_sociale"), field="nom_raison_sociale"
    )
    naf = _text(place.get("activite_principale"), field="activite_principale") or _text(
        unit.get("activite_principale"), field="activite_principale"
    )
    return _build(
        siret=siret,
        siren=_text(unit.get("siren"), field="siren") or siret[:9],
        name=name,
        address=address,
        postal_code=postal_code,
        city=city,
        naf_code=naf,
        naf_label="",
        active=place.get("etat_administratif") == "A",
    )


# --- INSEE API Sirene -----------------------------------------------------------------------

# Sirene writes the street type as a code ("AV", "BD"...): the usual ones, spelled out.
