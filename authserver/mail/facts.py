"""Mail queued as its facts, put into words at the start of each delivery round.

A login queues its new-device alert as the values of its templates (rendering.py) with the
status ``facts``. A claim takes ``pending`` rows only, so no deliverer sends such a row as it
is — not even one of an earlier version, still running during a rolling deploy, which knows
nothing of facts and would have sent it with an empty body. Each round of a current
deliverer starts here (a producer, as the account mail jobs): the due rows are rendered and
become ``pending``, with their words and without their facts, one write transaction for the
batch. A row that cannot be rendered (a template or a value missing) stays with its facts and
is tried again later, with the delivery's backoff: it holds up no other mail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from jinja2 import Environment
from sqlalchemy import bindparam, select, update

from authserver.db import Database
from authserver.leases import write
from authserver.mail.pace import late
from authserver.mail.rendering import FACTS, load_context, render
from authserver.models import OutboxMail, utcnow

log = logging.getLogger(__name__)

BATCH = 200

# In the order of the (status, next_attempt_at) index: the due rows and no more.
_DUE = (
    select(
        OutboxMail.id,
        OutboxMail.subject,
        OutboxMail.template,
        OutboxMail.context,
        OutboxMail.attempts,
        OutboxMail.created_at,
    )
    .where(OutboxMail.status == FACTS, OutboxMail.next_attempt_at <= bindparam("now"))
    .order_by(OutboxMail.next_attempt_at, OutboxMail.id)
    .limit(BATCH)
)
# By primary key, and only while the row still waits for its words: of two deliverers that
# rendered the same row, the second changes nothing.
_STILL_FACTS = (OutboxMail.id == bindparam("row_id"), OutboxMail.status == FACTS)
_RENDERED = (
    update(OutboxMail)
    .where(*_STILL_FACTS)
    .values(
        status="pending",
        body_text=bindparam("words_text"),
        body_html=bindparam("words_html"),
        template=None,
        context=None,
    )
)
_NOT_RENDERED = (
    update(OutboxMail)
    .where(*_STILL_FACTS)
    .values(
        attempts=OutboxMail.attempts + 1,
        next_attempt_at=bindparam("retry_at"),
        last_error=bindparam("error"),
    )
)


def render_due(
    database: Database,
    templates: Environment,
    retry_in: Callable[[int], float],
    now: datetime | None = None,
) -> int:
    """Put the due rows queued as their facts into words; return how many became pending.

    ``retry_in(attempts)``: seconds before a row that could not be rendered is tried again.
    """
    now = now or utcnow()
    with database.engine.connect() as connection:
        due = connection.execute(_DUE, {"now": now}).all()
    if not due:
        return 0
    rendered: list[dict[str, object]] = []
    failed: list[dict[str, object]] = []
    for row_id, subject, template, context, attempts, _created_at in due:
        try:
            if template is None or context is None:
                raise ValueError("queued as its facts without them")
            text, html = render(templates, template, subject, load_context(context))
        except Exception as exc:  # a template or its values: the next rounds try again
            # The class only: a rendering error's text may quote the values (a link token).
            log.warning("mail %s could not be put into words: %s", row_id, type(exc).__name__)
            retry_at = now + timedelta(seconds=retry_in(attempts + 1))
            error = f"{type(exc).__name__} (mise en forme)"
            failed.append({"row_id": row_id, "retry_at": retry_at, "error": error})
            continue
        rendered.append({"row_id": row_id, "words_text": text, "words_html": html})
    # The renders are done before the write lock is taken (SQLite: one short transaction),
    # taken at once when these alerts are late (pace.py).
    eager = late(min(row.created_at for row in due), now)
    with write(database, eager=eager) as connection:
        if rendered:
            connection.execute(_RENDERED, rendered)
        if failed:
            connection.execute(_NOT_RENDERED, failed)
    return len(rendered)
