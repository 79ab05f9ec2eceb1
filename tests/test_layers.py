"""The services and the decisions read no request: the views hand them the request's facts.

Issue 13: a rule that reads ``request`` or ``g`` can only be called from a view, so the
login fast paths and the CLI re-stated it. The passkey ceremony services read this browser's
ceremony cookie themselves; the views now hand them its hash (``webauthn/browser.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "authserver"
REQUEST_STATE = {"request", "g", "session"}  # Flask's per-request objects

# Every ``service``, ``core`` and ``policy`` module, and the plain rules they call.
PLAIN = sorted(
    {
        *(ROOT.glob("*/service*.py")),
        *(ROOT.glob("*/*core*.py")),
        *(ROOT.glob("**/policy.py")),
        ROOT / "sessions" / "login_row.py",
        ROOT / "alerts" / "notify.py",
        ROOT / "throttle.py",
        ROOT / "leases.py",
        ROOT / "mail" / "delivery.py",
        ROOT / "webauthn" / "authentication.py",
        ROOT / "webauthn" / "registration.py",
    }
)


def request_state_used(path: Path) -> set[str]:
    """Flask's per-request objects the module imports or reaches through ``flask.``."""
    used: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "flask":
            used |= {alias.name for alias in node.names} & REQUEST_STATE
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "flask"
            and node.attr in REQUEST_STATE
        ):
            used.add(node.attr)
    return used


def test_the_plain_modules_are_found() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in PLAIN}
    assert {"webauthn/service.py", "sessions/login_core.py", "accounts/service.py"} <= names


@pytest.mark.parametrize("path", PLAIN, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_reads_no_request(path: Path) -> None:
    assert request_state_used(path) == set()
