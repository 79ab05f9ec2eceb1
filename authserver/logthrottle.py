"""Failures on a hot path: a traceback at most once a minute, the others counted.

A path answering every request (forward-auth, the passkey login fast path) fails the same
way for every request while its cause lasts: a traceback each would flood the logs
(thousands a second) and bury the first one. This is the one rule for them, in one class.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class FailureLog:
    """A traceback at most every ``every`` seconds; the failures in between are counted.

    - A failure is logged with its traceback unless one was logged less than ``every``
      seconds ago; then it is only counted, and the count goes with the next traceback
      (« N more since the last report »).
    - A success does not restart the minute: failures and successes by turns (a flapping
      database, one bad connection among several) still give one traceback a minute.
    - The first success after a logged traceback logs one line (no traceback) with the
      failures since the last such line. Failures that were only counted wait for the next
      traceback: at most two lines a minute, however the requests come.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        failure: str,
        recovery: str,
        unit: str = "request",
        every: float = 60.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.logger = logger
        self.failure = failure
        self.recovery = recovery
        self.unit = unit
        self.every = every
        self.clock = clock
        self.lock = threading.Lock()
        # Read without the lock on every success (one attribute): a failure since the last
        # success.
        self.failing = False
        self.reported = False  # a traceback was logged and no recovery line since
        self.last_report: float | None = None  # never reset: the minute is the clock's
        self.unreported = 0  # failures since the last traceback
        self.total = 0  # failures since the last recovery line

    def failed(self) -> None:
        """Call from an ``except`` block (the traceback is the current exception's)."""
        now = self.clock()
        with self.lock:
            self.failing = True
            self.total += 1
            if self.last_report is not None and now - self.last_report < self.every:
                self.unreported += 1
                return
            self.last_report, self.reported = now, True
            unreported, self.unreported = self.unreported, 0
        if unreported:
            self.logger.error(
                "%s (%d more since the last report)", self.failure, unreported, exc_info=True
            )
        else:
            self.logger.error("%s", self.failure, exc_info=True)

    def succeeded(self) -> None:
        """Call after a success while ``failing`` is set (the hot path checks it first)."""
        with self.lock:
            if not self.failing:
                return
            self.failing = False
            if not self.reported:
                return
            self.reported = False
            total, self.total = self.total, 0
        self.logger.warning("%s after %d failed %s(s)", self.recovery, total, self.unit)
