"""Where a login lands, when nothing asked for a page (no ``next``). Pure logic, no I/O.

Staff open their own tool: a counsellor the certification queue, the security team the
console, an administrator (both roles) the staff home that lists the two. An employer goes
through onboarding (attach an establishment, wait for its administrator, choose how to be
certified), then to « Mon espace personnel ».

Both logins ask this one function: the views (``sessions.completion``) and the passkey
login fast path (``webauthn.fastpath``, which reads the same inputs in its one statement),
so a passkey login lands in the same place whichever of the two answers it. The header's
link to a staff member's tool reads the same table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from authserver.establishments.service import onboarding_endpoint

ESPACE = "establishments.espace"


@dataclass(frozen=True)
class StaffTool:
    endpoint: str
    label: str  # the header link's text


# Role -> the tool its logins land on. Staff tools need a passkey session (sessions/staff.py):
# a password login lands on the tool's « Connexion par clé d'accès exigée » page.
STAFF_TOOLS = {
    "counselor": StaffTool("establishments.counselor_queue", "Certifications à traiter"),
    "security": StaffTool("security.alerts", "Console de sécurité"),
    "admin": StaffTool("staff.home", "Espace équipe"),
}


def landing_endpoint(
    *,
    role: str,
    membership_status: str | None,
    certified: bool,
    certification_asked: Callable[[], object | None],
) -> str:
    """The endpoint a login of an account with ``role`` lands on.

    ``membership_status`` is the employer's membership's (None: no establishment yet),
    ``certification_asked()`` (a query, run only when needed) whether a certification was
    requested. Neither is read for staff.
    """
    tool = STAFF_TOOLS.get(role)
    if tool is not None:
        return tool.endpoint
    step = onboarding_endpoint(membership_status, certified=certified, asked=certification_asked)
    return step or ESPACE
