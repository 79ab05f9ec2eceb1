"""Mail queued as its facts and put into words by its deliverer.

A new-browser login queues its alert e-mail in the login's own short transaction. Rendering
its two templates there (about 0.1 ms of the request's CPU) and writing their ~5 KB (overflow
pages on SQLite, copied again at the next checkpoint) made that row the largest part of
what a new-browser login costs beyond a returning one. Queued as the values the templates
need (about half a kilobyte of JSON), new-browser logins ran at a median of 0.68 of the
returning rate instead of 0.54 (two versions interleaved in one run). The deliverer renders
them, off the request path, with the same templates and the same values, right before it
sends each (``delivery.deliver_due``), and never writes the words back: a sent alert keeps
its facts, which the development mailbox renders for display.

Such a row waits with the status ``facts``, never ``pending``: a deliverer of an earlier
version, still running during a rolling deploy, claims ``pending`` rows only and would have
sent it with an empty body. A row that cannot be rendered (a template or a value missing)
keeps its facts and is tried again with the delivery's backoff; it holds up no other mail.

Rows queued by ``outbox.enqueue`` (sign-up, reset, helpdesk…) are still rendered at once:
their context holds objects (an account) that are not plain values.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import Environment

_DATETIME = "$datetime"
# The status of a row queued as its facts: claimed only by deliverers that word it.
FACTS = "facts"
# Every status of a mail not sent yet: /metrics, /readyz and the benchmarks count both.
WAITING = ("pending", FACTS)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return {_DATETIME: value.isoformat()}
    raise TypeError(f"not a plain value for a queued e-mail: {type(value).__name__}")


def _revive(value: dict[str, Any]) -> Any:
    if len(value) == 1 and _DATETIME in value:
        return datetime.fromisoformat(value[_DATETIME])
    return value


def dump_context(context: dict[str, Any]) -> str:
    """The templates' values as JSON: strings, numbers, booleans, lists, dicts and datetimes
    (anything else is a programming error, raised here rather than at delivery)."""
    return json.dumps(context, default=_plain, ensure_ascii=False, separators=(",", ":"))


def load_context(text: str) -> dict[str, Any]:
    value = json.loads(text, object_hook=_revive)
    if not isinstance(value, dict):
        raise ValueError("a queued e-mail's context is a JSON object")
    return value


def queued_row(
    now: datetime,
    *,
    kind: str,
    to: str,
    subject: str,
    words: tuple[str | None, str | None] = (None, None),
    template: str | None = None,
    context: str | None = None,
) -> dict[str, Any]:
    """A queued mail's complete row of ``outbox.INSERT``, either form: its words (text,
    HTML), ready to send, or its template and context, for the deliverer to render first.
    The fast paths write it on a driver connection, where no column default applies."""
    return {
        "created_at": now,
        "kind": kind,
        "recipient": to,
        "subject": subject,
        "body_text": words[0],
        "body_html": words[1],
        "template": template,
        "context": context,
        "status": "pending" if template is None else FACTS,
        "attempts": 0,
        "next_attempt_at": now,
        "claimed_until": None,
        "sent_at": None,
        "last_error": None,
        "claim_token": None,
    }


def unrendered_row(
    now: datetime, *, kind: str, to: str, subject: str, template: str, **context: Any
) -> dict[str, Any]:
    """The row of a mail its deliverer puts into words right before its send."""
    return queued_row(
        now, kind=kind, to=to, subject=subject, template=template, context=dump_context(context)
    )


def render(
    templates: Environment, template: str, subject: str, context: dict[str, Any]
) -> tuple[str, str]:
    """``emails/<template>.txt`` and ``.html`` with ``context`` (and the subject)."""
    values = {"subject": subject, **context}
    return (
        templates.get_template(f"emails/{template}.txt").render(values),
        templates.get_template(f"emails/{template}.html").render(values),
    )


def bodies(
    templates: Environment,
    subject: str,
    body_text: str | None,
    body_html: str | None,
    template: str | None,
    context: str | None,
) -> tuple[str, str | None]:
    """A queued row's text and HTML: as stored, or rendered now from its facts."""
    if template is None or context is None:
        return body_text or "", body_html
    return render(templates, template, subject, load_context(context))
