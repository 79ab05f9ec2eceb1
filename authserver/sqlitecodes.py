"""Which SQLite errors mean "the file is locked right now: try again shortly".

One rule for every place that waits for SQLite's locks (``rawsql.retry_busy``, the WAL
checkpoint thread), from the extended result code the driver attaches to its errors.
"""

from __future__ import annotations

SQLITE_BUSY = 5
SQLITE_LOCKED = 6
# BUSY_SNAPSHOT (517): a read transaction that saw an older snapshot may not write; trying the
# same statement again in it never succeeds (and retry_busy runs no statement inside one).
SQLITE_BUSY_SNAPSHOT = 517


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, or one of their extended codes (issue 16: BUSY_RECOVERY,
    261, while a new process replays a WAL a killed server left behind; BUSY_TIMEOUT,
    LOCKED_SHAREDCACHE…): waiting a little and trying again clears them. Not BUSY_SNAPSHOT."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(code, int) or code == SQLITE_BUSY_SNAPSHOT:
        return False
    return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
