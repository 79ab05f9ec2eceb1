"""CSV export cells: nothing a spreadsheet would run as a formula, however it is disguised."""

from __future__ import annotations

import pytest

from authserver.alerts.console.export import safe_cell
from tests.alerts.console_helpers import add_events, add_user, at, client_as, parse_csv

DANGEROUS = [
    "=1+1",
    "+33612345678",
    "-2+3",
    "@SUM(A1)",
    '  =HYPERLINK("http://evil")',
    "\u00a0=1+1",  # no-break space
    "\u3000=1+1",  # ideographic space
    "\t=1+1",
    "\r=1+1",
    "\n=1+1",
    "\nbonjour",
    '\uff1dHYPERLINK("http://evil")',  # ＝
    "\uff0b1",  # ＋
    "\uff0d1",  # －
    "\uff20SUM(A1)",  # ＠
    "  \uff1d1",
]

HARMLESS = ["martin.dupont", "Mozilla/5.0 (X11; Linux x86_64)", "192.0.2.1", "a=b", "", "12"]


@pytest.mark.parametrize("value", DANGEROUS)
def test_formula_looking_cells_are_neutralised(value):
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", HARMLESS)
def test_other_cells_are_left_alone(value):
    assert safe_cell(value) == value


def test_none_and_numbers():
    assert safe_cell(None) == ""
    assert safe_cell(42) == "42"
    assert safe_cell(-1) == "'-1"  # never a formula, but a negative id does not exist anyway


def test_the_export_neutralises_what_arrives_from_outside(app, smtp):
    add_user(app, "equipe.securite", role="security")
    attempts = ['  =HYPERLINK("http://evil")', "\uff20SUM(A1)", "\n+1", "martin.dupont"]
    add_events(
        app,
        [
            {
                "username_attempt": attempt,
                "user_agent": "\uff0bcmd",
                "ip": "192.0.2.77",
                "outcome": "failure",
                "reason": "bad_credentials",
                "created_at": at(n),
            }
            for n, attempt in enumerate(attempts)
        ],
    )
    security = client_as(app, smtp, "equipe.securite")
    response = security.get("/security/events/export.csv", query_string={"ip": "192.0.2.77"})
    assert response.status_code == 200
    rows = parse_csv(response.data)
    assert sorted(r["Identifiant saisi"] for r in rows) == sorted(
        ["'" + a for a in attempts[:3]] + ["martin.dupont"]
    )
    assert {r["Navigateur (User-Agent)"] for r in rows} == {"'\uff0bcmd"}
