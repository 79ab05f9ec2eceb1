"""The company directories: the embedded file, and each HTTP adapter against a local server.

The local server answers in the documented formats of the « API Recherche
d'entreprises » and of INSEE's API Sirene 3.11. Nothing here reaches the internet.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from authserver.establishments import directory as directory_module
from authserver.establishments.directory import (
    DEFAULT_EMBEDDED_PATH,
    DEMO_SIRET,
    NAF_LABELS,
    SIRENE_KEY_HEADER,
    DirectoryUnavailable,
    EmbeddedDirectory,
    Establishment,
    RechercheEntreprisesDirectory,
    SireneDirectory,
    make_directory,
    naf_label,
    normalize_naf,
)
from authserver.establishments.siret import LA_POSTE_SIREN, luhn_valid, validate
from tests.establishments import local_http

SIRET = "69279251800015"  # siège
SECONDARY = "69279251800023"
UNKNOWN = "73282932000074"  # valid, in no fake answer


# --- a local fake API ------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = b""  # bytes sent as is, anything else as JSON
    delay: float = 0.0


@dataclass
class FakeApi:
    """An HTTP server on 127.0.0.1 that plays queued replies (the last one repeats).

    Header names are recorded in lower case.
    """

    replies: list[Reply] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def play(self, *replies: Reply) -> None:
        self.replies[:] = replies

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                fake.requests.append((self.path, headers))
                reply = fake.replies.pop(0) if len(fake.replies) > 1 else fake.replies[0]
                if reply.delay and fake.stop.wait(reply.delay):
                    return
                body = reply.body
                if not isinstance(body, bytes):
                    body = json.dumps(body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = local_http.serve(Handler)

    def close(self) -> None:
        local_http.close(self.server, self.stop)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    local_http.without_proxies(monkeypatch)
    fake = FakeApi()
    fake.start()
    yield fake
    fake.close()


# --- the documented answers ------------------------------------------------------------


def recherche_answer(*, state: str = "A", siege_only: bool = False) -> dict[str, Any]:
    """GET /search?q=<siret>: the unit, its siège and the establishments matching q."""
    siege = {
        "siret": SIRET,
        "adresse": "14 RUE DE LA REPUBLIQUE 69002 LYON",
        "code_postal": "69002",
        "libelle_commune": "LYON",
        "commune": "69382",
        "activite_principale": "10.71C",
        "etat_administratif": "A",
        "est_siege": True,
    }
    secondary = {
        "siret": SECONDARY,
        "adresse": "3 PLACE SATHONAY 69001 LYON",
        "code_postal": "69001",
        "libelle_commune": "LYON",
        "activite_principale": "10.71C",
        "etat_administratif": state,
        "est_siege": False,
    }
    return {
        "results": [
            {
                "siren": "692792518",
                "nom_complet": "BOULANGERIE PATISSERIE LEBLANC",
                "nom_raison_sociale": "BOULANGERIE PATISSERIE LEBLANC",
                "activite_principale": "10.71C",
                "etat_administratif": "A",
                "siege": siege,
                "matching_etablissements": [] if siege_only else [secondary],
            }
        ],
        "total_results": 1,
        "page": 1,
        "per_page": 1,
        "total_pages": 1,
    }


EMPTY_RECHERCHE = {"results": [], "total_results": 0, "page": 1, "per_page": 1, "total_pages": 0}


def sirene_answer(*, closed: bool = False, company: bool = True) -> dict[str, Any]:
    """GET /siret/<siret>: one establishment with its legal unit and its periods."""
    unit: dict[str, Any] = {
        "etatAdministratifUniteLegale": "A",
        "denominationUniteLegale": "BOULANGERIE PATISSERIE LEBLANC" if company else None,
        "nomUniteLegale": None if company else "LEBLANC",
        "prenom1UniteLegale": None if company else "CLAIRE",
        "activitePrincipaleUniteLegale": "10.71C",
        "categorieJuridiqueUniteLegale": "5499",
    }
    periods: list[dict[str, Any]] = [
        {
            "dateFin": None,
            "dateDebut": "2024-03-01",
            "etatAdministratifEtablissement": "F" if closed else "A",
            "activitePrincipaleEtablissement": "10.71C",
            "nomenclatureActivitePrincipaleEtablissement": "NAFRev2",
        },
        {
            "dateFin": "2024-02-29",
            "dateDebut": "2012-05-14",
            "etatAdministratifEtablissement": "A",
            "activitePrincipaleEtablissement": "47.24Z",
        },
    ]
    return {
        "header": {"statut": 200, "message": "ok"},
        "etablissement": {
            "siren": "692792518",
            "nic": "00023",
            "siret": SECONDARY,
            "statutDiffusionEtablissement": "O",
            "etablissementSiege": False,
            "uniteLegale": unit,
            "adresseEtablissement": {
                "complementAdresseEtablissement": None,
                "numeroVoieEtablissement": "3",
                "indiceRepetitionEtablissement": "B",
                "typeVoieEtablissement": "PL",
                "libelleVoieEtablissement": "SATHONAY",
                "codePostalEtablissement": "69001",
                "libelleCommuneEtablissement": "LYON",
                "codeCommuneEtablissement": "69381",
            },
            "periodesEtablissement": periods,
        },
    }


SIRENE_NOT_FOUND = {"header": {"statut": 404, "message": "Aucun élément trouvé pour le siret"}}


# --- the adapters, built against the fake server ------------------------------------------

Factory = Callable[..., Any]


def recherche(url: str, **options: Any) -> RechercheEntreprisesDirectory:
    options.setdefault("backoff", 0.01)
    return RechercheEntreprisesDirectory(url, **options)


def sirene(url: str, **options: Any) -> SireneDirectory:
    options.setdefault("backoff", 0.01)
    return SireneDirectory("test-key", url, **options)


FOUND = {"recherche": recherche_answer, "sirene": sirene_answer}
ADAPTERS = {"recherche": recherche, "sirene": sirene}


@pytest.fixture(params=["recherche", "sirene"])
def adapter(request: pytest.FixtureRequest) -> str:
    return request.param


# --- API Recherche d'entreprises --------------------------------------------------------


def test_recherche_found_in_matching_establishments(api: FakeApi) -> None:
    api.play(Reply(body=recherche_answer()))
    found = recherche(api.url).lookup("692 792 518 00023")
    assert found == Establishment(
        siret=SECONDARY,
        siren="692792518",
        name="BOULANGERIE PATISSERIE LEBLANC",
        address="3 PLACE SATHONAY",
        postal_code="69001",
        city="LYON",
        naf_code="10.71C",
        naf_label="Boulangerie et boulangerie-pâtisserie",
        active=True,
    )
    assert found.full_address == "3 PLACE SATHONAY, 69001 LYON"
    path, headers = api.requests[0]
    parts = urlsplit(path)
    assert parts.path == "/search"
    assert parse_qs(parts.query) == {"q": [SECONDARY], "page": ["1"], "per_page": ["1"]}
    assert headers["accept"] == "application/json"


def test_recherche_found_as_siege(api: FakeApi) -> None:
    api.play(Reply(body=recherche_answer(siege_only=True)))
    found = recherche(api.url).lookup(SIRET)
    assert found is not None
    assert (found.siret, found.address, found.postal_code) == (
        SIRET,
        "14 RUE DE LA REPUBLIQUE",
        "69002",
    )


def test_recherche_closed(api: FakeApi) -> None:
    api.play(Reply(body=recherche_answer(state="F")))
    found = recherche(api.url).lookup(SECONDARY)
    assert found is not None and found.active is False


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=EMPTY_RECHERCHE),
        Reply(status=404, body={"erreur": "Not found"}),
        # The API found a unit, but not this establishment: unknown too.
        Reply(body=recherche_answer(siege_only=True) | {"total_results": 1}),
    ],
)
def test_recherche_not_found(api: FakeApi, reply: Reply) -> None:
    api.play(reply)
    assert recherche(api.url).lookup(UNKNOWN) is None


# --- API Sirene ---------------------------------------------------------------------------


def test_sirene_found(api: FakeApi) -> None:
    api.play(Reply(body=sirene_answer()))
    found = sirene(api.url).lookup(SECONDARY)
    assert found == Establishment(
        siret=SECONDARY,
        siren="692792518",
        name="BOULANGERIE PATISSERIE LEBLANC",
        address="3 BIS PLACE SATHONAY",
        postal_code="69001",
        city="LYON",
        naf_code="10.71C",  # from the current period, not the closed one
        naf_label="Boulangerie et boulangerie-pâtisserie",
        active=True,
    )
    path, headers = api.requests[0]
    assert path == f"/siret/{SECONDARY}"
    assert headers[SIRENE_KEY_HEADER.lower()] == "test-key"


def test_sirene_individual_entrepreneur(api: FakeApi) -> None:
    api.play(Reply(body=sirene_answer(company=False)))
    found = sirene(api.url).lookup(SECONDARY)
    assert found is not None and found.name == "CLAIRE LEBLANC"


def test_sirene_closed(api: FakeApi) -> None:
    api.play(Reply(body=sirene_answer(closed=True)))
    found = sirene(api.url).lookup(SECONDARY)
    assert found is not None and found.active is False


def test_sirene_not_found(api: FakeApi) -> None:
    api.play(Reply(status=404, body=SIRENE_NOT_FOUND))
    assert sirene(api.url).lookup(UNKNOWN) is None
    assert len(api.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_sirene_wrong_key(api: FakeApi, status: int) -> None:
    api.play(Reply(status=status, body={"fault": {"message": "Invalid Credentials"}}))
    with pytest.raises(DirectoryUnavailable, match="AUTHSERVER_SIRENE_API_KEY") as caught:
        sirene(api.url).lookup(SECONDARY)
    assert caught.value.user_message.startswith("Le service de recherche des entreprises")
    assert len(api.requests) == 1  # never retried


# --- both adapters: failures, retries and the time bound ---------------------------------


def test_5xx_then_success(api: FakeApi, adapter: str) -> None:
    api.play(Reply(status=503, body=b"busy"), Reply(status=502), Reply(body=FOUND[adapter]()))
    found = ADAPTERS[adapter](api.url).lookup(SECONDARY)
    assert found is not None and found.siret == SECONDARY
    assert len(api.requests) == 3


def test_429_is_retried(api: FakeApi, adapter: str) -> None:
    api.play(Reply(status=429, body={"message": "Too many requests"}), Reply(body=FOUND[adapter]()))
    assert ADAPTERS[adapter](api.url).lookup(SECONDARY) is not None
    assert len(api.requests) == 2


def test_5xx_always(api: FakeApi, adapter: str) -> None:
    api.play(Reply(status=500, body=b"<html>Internal Server Error</html>"))
    with pytest.raises(DirectoryUnavailable, match="HTTP 500"):
        ADAPTERS[adapter](api.url, retries=2).lookup(SECONDARY)
    assert len(api.requests) == 3  # one attempt and two retries


def test_other_4xx_not_retried(api: FakeApi, adapter: str) -> None:
    api.play(Reply(status=400, body={"erreur": "bad request"}))
    with pytest.raises(DirectoryUnavailable, match="HTTP 400"):
        ADAPTERS[adapter](api.url).lookup(SECONDARY)
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>502 Bad Gateway</body></html>",
        b'{"results": [',
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'{"results": "none", "etablissement": 42}',
        b'{"results": [{"siren": 1, "nom_complet": ["x"], "siege": {"siret": "69279251800023"}}],'
        b' "etablissement": {"siret": "69279251800023", "uniteLegale": "x"}}',
    ],
)
def test_garbage(api: FakeApi, adapter: str, body: bytes) -> None:
    api.play(Reply(body=body))
    with pytest.raises(DirectoryUnavailable):
        ADAPTERS[adapter](api.url).lookup(SECONDARY)
    assert len(api.requests) == 1


def test_timeout_is_bounded(api: FakeApi, adapter: str) -> None:
    api.play(Reply(body=FOUND[adapter](), delay=5.0))
    directory = ADAPTERS[adapter](api.url, timeout=0.3, retries=2, total_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable):
        directory.lookup(SECONDARY)
    # Bounded by the 1 s budget, far from the 5 s the API would take (wide margin: CI is loaded).
    assert time.monotonic() - started < 3.0
    assert len(api.requests) == 3


def test_total_timeout_stops_retries(api: FakeApi, adapter: str) -> None:
    api.play(Reply(body=FOUND[adapter](), delay=5.0))
    directory = ADAPTERS[adapter](api.url, timeout=0.25, retries=10, total_timeout=0.6)
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable, match="time budget"):
        directory.lookup(SECONDARY)
    # Without the budget, 11 attempts of 0.25 s and their backoff would take well over 5 s.
    assert time.monotonic() - started < 2.5
    assert len(api.requests) <= 3


def test_slow_then_fast(api: FakeApi, adapter: str) -> None:
    api.play(Reply(body=FOUND[adapter](), delay=5.0), Reply(body=FOUND[adapter]()))
    directory = ADAPTERS[adapter](api.url, timeout=0.3, retries=1)
    assert directory.lookup(SECONDARY) is not None
    assert len(api.requests) == 2


def test_connection_refused(adapter: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable, match="after 3 attempts"):
        ADAPTERS[adapter](f"http://127.0.0.1:{port}").lookup(SECONDARY)
    assert time.monotonic() - started < 3.0  # the backoff only (0.75 s), no read timeout


def test_malformed_siret_is_not_sent(api: FakeApi, adapter: str) -> None:
    api.play(Reply(body=FOUND[adapter]()))
    assert ADAPTERS[adapter](api.url).lookup("../../etc") is None
    assert api.requests == []


def test_defaults_bound_the_wait() -> None:
    for directory in (RechercheEntreprisesDirectory(), SireneDirectory("k")):
        assert (directory.timeout, directory.retries, directory.total_timeout) == (3.0, 2, 7.0)
    assert RechercheEntreprisesDirectory().base_url == "https://recherche-entreprises.api.gouv.fr"
    assert SireneDirectory("k").base_url == "https://api.insee.fr/api-sirene/3.11"


# --- the embedded directory -----------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded() -> EmbeddedDirectory:
    return EmbeddedDirectory()


def test_embedded_entries_are_valid(embedded: EmbeddedDirectory) -> None:
    entries = embedded.entries()
    raw = json.loads(DEFAULT_EMBEDDED_PATH.read_text(encoding="utf-8"))["establishments"]
    assert 30 <= len(entries) == len(raw) <= 50
    assert len({entry.siret for entry in entries}) == len(raw)  # unique
    for entry in entries:
        assert validate(entry.siret) == entry.siret
        assert entry.siren == entry.siret[:9]
        assert luhn_valid(entry.siren)
        assert entry.name.strip() and entry.name == entry.name.upper()
        assert entry.address and entry.city
        assert re.fullmatch(r"\d{5}", entry.postal_code)
        assert re.fullmatch(r"\d{2}\.\d{2}[A-Z]", entry.naf_code)
        assert entry.naf_label == NAF_LABELS[entry.naf_code]
        assert isinstance(entry.active, bool)


def test_embedded_special_cases(embedded: EmbeddedDirectory) -> None:
    entries = embedded.entries()
    assert entries[0].siret == DEMO_SIRET and entries[0].active
    closed = [entry for entry in entries if not entry.active]
    assert len(closed) >= 2
    la_poste = [entry for entry in entries if entry.siren == LA_POSTE_SIREN]
    assert sum(not luhn_valid(entry.siret) for entry in la_poste) >= 2  # the exception
    several = {entry.siren for entry in entries if entry.active}
    assert len(several) < sum(entry.active for entry in entries)  # companies with 2+ sites


def test_embedded_lookup(embedded: EmbeddedDirectory) -> None:
    found = embedded.lookup("692 792 518 00015")
    assert found is not None and found.name == "BOULANGERIE PATISSERIE LEBLANC"
    assert embedded.lookup(UNKNOWN) is None
    assert embedded.lookup("") is None
    # What the views keep in the session comes back whole.
    assert Establishment(**asdict(found)) == found


def test_embedded_other_file(tmp_path: Any) -> None:
    path = tmp_path / "mine.json"
    entry = asdict(EmbeddedDirectory().entries()[0])
    path.write_text(json.dumps({"establishments": [entry]}), encoding="utf-8")
    assert EmbeddedDirectory(path).lookup(entry["siret"]) is not None
    path.write_text(json.dumps({"establishments": [{"siret": "1"}]}), encoding="utf-8")
    with pytest.raises(ValueError, match="entry 0"):
        EmbeddedDirectory(path)


# --- configuration and NAF ----------------------------------------------------------------


def test_make_directory() -> None:
    assert isinstance(make_directory("embedded"), EmbeddedDirectory)
    assert isinstance(make_directory(""), EmbeddedDirectory)
    made = make_directory("recherche-entreprises", api_key=None, base_url="http://127.0.0.1:9")
    assert isinstance(made, RechercheEntreprisesDirectory)
    assert made.base_url == "http://127.0.0.1:9"
    made = make_directory("sirene", api_key="k", base_url=None)
    assert isinstance(made, SireneDirectory)
    assert made.base_url == directory_module.SIRENE_URL
    with pytest.raises(ValueError, match="AUTHSERVER_SIRENE_API_KEY"):
        make_directory("sirene", api_key=None, base_url=None)
    with pytest.raises(ValueError, match="embedded, recherche-entreprises, sirene"):
        make_directory("pappers", api_key=None, base_url=None)
    with pytest.raises(ValueError, match="http"):
        make_directory("recherche-entreprises", api_key=None, base_url="file:///etc/passwd")


@pytest.mark.parametrize(
    ("code", "normalized", "label"),
    [
        ("62.01Z", "62.01Z", "Programmation informatique"),
        ("6201Z", "62.01Z", "Programmation informatique"),
        (" 56.10a ", "56.10A", "Restauration traditionnelle"),
        ("99.99Z", "99.99Z", ""),
        ("", "", ""),
    ],
)
def test_naf(code: str, normalized: str, label: str) -> None:
    assert normalize_naf(code) == normalized
    assert naf_label(code) == label
