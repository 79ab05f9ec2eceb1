"""French counts as people write them: « 1 minute », « 15 minutes », « 3 sessions fermées ».

One helper instead of « minute(s) » in pages, e-mails (the ``plural`` template filter) and
the command line. French puts 0 and 1 in the singular (« 0 échec », « 1 alerte levée »).
"""

from __future__ import annotations


def plural(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` then ``singular`` when it is below 2, else ``plural`` (by default
    ``singular`` + « s »: give it for anything else, « e-mails remis », « autres sessions »)."""
    words = singular if abs(count) < 2 else (plural if plural is not None else singular + "s")
    return f"{count} {words}"
