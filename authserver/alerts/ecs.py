"""Security events as Elastic Common Schema documents, sealed in a hash chain (issue 15).

``document`` turns an event of ours (an action name and our field names) into an ECS 8
document: ``@timestamp``, ``event.*`` (kind, category, type, action, outcome, reason),
``user.*`` (the one who acts) and ``user.target.*`` (the account acted on), ``source.ip``,
``user_agent.original``; what ECS has no field for goes under ``authserver.*``.

``Chain`` seals each line of one writer: ``event.sequence`` counts the lines, and
``event.hash`` is the SHA-256 of the previous line's hash followed by this line's canonical
JSON (without its hash). A line edited, removed or put in another order breaks the chain;
``verify`` says where. Several processes write to one file, each with its own chain
(``authserver.chain.id``), so chains are checked one by one. The tail of a file cut off
after its last line cannot show: ship lines to a remote syslog for that.

No Flask, no I/O: pure functions and one small stateful class.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ECS_VERSION = "8.11.0"
DATASET = "authserver.security"

# action -> (event.category, event.type). ECS allowed values
# (https://www.elastic.co/guide/en/ecs/current/ecs-allowed-values-event-category.html).
ACTIONS: dict[str, tuple[list[str], list[str]]] = {
    "login": (["authentication"], ["start"]),
    "logout": (["authentication", "session"], ["end"]),
    "session_revoked": (["session"], ["end"]),
    "new_device_alert": (["authentication"], ["info"]),
    "account_throttled": (["authentication"], ["denied"]),
    "not_me_report": (["authentication"], ["info"]),
    "passkey_cloned": (["authentication"], ["denied"]),
    "burst_alert": (["authentication", "threat"], ["indicator"]),
    "recovery_code_used": (["authentication"], ["info"]),
    "security_action": (["iam"], ["admin", "change"]),
    "helpdesk_action": (["iam"], ["admin", "change"]),
    "passkey_added": (["iam"], ["user", "creation"]),
    "passkey_removed": (["iam"], ["user", "deletion"]),
    "passkey_renamed": (["iam"], ["user", "change"]),
    "recovery_codes_generated": (["iam"], ["user", "creation"]),
    "password_changed": (["iam"], ["user", "change"]),
    "password_removed": (["iam"], ["user", "deletion"]),
    "email_changed": (["iam"], ["user", "change"]),
    "account_created": (["iam"], ["user", "creation"]),
    "account_activated": (["iam"], ["user", "change"]),
    "account_locked": (["iam"], ["user", "change"]),
    "account_unlocked": (["iam"], ["user", "change"]),
    "account_deleted": (["iam"], ["user", "deletion"]),
    "role_changed": (["iam"], ["user", "change"]),
    "certification_granted": (["iam"], ["user", "change"]),
    "certification_refused": (["iam"], ["user", "change"]),
    "membership_changed": (["iam"], ["group", "change"]),
    "api_token_created": (["iam", "configuration"], ["creation"]),
    "oidc_client_created": (["configuration"], ["creation"]),
    "oidc_client_deleted": (["configuration"], ["deletion"]),
    "oidc_client_secret_rotated": (["configuration"], ["change"]),
    "oidc_key_rotated": (["configuration"], ["change"]),
}
# What the security team must look at (event.kind "alert"; the others are "event").
ALERTS = frozenset(
    {"new_device_alert", "account_throttled", "not_me_report", "passkey_cloned", "burst_alert"}
)
# ECS event.severity is a number: the console's three levels on the usual 0–100 scale.
SEVERITIES = {"low": 21, "medium": 47, "high": 73}
# ECS event.outcome allows only these; ours (« throttled ») become a failure with a reason.
OUTCOMES = ("success", "failure", "unknown")


def document(action: str, fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The ECS document of one event; ``fields`` are ours (``account``, ``ip``, …)."""
    category, types = ACTIONS.get(action, (["iam"], ["info"]))
    event: dict[str, Any] = {
        "kind": "alert" if action in ALERTS else "event",
        "category": category,
        "type": types,
        "action": action,
        "dataset": DATASET,
        "created": now.isoformat(),
    }
    doc: dict[str, Any] = {
        "@timestamp": now.isoformat(),
        "ecs": {"version": ECS_VERSION},
        "service": {"name": "authserver"},
        "event": event,
    }
    extra: dict[str, Any] = {}
    values = {key: value for key, value in fields.items() if value is not None}
    actor = values.pop("actor", None)
    # The account acted on: ``account`` or ``user`` (helpdesk, console), ``target``.
    subject = values.pop("account", None) or values.pop("user", None)
    if actor is not None:
        doc["user"] = {"name": str(actor)}
        if subject is not None:
            doc["user"]["target"] = {"name": str(subject)}
    elif subject is not None:
        doc["user"] = {"name": str(subject)}
    user_id = values.pop("user_id", None)
    if user_id is not None:
        doc.setdefault("user", {})["id"] = str(user_id)
    outcome = values.pop("outcome", None)
    if outcome is not None:
        event["outcome"] = outcome if outcome in OUTCOMES else "failure"
        if outcome not in OUTCOMES:
            event["reason"] = str(outcome)
    reason = values.pop("reason", None)
    if reason:
        event["reason"] = f"{event['reason']}: {reason}" if "reason" in event else str(reason)
    severity = values.pop("severity", None)
    if severity is not None:
        event["severity"] = SEVERITIES.get(str(severity), 0)
        extra["severity"] = severity
    ip = values.pop("ip", None)
    if ip:
        doc["source"] = {"ip": ip}
    agent = values.pop("user_agent", None)
    if agent:
        doc["user_agent"] = {"original": agent}
    extra.update(values)
    if extra:
        doc["authserver"] = extra
    return doc


def canonical(doc: Mapping[str, Any]) -> str:
    """The one serialisation the hash is computed on (and the line written)."""
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _digest(previous: str, body: str) -> str:
    return hashlib.sha256((previous + body).encode("utf-8")).hexdigest()


@dataclass
class Chain:
    """The hash chain of one writer in one process (a forked worker starts its own)."""

    id: str = ""
    sequence: int = 0
    previous: str = ""
    pid: int = -1

    def _restart_if_forked(self) -> None:
        if self.pid != os.getpid():
            self.id, self.sequence, self.previous = secrets.token_hex(8), 0, ""
            self.pid = os.getpid()

    def seal(self, doc: dict[str, Any]) -> str:
        """The line of ``doc``, with its place in the chain and its hash (the caller holds
        the writer's lock: lines are sealed in the order they are written)."""
        self._restart_if_forked()
        self.sequence += 1
        doc = {**doc, "event": {**doc.get("event", {}), "sequence": self.sequence}}
        doc["authserver"] = {
            **doc.get("authserver", {}),
            "chain": {"id": self.id, "previous": self.previous},
        }
        digest = _digest(self.previous, canonical(doc))
        doc["event"]["hash"] = digest
        self.previous = digest
        return canonical(doc)


@dataclass
class Report:
    """What ``verify`` found: lines read, chains, and each break (line number, why)."""

    lines: int = 0
    chains: dict[str, int] = field(default_factory=dict)  # chain id -> lines checked
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(lines: Iterable[str]) -> Report:
    """Check every chain in these lines (a file may hold several, interleaved)."""
    report = Report()
    last: dict[str, tuple[int, str]] = {}  # chain id -> (sequence, hash)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        report.lines += 1
        try:
            doc = json.loads(raw)
            event = dict(doc["event"])
            claimed = event.pop("hash")
            sequence = int(event["sequence"])
            chain = doc["authserver"]["chain"]
            chain_id, previous = str(chain["id"]), str(chain["previous"])
        except (ValueError, KeyError, TypeError):
            report.problems.append((number, "ligne illisible ou sans chaînage"))
            continue
        body = canonical({**doc, "event": event})
        if _digest(previous, body) != claimed:
            report.problems.append((number, "ligne modifiée (empreinte incorrecte)"))
        if chain_id in last:
            last_sequence, last_hash = last[chain_id]
            if sequence != last_sequence + 1 or previous != last_hash:
                report.problems.append(
                    (
                        number,
                        "chaîne rompue : lignes manquantes ou déplacées avant la séquence "
                        f"{sequence}",
                    )
                )
        elif sequence == 1 and previous:
            report.problems.append((number, "début de chaîne incohérent"))
        last[chain_id] = (sequence, claimed)
        report.chains[chain_id] = report.chains.get(chain_id, 0) + 1
    return report
