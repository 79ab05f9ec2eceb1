"""The portal's services listed in « Mon espace personnel »: their names, tabs, groups, where
they live and whether they need a certified espace.

They come from a JSON file (AUTHSERVER_SERVICES; ``authserver/data/portal_services.json`` by
default, where the CSP kit example is at ``http://localhost:5001``)::

    {
      "services": [
        {"id": "licencier-motif-economique", "title": "Licencier pour motif économique",
         "tab": "administratif", "group": "Je gère mes contrats de travail",
         "url": "http://localhost:5001/login", "certification": true, "page": "csp"},
        …
      ],
      "accueil": {"contacts": "mes-contacts", "actions": ["offres-en-cours", …],
                  "direct_access": ["publier-offre", …]}
    }

A service's ``url`` is an absolute http(s) URL, or a path of this server (``/account``); a
service without one leads to a page saying it is not available from the espace yet. ``page``
names a guide page of ours shown before the service (``csp``: « Licenciement économique : vous
devez proposer le CSP… », whose « J'accède au service » leads to ``url``). ``parent`` nests a
service under another of the same tab. ``tab`` ``accueil``: shown only where the « accueil »
section names it.

The file is read and checked once, at start-up (config.py): a bad file stops the server with
one line naming AUTHSERVER_SERVICES. No Flask here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "portal_services.json"

TABS = ("accueil", "recrutement", "administratif")
# Guide pages shipped as templates/establishments/services/<page>.html.
PAGES = ("csp",)
# The seed's first sentence when the espace is not certified (a service may give its own).
GATED_INTRO = "Pour accéder à ce service, vous devez disposer d'un espace certifié*."

_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_KEYS = {
    "id",
    "title",
    "tab",
    "group",
    "url",
    "certification",
    "page",
    "parent",
    "gated_intro",
    "more_info_url",
    "description",
}
_ACCUEIL_KEYS = {"contacts", "actions", "direct_access"}
MAX_DIRECT_ACCESS = 6


class ServicesFileError(ValueError):
    """The services file cannot be used; the message (French) says where and why."""


@dataclass(frozen=True)
class PortalService:
    id: str
    title: str
    tab: str
    url: str | None
    needs_certification: bool
    group: str | None = None
    page: str | None = None
    parent: str | None = None
    gated_intro: str = GATED_INTRO
    more_info_url: str | None = None
    description: str | None = None

    @property
    def external(self) -> bool:
        """Served by another portal service (its own origin), not by this server."""
        return self.url is not None and not self.url.startswith("/")


@dataclass(frozen=True)
class ServiceGroup:
    """One heading of a tab (``title`` None: the tab's services have no groups)."""

    title: str | None
    services: tuple[PortalService, ...]


@dataclass(frozen=True)
class Catalog:
    services: tuple[PortalService, ...]
    contacts: str | None = None
    actions: tuple[str, ...] = ()
    direct_access: tuple[str, ...] = ()
    _by_id: dict[str, PortalService] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({service.id: service for service in self.services})

    def get(self, service_id: str) -> PortalService | None:
        return self._by_id.get(service_id)

    def children(self, service: PortalService) -> tuple[PortalService, ...]:
        return tuple(s for s in self.services if s.parent == service.id)

    def groups(self, tab: str) -> tuple[ServiceGroup, ...]:
        """The tab's top-level services under their headings, in the file's order."""
        order: list[str | None] = []
        members: dict[str | None, list[PortalService]] = {}
        for service in self.services:
            if service.tab != tab or service.parent is not None:
                continue
            if service.group not in members:
                order.append(service.group)
                members[service.group] = []
            members[service.group].append(service)
        return tuple(ServiceGroup(title, tuple(members[title])) for title in order)

    def named(self, ids: tuple[str, ...]) -> tuple[PortalService, ...]:
        return tuple(self._by_id[service_id] for service_id in ids)

    def shortcut_choices(self) -> tuple[PortalService, ...]:
        """What « Personnaliser vos accès » offers: every service of the two service tabs,
        and those the file itself puts in « Mes accès directs » (« Mon compte »)."""
        return tuple(
            service
            for service in self.services
            if service.tab != "accueil" or service.id in self.direct_access
        )

    def shortcuts(self, chosen: list[str] | None) -> tuple[PortalService, ...]:
        """« Mes accès directs »: a person's choice (None: the file's), in the file's order;
        ids the file no longer offers are dropped."""
        if chosen is None:
            return self.named(self.direct_access)
        wanted = set(chosen)
        picked = tuple(s for s in self.shortcut_choices() if s.id in wanted)
        return picked[:MAX_DIRECT_ACCESS]


def _url(value: Any, where: str, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ServicesFileError(f"{where} : « {key} » doit être une chaîne (ou null)")
    value = value.strip()
    if value.startswith("/"):
        if value.startswith("//") or "\\" in value:
            raise ServicesFileError(f"{where} : « {key} » : chemin local invalide {value!r}")
        return value
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        valid = False
    if not valid:
        raise ServicesFileError(
            f"{where} : « {key} » : URL http(s) ou chemin commençant par / attendu, reçu {value!r}"
        )
    return value


def _text(row: dict[str, Any], key: str, where: str, *, required: bool) -> str | None:
    value = row.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ServicesFileError(f"{where} : « {key} » : texte non vide attendu")
    return " ".join(value.split())


def _service(row: Any, number: int) -> PortalService:
    where = f"service n° {number}"
    if not isinstance(row, dict):
        raise ServicesFileError(f"{where} : un objet est attendu")
    if isinstance(row.get("id"), str):
        where = f"service « {row['id']} »"
    unknown = sorted(set(row) - _KEYS)
    if unknown:
        raise ServicesFileError(
            f"{where} : clé inconnue « {unknown[0]} » (clés possibles : {', '.join(sorted(_KEYS))})"
        )
    service_id = row.get("id")
    if not isinstance(service_id, str) or not _ID.fullmatch(service_id):
        raise ServicesFileError(f"{where} : « id » : minuscules, chiffres et tirets attendus")
    tab = row.get("tab")
    if tab not in TABS:
        raise ServicesFileError(f"{where} : « tab » : valeurs possibles : {', '.join(TABS)}")
    certification = row.get("certification", False)
    if not isinstance(certification, bool):
        raise ServicesFileError(f"{where} : « certification » : true ou false attendu")
    page = row.get("page")
    if page is not None and page not in PAGES:
        raise ServicesFileError(f"{where} : « page » : valeurs possibles : {', '.join(PAGES)}")
    parent = row.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise ServicesFileError(f"{where} : « parent » : l'« id » d'un autre service attendu")
    return PortalService(
        id=service_id,
        title=_text(row, "title", where, required=True) or "",
        tab=tab,
        group=_text(row, "group", where, required=False),
        url=_url(row.get("url"), where, "url"),
        needs_certification=certification,
        page=page,
        parent=parent,
        gated_intro=_text(row, "gated_intro", where, required=False) or GATED_INTRO,
        more_info_url=_url(row.get("more_info_url"), where, "more_info_url"),
        description=_text(row, "description", where, required=False),
    )


def _ids(value: Any, known: dict[str, PortalService], key: str) -> tuple[str, ...]:
    where = f"accueil.{key}"
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ServicesFileError(f"{where} : une liste d'« id » de services est attendue")
    for item in value:
        if item not in known:
            raise ServicesFileError(f"{where} : aucun service n'a l'« id » « {item} »")
    if len(set(value)) != len(value):
        raise ServicesFileError(f"{where} : un service y figure deux fois")
    return tuple(value)


def parse_catalog(document: Any) -> Catalog:
    """Check a decoded services file; ``ServicesFileError`` names the first problem."""
    if not isinstance(document, dict) or not isinstance(document.get("services"), list):
        raise ServicesFileError("une liste « services » est attendue")
    unknown = sorted(set(document) - {"about", "services", "accueil"})
    if unknown:
        raise ServicesFileError(f"clé inconnue « {unknown[0]} » (about, services, accueil)")
    services = tuple(_service(row, n) for n, row in enumerate(document["services"], start=1))
    if not services:
        raise ServicesFileError("« services » est vide")
    known: dict[str, PortalService] = {}
    for service in services:
        if service.id in known:
            raise ServicesFileError(f"service « {service.id} » : « id » en double")
        known[service.id] = service
    for service in services:
        if service.parent is None:
            continue
        parent = known.get(service.parent)
        if parent is None or parent.parent is not None or parent.tab != service.tab:
            raise ServicesFileError(
                f"service « {service.id} » : « parent » doit nommer un service de premier "
                f"niveau du même onglet, reçu « {service.parent} »"
            )
    accueil = document.get("accueil", {})
    if not isinstance(accueil, dict) or set(accueil) - _ACCUEIL_KEYS:
        raise ServicesFileError(
            f"« accueil » : objet avec les clés {', '.join(sorted(_ACCUEIL_KEYS))} attendu"
        )
    contacts = accueil.get("contacts")
    if contacts is not None and contacts not in known:
        raise ServicesFileError(f"accueil.contacts : aucun service n'a l'« id » « {contacts} »")
    direct = _ids(accueil.get("direct_access", []), known, "direct_access")
    if len(direct) > MAX_DIRECT_ACCESS:
        raise ServicesFileError(f"accueil.direct_access : au plus {MAX_DIRECT_ACCESS} services")
    return Catalog(
        services=services,
        contacts=contacts,
        actions=_ids(accueil.get("actions", []), known, "actions"),
        direct_access=direct,
    )


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and check the services file (the shipped one when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ServicesFileError(f"{path} illisible ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ServicesFileError(f"{path} n'est pas un JSON valide ({exc})") from None
    try:
        return parse_catalog(document)
    except ServicesFileError as exc:
        raise ServicesFileError(f"{path} : {exc}") from None
