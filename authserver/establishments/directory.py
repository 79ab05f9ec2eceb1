"""Company directories: from a SIRET to the establishment's details (the Kbis screen).

One small interface, ``Directory.lookup(siret)``, and three adapters:

- ``EmbeddedDirectory``: ``authserver/data/establishments.json``, the default for
  development, demos and tests (no network).
- ``RechercheEntreprisesDirectory``: the public « API Recherche d'entreprises » of the
  French administration (https://recherche-entreprises.api.gouv.fr, no key).
- ``SireneDirectory``: INSEE's API Sirene 3.11 (an API key from the INSEE portal).

``lookup`` returns ``None`` for an unknown SIRET and a closed establishment with
``active=False`` (the caller decides what to show); it raises ``DirectoryUnavailable``
when the service cannot answer: down, too slow, 5xx, 429, wrong key, or an answer
that is not the documented JSON.

Time bound of the HTTP adapters (the page must not hang): each attempt waits at most
``timeout`` per socket operation, a failed attempt (connection error, timeout, 5xx,
429; never another 4xx) is retried at most ``retries`` times after a short backoff,
and no attempt starts or goes on reading past ``total_timeout`` (7 s by default)
after the call. With the defaults the worst case is about 7 s: 3 s + 0.25 s +
3 s + 0.5 s, then the time left. A server that trickles its headers one byte at a
time could stretch this by at most one ``timeout``; the body is read in chunks
against the deadline.

No Flask here: the views call ``lookup`` and turn the outcome into a page.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from authserver.establishments.siret import normalize

log = logging.getLogger(__name__)

DEFAULT_EMBEDDED_PATH = Path(__file__).resolve().parent.parent / "data" / "establishments.json"
# The first establishment of the embedded file: the SIRET to type in demos and tests.
DEMO_SIRET = "69279251800015"

RECHERCHE_ENTREPRISES_URL = "https://recherche-entreprises.api.gouv.fr"
SIRENE_URL = "https://api.insee.fr/api-sirene/3.11"
SIRENE_KEY_HEADER = "X-INSEE-Api-Key-Integration"
USER_AGENT = "authserver/0.1 (recherche d'etablissement par SIRET)"
MAX_BODY_BYTES = 2 * 1024 * 1024

DIRECTORY_KINDS = ("embedded", "recherche-entreprises", "sirene")

UNAVAILABLE_MESSAGE = (
    "Le service de recherche des entreprises est momentanément indisponible. "
    "Veuillez réessayer dans quelques minutes."
)
UNKNOWN_MESSAGE = (
    "Vous n'avez pas encore de numéro Siret ou votre numéro Siret n'est pas reconnu ? "
    "Appelez un conseiller entreprise au 39 95"
)


@dataclass(frozen=True)
class Establishment:
    """An establishment as a directory describes it.

    ``address`` is the street line only (« 14 RUE DE LA REPUBLIQUE »); ``postal_code``
    and ``city`` are apart. ``naf_code`` is the NAF rév. 2 code (« 62.01Z »), its
    label may be empty when the directory gives none and the code is not in
    ``NAF_LABELS``.
    """

    siret: str
    siren: str
    name: str
    address: str
    postal_code: str
    city: str
    naf_code: str
    naf_label: str
    active: bool

    @property
    def full_address(self) -> str:
        """« 14 RUE DE LA REPUBLIQUE, 69002 LYON »"""
        place = f"{self.postal_code} {self.city}".strip()
        return ", ".join(part for part in (self.address, place) if part)


class DirectoryUnavailable(Exception):
    """The directory could not answer. ``str(exc)`` is a detail for the logs (English);
    ``user_message`` is the French sentence for the page."""

    user_message = UNAVAILABLE_MESSAGE

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Directory(Protocol):
    def lookup(self, siret: str) -> Establishment | None:
        """The establishment with this SIRET, or None if the directory does not know it."""
        ...


# --- NAF rév. 2: labels of the codes employers most often have (INSEE wording) ---------

NAF_LABELS: dict[str, str] = {
    "01.21Z": "Culture de la vigne",
    "10.13B": "Charcuterie",
    "10.71C": "Boulangerie et boulangerie-pâtisserie",
    "10.71D": "Pâtisserie",
    "11.02B": "Vinification",
    "41.20A": "Construction de maisons individuelles",
    "41.20B": "Construction d'autres bâtiments",
    "43.12A": "Travaux de terrassement courants et travaux préparatoires",
    "43.21A": "Travaux d'installation électrique dans tous locaux",
    "43.22A": "Travaux d'installation d'eau et de gaz en tous locaux",
    "43.22B": "Travaux d'installation d'équipements thermiques et de climatisation",
    "43.29A": "Travaux d'isolation",
    "43.31Z": "Travaux de plâtrerie",
    "43.32A": "Travaux de menuiserie bois et PVC",
    "43.33Z": "Travaux de revêtement des sols et des murs",
    "43.34Z": "Travaux de peinture et vitrerie",
    "43.91A": "Travaux de charpente",
    "43.91B": "Travaux de couverture par éléments",
    "43.99C": "Travaux de maçonnerie générale et gros oeuvre de bâtiment",
    "45.11Z": "Commerce de voitures et de véhicules automobiles légers",
    "45.20A": "Entretien et réparation de véhicules automobiles légers",
    "46.90Z": "Commerce de gros non spécialisé",
    "47.11B": "Commerce d'alimentation générale",
    "47.11C": "Supérettes",
    "47.11D": "Supermarchés",
    "47.11F": "Hypermarchés",
    "47.22Z": "Commerce de détail de viandes et de produits à base de viande en magasin spécialisé",
    "47.24Z": "Commerce de détail de pain, pâtisserie et confiserie en magasin spécialisé",
    "47.61Z": "Commerce de détail de livres en magasin spécialisé",
    "47.71Z": "Commerce de détail d'habillement en magasin spécialisé",
    "47.73Z": "Commerce de détail de produits pharmaceutiques en magasin spécialisé",
    "47.76Z": "Commerce de détail de fleurs, plantes, graines, engrais, animaux de compagnie "
    "et aliments pour ces animaux en magasin spécialisé",
    "47.91B": "Vente à distance sur catalogue spécialisé",
    "49.32Z": "Transports de voyageurs par taxis",
    "49.41A": "Transports routiers de fret interurbains",
    "49.41B": "Transports routiers de fret de proximité",
    "49.42Z": "Services de déménagement",
    "52.29A": "Messagerie, fret express",
    "53.10Z": "Activités de poste dans le cadre d'une obligation de service universel",
    "53.20Z": "Autres activités de poste et de courrier",
    "55.10Z": "Hôtels et hébergement similaire",
    "56.10A": "Restauration traditionnelle",
    "56.10C": "Restauration de type rapide",
    "56.21Z": "Services des traiteurs",
    "56.30Z": "Débits de boissons",
    "62.01Z": "Programmation informatique",
    "62.02A": "Conseil en systèmes et logiciels informatiques",
    "62.02B": "Tierce maintenance de systèmes et d'applications informatiques",
    "62.03Z": "Gestion d'installations informatiques",
    "62.09Z": "Autres activités informatiques",
    "63.11Z": "Traitement de données, hébergement et activités connexes",
    "64.20Z": "Activités des sociétés holding",
    "68.20A": "Location de logements",
    "68.31Z": "Agences immobilières",
    "68.32A": "Administration d'immeubles et autres biens immobiliers",
    "69.10Z": "Activités juridiques",
    "69.20Z": "Activités comptables",
    "70.10Z": "Activités des sièges sociaux",
    "70.22Z": "Conseil pour les affaires et autres conseils de gestion",
    "71.11Z": "Activités d'architecture",
    "71.12B": "Ingénierie, études techniques",
    "73.11Z": "Activités des agences de publicité",
    "75.00Z": "Activités vétérinaires",
    "78.10Z": "Activités des agences de placement de main-d'oeuvre",
    "78.20Z": "Activités des agences de travail temporaire",
    "81.10Z": "Activités combinées de soutien lié aux bâtiments",
    "81.21Z": "Nettoyage courant des bâtiments",
    "81.22Z": "Autres activités de nettoyage des bâtiments et nettoyage industriel",
    "81.30Z": "Services d'aménagement paysager",
    "82.11Z": "Services administratifs combinés de bureau",
    "82.99Z": "Autres activités de soutien aux entreprises n.c.a.",
    "84.11Z": "Administration publique générale",
    "85.53Z": "Enseignement de la conduite",
    "85.59A": "Formation continue d'adultes",
    "86.10Z": "Activités hospitalières",
    "86.21Z": "Activité des médecins généralistes",
    "86.23Z": "Pratique dentaire",
    "86.90D": "Activités des infirmiers et des sages-femmes",
    "87.10A": "Hébergement médicalisé pour personnes âgées",
    "88.10A": "Aide à domicile",
    "88.91A": "Accueil de jeunes enfants",
    "88.99B": "Action sociale sans hébergement n.c.a.",
    "90.01Z": "Arts du spectacle vivant",
    "93.12Z": "Activités de clubs de sports",
    "94.99Z": "Autres organisations fonctionnant par adhésion volontaire",
    "96.02A": "Coiffure",
    "96.02B": "Soins de beauté",
    "96.04Z": "Entretien corporel",
    "97.00Z": "Activités des ménages en tant qu'employeurs de personnel domestique",
}

_NAF_RE = re.compile(r"^(\d{2})\.?(\d{2})([A-Z])$")


def normalize_naf(code: str) -> str:
    """« 6201Z » or « 62.01z » → « 62.01Z »; anything else is returned stripped."""
    compact = code.strip().upper()
    match = _NAF_RE.match(compact)
    return f"{match[1]}.{match[2]}{match[3]}" if match else compact


def naf_label(code: str) -> str:
    """The INSEE label of a common NAF code, or "" when it is not in the small table."""
    return NAF_LABELS.get(normalize_naf(code), "")


# --- building an Establishment from untrusted values -----------------------------------

# Column sizes of the ``establishments`` table.
_LIMITS = {"name": 255, "address": 255, "postal_code": 10, "city": 100, "naf_code": 8}
_NOT_DIFFUSED = {"[ND]", "[NON-DIFFUSIBLE]"}


class _Malformed(Exception):
    """The answer is not the documented JSON."""


def _text(value: object, *, field: str = "") -> str:
    """A string field of the answer: None → "", whitespace collapsed, a non-string refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Malformed(f"field {field or '?'} is {type(value).__name__}, expected a string")
    cleaned = " ".join(value.split())
    return "" if cleaned in _NOT_DIFFUSED else cleaned


def _build(**fields: Any) -> Establishment:
    for name, limit in _LIMITS.items():
        fields[name] = fields[name][:limit]
    code = normalize_naf(fields["naf_code"])
    fields["naf_code"] = code
    fields["naf_label"] = fields.get("naf_label") or naf_label(code)
    return Establishment(**fields)


def _as_siret(value: str) -> str | None:
    siret = normalize(value)
    return siret if len(siret) == 14 and siret.isascii() and siret.isdigit() else None


# --- embedded ----------------------------------------------------------------------------


class EmbeddedDirectory:
    """The establishments of a JSON file (``{"establishments": [{...}, ...]}``), read once."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else DEFAULT_EMBEDDED_PATH
        with self.path.open(encoding="utf-8") as handle:
            document = json.load(handle)
        rows = document.get("establishments") if isinstance(document, dict) else None
        if not isinstance(rows, list):
            raise ValueError(f"{self.path}: expected an object with an 'establishments' list")
        self._by_siret: dict[str, Establishment] = {}
        for index, row in enumerate(rows):
            try:
                found = Establishment(**row)
            except TypeError as exc:
                raise ValueError(f"{self.path}: entry {index}: {exc}") from None
            self._by_siret[found.siret] = found

    def entries(self) -> list[Establishment]:
        """Every establishment of the file, in its order (the first is the demo default)."""
        return list(self._by_siret.values())

    def lookup(self, siret: str) -> Establishment | None:
        return self._by_siret.get(normalize(siret))


# --- HTTP ---------------------------------------------------------------------------------


class _Transient(Exception):
    """A failure worth another attempt: no connection, a timeout, a cut answer."""


_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504}) | frozenset(range(505, 600))
_MIN_ATTEMPT_SECONDS = 0.05


class _HttpDirectory:
    """Bounded GET of a JSON document, shared by the two HTTP adapters."""

    service = "directory"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        retries: int,
        total_timeout: float,
        backoff: float,
    ) -> None:
        if timeout <= 0 or total_timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("timeout and total_timeout must be positive, retries non-negative")
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{self.service}: an http(s) base URL is expected, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.total_timeout = total_timeout
        self.backoff = backoff
        self._opener = urllib.request.build_opener()

    def _get(self, url: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """(status, body) of the first answer that is not worth retrying.

        Raises ``DirectoryUnavailable`` when every allowed attempt failed or the time
        budget is spent.
        """
        deadline = time.monotonic() + self.total_timeout
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                status, body = self._attempt(url, headers, min(self.timeout, remaining), deadline)
            except _Transient as exc:
                failure = str(exc)
            else:
                if status not in _RETRY_STATUSES:
                    return status, body
                failure = f"HTTP {status}"
            pause = self.backoff * (2**attempt)
            if attempt >= self.retries:
                raise self._unavailable(f"{failure} (after {attempt + 1} attempts)")
            if time.monotonic() + pause + _MIN_ATTEMPT_SECONDS >= deadline:
                raise self._unavailable(
                    f"{failure} (time budget of {self.total_timeout:g} s spent "
                    f"after {attempt + 1} attempts)"
                )
            log.info("%s: attempt %d failed (%s), retrying", self.service, attempt + 1, failure)
            time.sleep(pause)
            attempt += 1

    def _attempt(
        self, url: str, headers: Mapping[str, str], timeout: float, deadline: float
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            url,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT, **headers},
            method="GET",
        )
        try:
            response = self._opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, _read_bounded(exc, deadline)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Transient(f"{type(reason).__name__}: {reason}") from None
        with response:
            return response.status, _read_bounded(response, deadline)

    def _unavailable(self, detail: str) -> DirectoryUnavailable:
        message = f"{self.service}: {detail}"
        log.warning("%s", message)
        return DirectoryUnavailable(message)

    def _json(self, body: bytes) -> Any:
        try:
            return json.loads(body)
        except ValueError:  # also UnicodeDecodeError
            raise self._unavailable(
                f"the answer is not JSON ({body[:60]!r}{'...' if len(body) > 60 else ''})"
            ) from None


def _read_bounded(response: Any, deadline: float) -> bytes:
    """The body, read in chunks: never past the deadline nor beyond ``MAX_BODY_BYTES``."""
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            if time.monotonic() > deadline:
                raise _Transient("the answer did not arrive within the time budget")
            chunk = response.read1(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _Transient(f"the answer is larger than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
    except (OSError, ValueError, AttributeError, http.client.HTTPException) as exc:
        # ValueError: read on a closed file; AttributeError: an HTTPError without a body.
        raise _Transient(f"reading the answer failed: {type(exc).__name__}: {exc}") from None


# --- API Recherche d'entreprises ----------------------------------------------------------


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
        if status != 200:
            raise self._unavailable(f"unexpected HTTP {status}")
        try:
            return _from_recherche(self._json(body), wanted)
        except _Malformed as exc:
            raise self._unavailable(f"unexpected answer: {exc}") from None


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
        if status != 200:
            raise self._unavailable(f"unexpected HTTP {status}")
        try:
            return _from_sirene(self._json(body), wanted)
        except _Malformed as exc:
            raise self._unavailable(f"unexpected answer: {exc}") from None


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


# --- configuration ----------------------------------------------------------------------------


def make_directory(
    kind: str, *, api_key: str | None = None, base_url: str | None = None
) -> Directory:
    """The directory named by AUTHSERVER_DIRECTORY: ``embedded`` (default),
    ``recherche-entreprises`` or ``sirene`` (which needs AUTHSERVER_SIRENE_API_KEY).
    ``base_url`` (AUTHSERVER_DIRECTORY_URL) replaces the public URL of an HTTP adapter."""
    kind = (kind or "embedded").strip().lower()
    if kind == "embedded":
        return EmbeddedDirectory()
    if kind == "recherche-entreprises":
        return RechercheEntreprisesDirectory(base_url or RECHERCHE_ENTREPRISES_URL)
    if kind == "sirene":
        if not api_key:
            raise ValueError(
                "AUTHSERVER_SIRENE_API_KEY is required with AUTHSERVER_DIRECTORY=sirene"
            )
        return SireneDirectory(api_key, base_url or SIRENE_URL)
    raise ValueError(
        f"unknown directory {kind!r} (AUTHSERVER_DIRECTORY): expected one of "
        + ", ".join(DIRECTORY_KINDS)
    )
