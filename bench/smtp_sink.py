"""The benchmarks' mail relay: a real SMTP server (aiosmtpd) in a process of its own.

Run in the load generator's process, with the tests' ``SMTPServer`` (which parses every
message into an ``EmailMessage``), it took 62 % of that process's CPU during new-browser
logins (py-spy), on the same interpreter lock as the simulated browsers: the load generator
slowed down and the server was measured as slower than it was. A portal's relay runs on
another machine; here it runs beside the server, so its CPU still counts against the two
cores, but it no longer holds the load generator's lock, and it counts messages and
recipients instead of parsing them (0.9 ms of CPU per message instead of 1.5, measured
with 2,000 messages).

``python -m bench.smtp_sink PORT`` answers ``count`` on its standard input with the number
of messages received so far and ``clear`` by forgetting them; it stops when its input closes.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

from bench.cpu import tree_cpu_seconds
from bench.server import PROJECT_ROOT, free_port

ACCEPTED = "250 Message accepted for delivery"


class _Counting:
    def __init__(self) -> None:
        self.messages = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if envelope.rcpt_tos and (envelope.original_content or envelope.content):
            with self.lock:
                self.messages += 1
        return ACCEPTED


def serve(port: int) -> None:
    """The child: listen, then answer the parent's commands until its input closes."""
    from aiosmtpd.controller import Controller

    handler = _Counting()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True, ready_timeout=10
    )
    controller.start()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            with handler.lock:
                if command == "clear":
                    handler.messages = 0
                print(handler.messages, flush=True)
    finally:
        controller.stop()


class SinkProcess:
    """The parent's handle: ``url`` for ``AUTHSERVER_MAIL_URL``, ``received()``, ``clear()``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SinkProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.smtp_sink", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=PROJECT_ROOT,
        )
        if self._line() != "ready":
            self.stop()
            raise RuntimeError("the SMTP sink did not start")
        return self

    def _line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def _command(self, command: str) -> int:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return int(self._line())

    def received(self) -> int:
        return self._command("count")

    def clear(self) -> None:
        self._command("clear")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid) if self.process is not None else 0.0


if __name__ == "__main__":
    serve(int(sys.argv[1]))
