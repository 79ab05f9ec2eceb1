"""One real ``authserver serve`` (or ``authserver mail deliver``) process on a given database.

For the process-level behaviour that a test client cannot show: gunicorn's workers and
signals, the multiprocess metrics, the JSON access log on standard output. No pytest here.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

from sqlalchemy import create_engine, insert, select

from authserver.models import OutboxMail, utcnow
from tests.multi.cluster import AUTHSERVER, OWN_VARIABLES, ROOT, Instance
from tests.services import free_port


def server_env(
    workdir: Path, database_url: str, mail_url: str, port: int, **extra: str
) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(OWN_VARIABLES)},
        "AUTHSERVER_HOST": "127.0.0.1",
        "AUTHSERVER_PORT": str(port),
        "AUTHSERVER_BASE_URL": f"http://localhost:{port}",
        "AUTHSERVER_DATABASE_URL": database_url,
        "AUTHSERVER_MAIL_URL": mail_url,
        "AUTHSERVER_SECRET_KEY": secrets.token_urlsafe(32),
        "AUTHSERVER_MAIL_RETRY_BASE": "0.2",
        "AUTHSERVER_MAIL_RETRY_MAX": "1",
        "AUTHSERVER_SECURITY_LOG": "off",
        "AUTHSERVER_ACCESS_LOG": "off",
        "AUTHSERVER_INSTANCE_PATH": str(workdir / "instance"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def start_server(
    workdir: Path,
    database_url: str,
    mail_url: str,
    workers: int = 2,
    args: tuple[str, ...] = (),
    **extra: str,
) -> Instance:
    port = free_port()
    instance = Instance(
        "serve",
        port,
        server_env(workdir, database_url, mail_url, port, **extra),
        workdir / "serve.log",
    )
    instance.start(workers=workers, args=args)
    instance.wait_healthy()
    return instance


def start_deliver(workdir: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(AUTHSERVER), "mail", "deliver", *args],
        env=env,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=(workdir / "deliver.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


class SlowRequest:
    """An HTTP request whose body arrives late: in flight in a worker until ``finish()``."""

    def __init__(self, port: int, path: str, body: bytes) -> None:
        self.body = body
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: localhost:{port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body[:1])

    def finish(self) -> tuple[int, bytes]:
        self.sock.sendall(self.body[1:])
        chunks = []
        while chunk := self.sock.recv(65536):
            chunks.append(chunk)
        self.sock.close()
        raw = b"".join(chunks)
        head, _, payload = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), payload


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def queue(database_url: str, count: int) -> list[int]:
    """``count`` e-mails queued by another process than the server (nothing wakes it)."""
    engine = create_engine(database_url)
    now = utcnow()
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(OutboxMail),
                [
                    {
                        "created_at": now,
                        "kind": "test",
                        "recipient": f"slow{i}@entreprise.fr",
                        "subject": f"Message {i}",
                        "body_text": "Bonjour\n",
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                    }
                    for i in range(count)
                ],
            )
            return list(connection.scalars(select(OutboxMail.id)))
    finally:
        engine.dispose()
