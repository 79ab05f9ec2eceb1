"""Where the security events' JSON lines go: a setting of each app (AUTHSERVER_SECURITY_LOG).

``events.emit`` writes to the process-wide ``authserver.security`` logger. Its one
handler here hands each line to the target of the app it was written in (stdout, a
file, or nothing), so two apps in one process each follow their own settings. Lines
written outside any app context (``authserver security detect``) go to the target
configured last.
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import TextIO

from flask import Flask, current_app, has_app_context

from authserver.config import ConfigError

LOGGER_NAME = "authserver.security"
EXTENSION_KEY = "authserver.security_log"


class _Stdout(logging.StreamHandler):  # type: ignore[type-arg]
    """The process's stdout at the time of each line (not the one at start-up)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class _PerApp(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.default: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        target = current_app.extensions.get(EXTENSION_KEY) if has_app_context() else None
        target = target or self.default
        if target is not None:
            target.handle(record)


_router = _PerApp()


def open_target(target: str) -> logging.Handler:
    """The handler for a value of the setting; ConfigError naming it if it cannot be opened.

    It also becomes the target of lines written outside any app context.
    """
    logger = logging.getLogger(LOGGER_NAME)
    if _router not in logger.handlers:
        logger.addHandler(_router)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    handler: logging.Handler
    if target == "off":
        handler = logging.NullHandler()
    elif target == "stdout":
        handler = _Stdout()
    else:
        try:
            handler = logging.FileHandler(target, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                "AUTHSERVER_SECURITY_LOG",
                f"impossible d'écrire dans {target!r} ({exc.strerror or exc})",
            ) from None
    _router.default = handler
    return handler


def init_app(app: Flask) -> None:
    handler = open_target(app.config["AUTHSERVER"].security_log)
    app.extensions[EXTENSION_KEY] = handler
    weakref.finalize(app, handler.close)
