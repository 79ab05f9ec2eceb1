"""What a directory answers (an establishment, or that it cannot answer), and the
helpers every adapter shares to read an answer into one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from authserver.establishments.siret import normalize

DEFAULT_EMBEDDED_PATH = Path(__file__).resolve().parents[2] / "data" / "establishments.json"
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
