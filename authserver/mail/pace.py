"""When the mail deliverer stops giving way to the logins for SQLite's write lock.

On SQLite one write lock serves the whole server. The deliverer asks for it through SQLite's
busy handler, which sleeps 1, 2, 5… then 100 ms between two looks, while the logins wait in
steps of 50 µs to 2 ms (``rawsql.retry_busy``): in a peak of logins the deliverer gives way,
and the peak's alerts leave seconds after it. Right for a peak; wrong for a siege: a flood
of logins that lasts (a credential-stuffing wave, when alerts matter most) would hold every
alert back for as long as it lasts. So once the mail it is about to write has waited more
than ``LATE_AFTER``, the deliverer takes the lock as the logins do, and its share of the CPU
decides how fast alerts leave. Measured over 40 s of new-browser logins without a pause
(16 connections, 2 cores): 3,618 of 17,539 alerts sent during the flood before, 7,028 of
16,107 now, at 8 % fewer logins per second. The machine cannot send as many alerts as it
answers such logins: a flood that lasts still leaves a backlog, half the size. A look
comes before each claim: an empty claim took the lock too. PostgreSQL has no such single
lock: nothing changes there.
"""

from __future__ import annotations

from datetime import datetime, timedelta

LATE_AFTER = timedelta(seconds=10)


def late(queued_at: datetime | None, now: datetime) -> bool:
    """Does a mail queued at ``queued_at`` (None: no mail) no longer give way?"""
    return queued_at is not None and now - queued_at > LATE_AFTER
