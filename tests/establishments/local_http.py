"""A local HTTP server in a thread, standing for an outside API (directory, identity check).

The fakes in test_directory.py and test_identity.py differ in what they answer; how they
listen, stop mid-reply and keep the machine's proxy settings out is the same, and is here.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy")


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """Listen on 127.0.0.1 (a free port) and answer with ``handler`` in a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.block_on_close = False
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    ).start()
    return server


def close(server: ThreadingHTTPServer | None, stop: threading.Event) -> None:
    """Release replies still waiting (``stop``), then stop listening."""
    stop.set()
    assert server is not None
    server.shutdown()
    server.server_close()


def without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib must reach 127.0.0.1 directly, whatever the machine's proxy settings."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
