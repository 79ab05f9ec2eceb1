"""Where the security events' JSON lines go: a setting of each app (AUTHSERVER_SECURITY_LOG).

``events.emit`` writes to the process-wide ``authserver.security`` logger. Its one
handler here hands each line to the target of the app it was written in (stdout, a
file, RFC 5424 syslog, or nothing), so two apps in one process each follow their own
settings. Lines written outside any app context (``authserver security detect``) go to the
target configured last. Each target seals its lines in a hash chain of its own (ecs.py).
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import TextIO

from flask import Flask, current_app, has_app_context

from authserver.alerts import ecs, syslog
from authserver.config import ConfigError

LOGGER_NAME = "authserver.security"
EXTENSION_KEY = "authserver.security_log"
_logger = logging.getLogger(LOGGER_NAME)


class _Stream(logging.StreamHandler):  # type: ignore[type-arg]
    """The process's ``sys.stdout`` (or ``sys.stderr``) at the time of each line, not the one
    at start-up. stderr: « stdout » in a command that prints its own answer there
    (``client create`` prints JSON a script reads)."""

    def __init__(self, name: str) -> None:
        self.name_of_stream = name
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return getattr(sys, self.name_of_stream)  # type: ignore[no-any-return]

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class _PerApp(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.default: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        target = getattr(record, TARGET, None) or self.current()
        if target is not None:
            target.handle(record)

    def current(self) -> logging.Handler | None:
        target = current_app.extensions.get(EXTENSION_KEY) if has_app_context() else None
        return target or self.default


_router = _PerApp()
# Set by the command line for the duration of a command (cli.py), never for ``serve``.
_command_line = False


def command_line(active: bool) -> None:
    """While a CLI command runs, « stdout » means stderr (its answer owns stdout)."""
    global _command_line
    _command_line = active


# A line written outside the app's context (the login fast path runs before Flask) names
# its app's target in this attribute of the record (``extra``).
TARGET = "authserver_target"


def wanted(target: logging.Handler | None = None) -> bool:
    """Whether a line would reach anyone: not when the setting is ``off`` and nothing but
    the router listens. Then the caller need not even build the line (hot paths)."""
    if len(_logger.handlers) != 1:
        return True  # another listener (a test's handler)
    return not isinstance(target or _router.current(), logging.NullHandler)


def target_of(app: Flask) -> logging.Handler:
    """The handler this app's lines go to (set by ``init_app``)."""
    return app.extensions[EXTENSION_KEY]


class Sealing(logging.Formatter):
    """The ECS document an event carries (``record.authserver_doc``), as the next line of
    this target's hash chain."""

    def __init__(self) -> None:
        super().__init__()
        self.chain = ecs.Chain()

    def format(self, record: logging.LogRecord) -> str:
        doc = getattr(record, DOC, None)
        if doc is None:
            return record.getMessage()
        return self.chain.seal(doc)


DOC = "authserver_doc"


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
        handler = _Stream("stderr" if _command_line else "stdout")
    elif (address := syslog.parse(target)) is not None:
        handler = syslog.Rfc5424Handler(*address)
    else:
        try:
            handler = logging.FileHandler(target, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                "AUTHSERVER_SECURITY_LOG",
                f"impossible d'écrire dans {target!r} ({exc.strerror or exc})",
            ) from None
    handler.setFormatter(Sealing())
    _router.default = handler
    return handler


def init_app(app: Flask) -> None:
    handler = open_target(app.config["AUTHSERVER"].security_log)
    app.extensions[EXTENSION_KEY] = handler
    weakref.finalize(app, handler.close)
