"""The Prometheus rules and the Grafana dashboard in deploy/ (issue 15) name only metrics the
server exposes and endpoints it has: a renamed metric or view fails here, not in production."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.alerts.console_helpers import add_user
from tests.conftest import Actions

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy/prometheus/authserver-rules.yml"
DASHBOARD = ROOT / "deploy/grafana/authserver-dashboard.json"
PROMQL_WORDS = {"sum", "by", "rate", "increase", "max", "and", "histogram_quantile", "le"}
SUFFIXES = ("_bucket", "_count", "_sum")
FAST_PATH_ENDPOINTS = {"webauthn.login_options", "webauthn.login_verify", "forward_auth.verify"}


def rule_expressions() -> list[str]:
    return re.findall(r"^\s+expr: (.+)$", RULES.read_text(encoding="utf-8"), re.M)


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def exposed_metrics(app, smtp) -> set[str]:
    """The families /metrics shows once a login happened (labelled series exist then)."""
    add_user(app, "metrique.test")
    Actions(app.test_client(), smtp).login("metrique.test")
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return set(re.findall(r"^# TYPE (\S+)", text, re.M)) | {
        name + "_total" for name in re.findall(r"^# TYPE (\S+) counter", text, re.M)
    }


def test_every_expression_names_real_metrics_and_endpoints(app, smtp) -> None:
    expressions = rule_expressions() + dashboard_expressions()
    assert len(rule_expressions()) >= 9 and len(dashboard_expressions()) >= 9
    metrics = exposed_metrics(app, smtp)
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()} | FAST_PATH_ENDPOINTS
    for expression in expressions:
        for name in re.findall(r"\b(authserver_[a-z_]+)", expression):
            base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)
            assert name in metrics or base in metrics, (name, expression)
        for endpoint in re.findall(r'endpoint="([^"]+)"', expression):
            assert endpoint in endpoints, (endpoint, expression)


def test_the_rules_file_is_well_formed() -> None:
    text = RULES.read_text(encoding="utf-8")
    alerts = re.findall(r"^\s+- alert: (\w+)$", text, re.M)
    assert len(alerts) == len(set(alerts)) == len(rule_expressions())
    assert "\t" not in text
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
