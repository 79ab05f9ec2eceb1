"""The burst detector's daemon thread: ``detect`` every ``interval`` seconds.

One thread per server process; concurrent runs are serialised by the database
(see :mod:`authserver.alerts.console.detection`). A failed run is logged and
retried at the next tick: detection never touches the login path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Mapping

from flask import Flask

from authserver.alerts.console.detection import detect
from authserver.config import ConfigError
from authserver.db import Database

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0
ENV_INTERVAL = "AUTHSERVER_DETECTOR_INTERVAL"


def interval_from(env: Mapping[str, str]) -> float:
    """Seconds between runs from ``AUTHSERVER_DETECTOR_INTERVAL`` (0 turns the thread off)."""
    raw = env.get(ENV_INTERVAL, "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise ConfigError(
            ENV_INTERVAL, f"nombre de secondes entre 0 et 86400 attendu, reçu {raw!r}"
        )
    return value


def configured_interval(config: Mapping[str, object]) -> float:
    """The app's interval: ``DETECTOR_INTERVAL`` in the app config, else the environment."""
    value = config.get("DETECTOR_INTERVAL")
    if isinstance(value, int | float):
        return float(value)
    return interval_from(os.environ)


PURGE_EVERY = 3600.0


class DetectorWorker:
    """``app``, when given, is the context of each run: its alerts go to that app's security log."""

    def __init__(self, database: Database, interval: float, app: Flask | None = None) -> None:
        self.database = database
        self.interval = interval
        self.app = app
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0  # monotonic time of the last retention purge

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="burst-detector", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_once(self) -> int:
        context = self.app.app_context() if self.app is not None else contextlib.nullcontext()
        with context, self.database.session_scope() as session:
            return len(detect(session))

    def _run(self) -> None:
        # Spread the processes' runs over the interval instead of all at once.
        wait = self.interval * random.uniform(0.5, 1.0)
        while not self._stop.wait(wait):
            try:
                raised = self.run_once()
                if raised:
                    log.info("burst detector raised %d alert(s)", raised)
            except Exception:
                log.warning(
                    "burst detection failed; next try in %s s", self.interval, exc_info=True
                )
            self.purge_if_due()
            wait = self.interval

    def purge_if_due(self, every: float = PURGE_EVERY) -> dict[str, int] | None:
        """The retention purge (retention.py), at most once per ``every`` seconds."""
        if self.app is None or time.monotonic() - self._last_purge < every:
            return None
        self._last_purge = time.monotonic()
        from authserver.retention import Policy, purge

        settings = self.app.config["AUTHSERVER"]
        try:
            done = purge(self.database, Policy.of(settings), settings.secret_key)
        except Exception:
            log.warning("retention purge failed; next try in %s s", every, exc_info=True)
            return None
        if any(done.values()):
            log.info("retention purge: %s", done)
        return done
