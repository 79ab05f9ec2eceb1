"""Browser-test fixtures shared by several files: the app served over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask

from tests.services import LiveServer, SMTPServer, free_port


@dataclass
class Live:
    app: Flask
    base: str
    smtp: SMTPServer


@pytest.fixture
def live(make_app, smtp: SMTPServer) -> Iterator[Live]:
    """The app on ``http://localhost:<port>`` (rp id ``localhost``), mail to the test SMTP."""
    port = free_port()
    base = f"http://localhost:{port}"
    app = make_app(AUTHSERVER_BASE_URL=base)
    server = LiveServer(app, port=port).start()
    try:
        yield Live(app, base, smtp)
    finally:
        server.stop()
