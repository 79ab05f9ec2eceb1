"""The espace's services come from configuration (AUTHSERVER_SERVICES): a bad file stops the
server with one line naming the variable; the links carry the configured URLs; the guide's
route (« Mes services administratifs » → « Licencier pour motif économique » → the CSP page →
« J'accède au service ») exists; gated services read as in the guide when not certified.

Real database and SMTP server; the employer goes through the real onboarding over HTTP.
"""

from __future__ import annotations

import json
import re
import subprocess
from html import unescape
from pathlib import Path

import pytest
from flask import Flask

from authserver.config import ConfigError, load_settings
from authserver.establishments.portal_services import (
    DEFAULT_PATH,
    ServicesFileError,
    load_catalog,
    parse_catalog,
)
from tests.conftest import Actions
from tests.establishments.test_flow import (
    _decide_online,
    _start_online,
    active_establishments,
    attach,
    choose_certification,
    employer,
    location,
)
from tests.services import SMTPServer

ROOT = Path(__file__).resolve().parents[2]
KIT = "http://localhost:5001/login"
CSP_PAGE = "/espace/services/licencier-motif-economique"
CSP_KIT = "Proposer le Contrat de Sécurisation Professionnelle (CSP) : télécharger le kit CSP"
GUIDE_GROUPS = {
    "Je gère mes contrats de travail": [
        "Remettre une attestation employeur",
        "Licencier pour motif économique",
        "Recourir à l'activité partielle",
        "Déclarer un refus de CDI suite à une fin de CDD ou de contrat de mission",
        "Se renseigner sur le droit du travail",
    ],
    "J'effectue mes déclarations et règle mes cotisations sociales": [
        "Régler ses cotisations sociales",
        "Régler ses cotisations sociales depuis l'étranger",
        "Employer des artistes et techniciens en CDD sans être un professionnel du spectacle",
        "Professionnel du spectacle : les services clés en main",
        "Télécharger une attestation de compte à jour",
    ],
}
DIRECT_ACCESS = [
    "Publier une offre en ligne",
    "Rechercher des candidats en ligne",
    "Demander une aide à la formation POEI",
    "Mon compte",
    "Donner de la visibilité à mon entreprise",
    "Remettre une attestation employeur",
]


def shipped() -> dict:
    return json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))


def employer_in_espace(app: Flask, smtp: SMTPServer, *, certified: bool) -> Actions:
    """An employer through the onboarding: SIRET, then online certification (approved) or
    the counsellor's (pending)."""
    actions = employer(app, smtp, "martin.dupont")
    attach(actions, active_establishments()[0].siret)
    if certified:
        assert location(_decide_online(actions, _start_online(actions), "approved")) == "/espace"
    else:
        assert choose_certification(actions, "counselor").status_code == 302
    return actions


def page(actions: Actions, path: str) -> str:
    response = actions.client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return unescape(response.get_data(as_text=True))


def panel(html: str, tab: str) -> str:
    start = html.index(f'id="tab-{tab}-panel"')
    end = html.find('id="tab-', start + 20)
    return html[start : end if end != -1 else len(html)]


def links(html: str) -> dict[str, str]:
    """Link text → href (tags inside a link removed)."""
    found = {}
    for href, inner in re.findall(r'<a [^>]*href="([^"]*)"[^>]*>(.*?)</a>', html, re.S):
        found[" ".join(re.sub(r"<[^>]+>", "", inner).split())] = href
    return found


# --- The file and the setting ------------------------------------------------------------------


def test_the_shipped_file_names_the_guides_services() -> None:
    catalog = load_catalog()
    groups = {
        group.title: [s.title for s in group.services] for group in catalog.groups("administratif")
    }
    assert groups == GUIDE_GROUPS
    assert [s.title for s in catalog.named(catalog.direct_access)] == DIRECT_ACCESS
    kit = catalog.get("kit-csp")
    assert kit is not None and kit.url == KIT and kit.parent == "licencier-motif-economique"


def bad(**changes: object) -> dict:
    document = shipped()
    document["services"][0].update(changes)
    return document


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({}, "une liste « services » est attendue"),
        ({"services": []}, "« services » est vide"),
        ({"services": [], "extra": 1}, "clé inconnue « extra »"),
        (bad(url="javascript:alert(1)"), "« url » : URL http(s) ou chemin"),
        (bad(url="//evil.example/"), "chemin local invalide"),
        (bad(tab="divers"), "« tab » : valeurs possibles"),
        (bad(certification="oui"), "« certification » : true ou false"),
        (bad(certifcation=True), "clé inconnue « certifcation »"),
        (bad(id="Publier Offre"), "« id » : minuscules"),
        (bad(title=""), "« title » : texte non vide"),
        (bad(page="inconnue"), "« page » : valeurs possibles"),
        (bad(parent="nulle-part"), "« parent » doit nommer"),
        (bad(id="rechercher-candidats"), "« id » en double"),
        ({**shipped(), "accueil": {"direct_access": ["absent"]}}, "aucun service n'a l'« id »"),
    ],
)
def test_bad_files_are_refused_with_the_reason(document: dict, expected: str) -> None:
    with pytest.raises(ServicesFileError, match=re.escape(expected)):
        parse_catalog(document)


def test_a_bad_file_is_a_config_error_naming_the_variable(tmp_path: Path) -> None:
    broken = tmp_path / "services.json"
    broken.write_text('{"services": [', encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings(
            {"AUTHSERVER_SERVICES": str(broken), "AUTHSERVER_INSTANCE_PATH": str(tmp_path)}
        )
    assert error.value.variable == "AUTHSERVER_SERVICES"
    assert "n'est pas un JSON valide" in error.value.reason
    with pytest.raises(ConfigError, match="AUTHSERVER_SERVICES"):
        load_settings(
            {
                "AUTHSERVER_SERVICES": str(tmp_path / "absent.json"),
                "AUTHSERVER_INSTANCE_PATH": str(tmp_path),
            }
        )


def test_authserver_serve_stops_with_one_line(tmp_path: Path) -> None:
    """The start-up a person sees: one line naming the variable, status 2, no traceback."""
    broken = tmp_path / "services.json"
    broken.write_text(json.dumps(bad(url="ftp://kit.example/")), encoding="utf-8")
    env = {
        "PATH": "/usr/bin:/bin",
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path),
        "AUTHSERVER_SERVICES": str(broken),
    }
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "authserver"), "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("authserver : configuration invalide — AUTHSERVER_SERVICES : ")
    assert "« url »" in lines[0] and "Traceback" not in done.stderr


# --- The espace --------------------------------------------------------------------------------


def test_certified_espace_links_carry_the_configured_urls(app: Flask, smtp: SMTPServer) -> None:
    actions = employer_in_espace(app, smtp, certified=True)
    html = page(actions, "/espace")
    administratif = panel(html, "administratif")
    # The guide's groups, in its order.
    headings = re.findall(r'<h3 class="fr-h6 espace-group">(.*?)</h3>', administratif)
    assert headings == list(GUIDE_GROUPS)
    found = links(administratif)
    assert found["Licencier pour motif économique"] == CSP_PAGE
    assert found[CSP_KIT] == KIT
    assert found["Se renseigner sur le droit du travail"] == "https://code.travail.gouv.fr/"
    # A service without an address leads to our page saying so, never to "#".
    assert found["Recourir à l'activité partielle"] == "/espace/services/activite-partielle"
    assert 'href="#"' not in html
    # Accueil: « Mon accompagnement », « Mes contacts », « Mes actions », the six direct
    # accesses, « Personnaliser vos accès ».
    accueil = panel(html, "accueil")
    for heading in (
        "Mon accompagnement",
        "Mes actions",
        "Mes accès directs",
        "Personnaliser vos accès",
    ):
        assert f">{heading}</h2>" in accueil, heading
    tiles = re.findall(r'<h3 class="fr-tile__title"><a href="([^"]*)">(.*?)</a></h3>', accueil)
    assert [title for _, title in tiles] == DIRECT_ACCESS
    assert dict((title, href) for href, title in tiles)["Mon compte"] == "/account"
    assert "6 services en accès directs" in accueil
    for text in (
        "Mes contacts",
        "Offres en cours",
        "Mes demandes POEI",
        "Ajouter des accès directs",
    ):
        assert text in links(accueil), text
    assert "vous devez disposer d'un espace certifié" not in html

    unavailable = page(actions, "/espace/services/activite-partielle")
    assert 'id="service-unavailable"' in unavailable

    # The guide's CSP page; « J'accède au service » goes to the kit.
    csp = page(actions, CSP_PAGE)
    assert (
        "Licenciement économique : vous devez proposer le Contrat de sécurisation "
        "professionnelle (CSP) à vos salariés"
    ) in csp
    for heading in ("Les avantages", "Pour en savoir plus"):
        assert f">{heading}</h2>" in csp
    assert links(csp)["J'accède au service"] == KIT
    assert links(csp)[
        "Cliquez ici pour en savoir plus sur le Contrat de Sécurisation Professionnelle"
    ] == ("http://localhost:5001/en-savoir-plus")
    assert 'id="certification-required"' not in csp
    # Its breadcrumb leads back to the tab it came from, opened.
    assert links(csp)["Réaliser des démarches administratives / réglementaires"] == (
        "/espace?onglet=administratif"
    )
    opened = page(actions, "/espace?onglet=administratif")
    assert re.search(r'id="tab-administratif"[^>]*aria-selected="true"', opened)
    # Certified, the « access » address goes straight to the service.
    access = actions.client.get(f"{CSP_PAGE}/acces")
    assert access.status_code == 302 and access.headers["Location"] == KIT
    assert actions.client.get("/espace/services/nope").status_code == 404


def test_uncertified_espace_shows_the_guides_message(app: Flask, smtp: SMTPServer) -> None:
    actions = employer_in_espace(app, smtp, certified=False)
    html = page(actions, "/espace")
    administratif = panel(html, "administratif")
    found = links(administratif)
    # The guide's route stays open (the CSP page informs every employer); the kit is gated.
    assert found["Licencier pour motif économique"] == CSP_PAGE
    assert CSP_KIT not in found and KIT not in html
    assert "Remettre une attestation employeur" not in found
    assert found["Se renseigner sur le droit du travail"] == "https://code.travail.gouv.fr/"
    assert (
        "Pour récupérer les documents liés au contrat de sécurisation professionnelle : Document "
        "d'information, notice d'information salarié, bulletin d'acceptation et demande "
        "d'allocation, vous devez disposer d'un espace certifié*."
    ) in administratif
    # Gated direct accesses lead to the guide's message instead of the service.
    tiles = dict(
        (title, href)
        for href, title in re.findall(
            r'<h3 class="fr-tile__title"><a href="([^"]*)">(.*?)</a>', html
        )
    )
    assert (
        tiles["Rechercher des candidats en ligne"] == "/espace/services/rechercher-candidats/acces"
    )
    assert tiles["Publier une offre en ligne"] == "/espace/services/publier-offre"

    csp = page(actions, CSP_PAGE)
    assert links(csp)["J'accède au service"] == f"{CSP_PAGE}/acces"
    assert 'id="certification-required"' in csp and "08 06 06 00 20" in csp
    gated = page(actions, f"{CSP_PAGE}/acces")
    assert '<h1 class="fr-h2">Contrat de Sécurisation Professionnelle</h1>' in gated
    assert "<strong>vous devez disposer d'un espace certifié*.</strong>" in gated
    assert (
        "Vous allez être contacté par un conseiller France Travail dans les plus brefs délais"
        in gated
    )
    assert KIT not in gated


def test_another_services_file_is_used(make_app, smtp: SMTPServer, tmp_path: Path) -> None:
    document = shipped()
    for service in document["services"]:
        if service.get("url", "").startswith("http://localhost:5001"):
            service["url"] = "https://kit-csp.portail.example/login"
    path = tmp_path / "services.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    app = make_app(AUTHSERVER_SERVICES=str(path))
    actions = employer_in_espace(app, smtp, certified=True)
    assert links(page(actions, "/espace"))[CSP_KIT] == "https://kit-csp.portail.example/login"
    assert links(page(actions, CSP_PAGE))["J'accède au service"] == (
        "https://kit-csp.portail.example/login"
    )


# --- « Personnaliser vos accès » -----------------------------------------------------------


def tiles_of(actions: Actions) -> list[str]:
    html = page(actions, "/espace")
    return re.findall(r'<h3 class="fr-tile__title"><a href="[^"]*">(.*?)</a>', html)


def test_personalised_direct_accesses(app: Flask, smtp: SMTPServer) -> None:
    actions = employer_in_espace(app, smtp, certified=True)
    form = page(actions, "/espace/acces-directs")
    checked = re.findall(r'name="service" value="([^"]+)" id="[^"]+" checked', form)
    assert sorted(load_catalog().get(s).title for s in checked) == sorted(DIRECT_ACCESS)
    csrf = actions.csrf("/espace/acces-directs")

    def post(*ids: str, **extra: str):
        data = {"csrf_token": csrf, "service": list(ids), **extra}
        return actions.client.post("/espace/acces-directs", data=data)

    saved = post("kit-csp", "droit-du-travail", action="save")
    assert saved.status_code == 302 and location(saved) == "/espace"
    assert tiles_of(actions) == [CSP_KIT, "Se renseigner sur le droit du travail"]
    assert "2 services en accès directs" in page(actions, "/espace")

    # More than six, a box that is not on the page, no CSRF token: refused, nothing changed.
    seven = [s.id for s in load_catalog().shortcut_choices()][:7]
    too_many = post(*seven, action="save")
    assert too_many.status_code == 400
    assert "Choisissez au plus 6 services." in unescape(too_many.get_data(as_text=True))
    assert post("mes-contacts", action="save").status_code == 400
    assert post("nope", action="save").status_code == 400
    forged = actions.client.post("/espace/acces-directs", data={"service": ["publier-offre"]})
    assert forged.status_code == 400
    assert tiles_of(actions) == [CSP_KIT, "Se renseigner sur le droit du travail"]

    # « Revenir aux accès proposés »: the file's six again.
    assert post(action="reset").status_code == 302
    assert tiles_of(actions) == DIRECT_ACCESS
