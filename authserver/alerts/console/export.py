"""CSV exports of the console's filtered views: French headers, one line per row, streamed.

Semicolon-separated UTF-8 with a byte-order mark, as spreadsheet software in
France expects. Cells that a spreadsheet would run as a formula are prefixed with
``'``: identifiants and user agents come from the outside. That is a cell starting,
once leading spaces are skipped (spreadsheets skip them too), with ``=``, ``+``,
``-``, ``@`` or their full-width forms (``＝＋－＠``, which some spreadsheets read as
the ASCII ones), or a cell starting with a tab, carriage return or line feed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from authserver.alerts.console.filters import (
    ALERT_KINDS,
    METHOD_LABELS,
    OUTCOME_LABELS,
    PARIS,
    SEVERITY_LABELS,
    STATUS_LABELS,
)
from authserver.alerts.console.labels import reason_label

BOM = "\ufeff"
DELIMITER = ";"
FORMULA_STARTS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
CONTROL_STARTS = ("\t", "\r", "\n")
CHUNK = 64 * 1024


def paris(moment: datetime | None) -> str:
    return moment.astimezone(PARIS).strftime("%d/%m/%Y %H:%M:%S") if moment else ""


def safe_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    if text.startswith(CONTROL_STARTS) or text.lstrip().startswith(FORMULA_STARTS):
        return "'" + text
    return text


Column = tuple[str, Callable[[Any], Any]]

ALERT_COLUMNS: list[Column] = [
    ("Numéro", lambda r: r[0].id),
    ("Date (heure de Paris)", lambda r: paris(r[0].created_at)),
    ("Type", lambda r: ALERT_KINDS.get(r[0].kind, r[0].kind)),
    ("Gravité", lambda r: SEVERITY_LABELS.get(r[0].severity, r[0].severity)),
    ("Statut", lambda r: STATUS_LABELS.get(r[0].status, r[0].status)),
    ("Identifiant", lambda r: r.username or ""),
    ("SIRET", lambda r: r.siret or ""),
    ("Adresse IP", lambda r: r[0].ip),
    ("Détails", lambda r: json.dumps(r[0].details or {}, ensure_ascii=False, sort_keys=True)),
    ("Dernière action", lambda r: paris(r[0].updated_at)),
]

EVENT_COLUMNS: list[Column] = [
    ("Numéro", lambda r: r[0].id),
    ("Date (heure de Paris)", lambda r: paris(r[0].created_at)),
    ("Identifiant", lambda r: r.username or ""),
    ("Identifiant saisi", lambda r: r[0].username_attempt),
    ("SIRET", lambda r: r.siret or ""),
    ("Adresse IP", lambda r: r[0].ip),
    ("Méthode", lambda r: METHOD_LABELS.get(r[0].method, r[0].method)),
    ("Résultat", lambda r: OUTCOME_LABELS.get(r[0].outcome, r[0].outcome)),
    ("Motif", lambda r: reason_label(r[0].reason) if r[0].reason else ""),
    ("Code du motif", lambda r: r[0].reason),
    ("Appareil", lambda r: r[0].device_id or ""),
    ("Navigateur (User-Agent)", lambda r: r[0].user_agent),
]


def lines(columns: list[Column], rows: Iterable[Any]) -> Iterator[str]:
    """The CSV text in chunks of about 64 KiB (header first, BOM included)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=DELIMITER, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow([title for title, _ in columns])
    yield BOM + flush()
    for row in rows:
        writer.writerow([safe_cell(value(row)) for _, value in columns])
        if buffer.tell() >= CHUNK:
            yield flush()
    tail = flush()
    if tail:
        yield tail
