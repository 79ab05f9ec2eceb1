"""« Tableau de bord » of the security console (issue 15): failures and alerts per day,
passkey share, alerts by kind and status, time to close, top IPs; SVG drawn by the server,
the numbers in tables beside it."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

from authserver.db import get_database
from authserver.models import SecurityAction, utcnow
from tests.alerts.console_helpers import add_alert, add_events, add_user, client_as


def test_the_dashboard_counts(backend_app, smtp) -> None:
    app = backend_app
    now = utcnow()
    # Noon of the dashboard's last day (a UTC date), even when that is still to come: a
    # "noon or else yesterday's" put the events on the day before from 00:00 to 12:00 UTC.
    today = now.replace(hour=12, minute=0, second=0, microsecond=0)
    add_events(
        app,
        [
            *[{"outcome": "failure", "ip": "203.0.113.9", "created_at": today} for _ in range(3)],
            {"outcome": "throttled", "ip": "198.51.100.7", "created_at": today},
            {"outcome": "failure", "ip": "198.51.100.7", "created_at": today - timedelta(days=2)},
            {"outcome": "success", "method": "passkey", "created_at": today - timedelta(days=2)},
            {"outcome": "success", "method": "password", "created_at": today - timedelta(days=2)},
            {"outcome": "success", "method": "passkey", "created_at": today - timedelta(days=2)},
            {"outcome": "success", "method": "password", "created_at": today - timedelta(days=2)},
            {"outcome": "failure", "created_at": today - timedelta(days=40)},  # out of range
        ],
    )
    opened = today - timedelta(hours=5)
    closed_alert = add_alert(app, kind="not_me", status="closed", created_at=opened)
    add_alert(app, kind="new_device", status="open", created_at=today)
    add_alert(app, kind="new_device", status="open", created_at=today)
    staff = add_user(app, "agent.stats", role="security")
    with get_database(app).session_scope() as session:
        session.add(
            SecurityAction(alert_id=closed_alert, actor_id=staff, action="close", created_at=today)
        )
    browser = client_as(app, smtp, "agent.stats")
    page = browser.get("/security/stats")
    assert page.status_code == 200
    html = unescape(page.get_data(as_text=True))

    def series(chart: str) -> list[str]:
        table = html.split(f'data-chart="{chart}"', 1)[1].split("</table>", 1)[0]
        return re.findall(r"<td>([^<]+)</td><td>([^<]+)</td>", table)

    failures = series("chart-failures")
    assert len(failures) == 30
    assert failures[-1] == (today.strftime("%d/%m/%Y"), "4.0")
    assert failures[-3] == ((today - timedelta(days=2)).strftime("%d/%m/%Y"), "1.0")
    assert sum(float(v) for _, v in failures) == 5
    assert series("chart-passkeys")[-3][1] == "50.0 %"
    assert series("chart-alerts")[-1][1] == "3.0"
    assert html.count("<rect ") == 90
    assert "médiane 5.0 h" in html
    top = html.split('id="top-ips"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r">([\d.]+)</a></td><td>(\d+)<", top) == [
        ("203.0.113.9", "3"),
        ("198.51.100.7", "2"),
    ]
    row = html.split('data-kind="new_device"', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r"<td>(\d+)</td>", row)[0] == "2"  # « Ouverte »


def test_only_the_console_roles(app, smtp) -> None:
    add_user(app, "emma.stats")
    assert (
        client_as(app, smtp, "emma.stats", passkey=False).get("/security/stats").status_code == 403
    )
