"""« Mon accompagnement »: the establishment's France Travail agency, from a table by département.

The table is a JSON file (AUTHSERVER_AGENCY_CONTACTS; ``authserver/data/agencies.json`` by
default, a small demonstration table)::

    {"departements": {"69": {"name": "…", "phone": "…", "email": "…"}, "2A": {…}, "974": {…}}}

The département comes from the establishment's postal code: its first two digits, ``2A`` /
``2B`` for Corsica (20000–20199 / 20200–20999), its first three overseas (971–976, 984–988).
An establishment whose département is not in the table, or without a postal code, gets the
global contact (AUTHSERVER_AGENCY_PHONE / AUTHSERVER_AGENCY_EMAIL). No Flask here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "agencies.json"

_POSTAL_CODE = re.compile(r"[0-9]{5}")
_DEPARTEMENT = re.compile(r"(0[1-9]|[1-8][0-9]|9[0-5]|2A|2B|97[1-6]|98[4-8])")


@dataclass(frozen=True)
class AgencyContact:
    name: str
    phone: str
    email: str


def departement_of(postal_code: str) -> str | None:
    """« 69002 » → « 69 », « 20000 » → « 2A », « 20200 » → « 2B », « 97400 » → « 974 »."""
    code = postal_code.strip()
    if not _POSTAL_CODE.fullmatch(code):
        return None
    if code.startswith("20"):
        return "2A" if code < "20200" else "2B"
    if code.startswith(("97", "98")):
        return code[:3]
    return code[:2]


class AgencyTable:
    def __init__(self, by_departement: dict[str, AgencyContact], default: AgencyContact) -> None:
        self.by_departement = by_departement
        self.default = default

    def for_postal_code(self, postal_code: str | None) -> AgencyContact:
        departement = departement_of(postal_code or "")
        return self.by_departement.get(departement or "", self.default)


def load_agency_table(path: str | Path | None, default: AgencyContact) -> AgencyTable:
    """Read and check the table; ``ValueError`` says what is wrong with the file."""
    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path} illisible ({exc.strerror})") from None
    except ValueError as exc:
        raise ValueError(f"{path} n'est pas un JSON valide ({exc})") from None
    rows = document.get("departements") if isinstance(document, dict) else None
    if not isinstance(rows, dict):
        raise ValueError(f"{path} : un objet « departements » est attendu")
    table: dict[str, AgencyContact] = {}
    for departement, row in rows.items():
        if not _DEPARTEMENT.fullmatch(departement):
            raise ValueError(f"{path} : « {departement} » n'est pas un numéro de département")
        if not isinstance(row, dict) or not all(
            isinstance(row.get(key), str) and row[key].strip() for key in ("phone", "email")
        ):
            raise ValueError(f"{path} : « {departement} » doit avoir « phone » et « email »")
        name = row.get("name")
        table[departement] = AgencyContact(
            name=name.strip() if isinstance(name, str) else "",
            phone=row["phone"].strip(),
            email=row["email"].strip(),
        )
    return AgencyTable(table, default)
