"""How ``authserver serve``'s workers share the port (issue 16): one socket per worker by
default, so the kernel spreads keep-alive connections over every worker, and never a second
server silently sharing the port."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict

from bench.cpu import listening_sockets
from tests.multi.cluster import AUTHSERVER
from tests.multi.single import start_server, wait_until

WORKERS = 4


def login_pages_per_worker(folder: Path) -> dict[str, int]:
    """``GET /login`` answered by each worker, from the multiprocess metric files."""
    counts = {}
    for path in folder.glob("histogram_*.db"):
        total = 0
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _name, sample, labels, *_ = json.loads(key)
            if sample.endswith("_bucket") and labels.get("endpoint") == "accounts.login":
                total += int(value)
        counts[path.stem.split("_", 1)[1]] = total
    return counts


def open_and_ask(port: int, count: int) -> list[int]:
    """``count`` connections open together (a pool), then one request on each."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(count)]

    def ask(sock: socket.socket) -> int:
        sock.sendall(f"GET /login HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
        head = sock.recv(65536)
        return int(head.split()[1])

    try:
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(ask, sockets))
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("engine", ["gunicorn", "granian"])
def test_every_worker_has_its_socket_and_takes_connections(
    tmp_path: Path, sqlite_template: Path, engine: str
):
    database = tmp_path / "authserver.db"
    shutil.copy(sqlite_template, database)
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    server = start_server(
        tmp_path,
        f"sqlite:///{database}",
        "console",
        workers=WORKERS,
        args=("--engine", engine),
        PROMETHEUS_MULTIPROC_DIR=str(metrics),
    )
    try:
        # A Granian worker binds its socket once its app is loaded, after the first answers.
        wait_until(lambda: listening_sockets(server.port) == WORKERS, 30, "every worker")
        # 64 connections opened at once: with one shared socket the first worker to wake
        # may take them all; hashed over 4 sockets, a worker left with none is a 1-in-10^7.
        assert set(open_and_ask(server.port, 64)) == {200}
        counts = login_pages_per_worker(metrics)
        assert sum(counts.values()) == 64
        assert len([n for n in counts.values() if n > 0]) == WORKERS, counts
    finally:
        server.stop()


def test_shared_socket_on_request(tmp_path: Path, sqlite_template: Path):
    database = tmp_path / "authserver.db"
    shutil.copy(sqlite_template, database)
    server = start_server(tmp_path, f"sqlite:///{database}", "console", args=("--shared-socket",))
    try:
        assert listening_sockets(server.port) == 1
        assert set(open_and_ask(server.port, 8)) == {200}
    finally:
        server.stop()


@pytest.mark.parametrize("engine", ["gunicorn", "granian"])
def test_a_second_server_on_the_same_port_is_refused(
    tmp_path: Path, sqlite_template: Path, engine: str
):
    """SO_REUSEPORT would let it bind too and quietly take half the traffic (old code, another
    database): it must stop at once, saying why."""
    database = tmp_path / "authserver.db"
    shutil.copy(sqlite_template, database)
    first = start_server(tmp_path, f"sqlite:///{database}", "console", args=("--engine", engine))
    try:
        # A Granian worker binds its socket once its app is loaded, after the first answers.
        wait_until(lambda: listening_sockets(first.port) == 2, 30, "both workers")
        second = subprocess.run(
            [str(AUTHSERVER), "serve", "--workers", "2", "--engine", engine],
            env=first.env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2, second.stdout + second.stderr
        assert "adresse déjà utilisée" in second.stderr
        assert "Traceback" not in second.stderr
        assert listening_sockets(first.port) == 2  # the first server's two workers, only
        assert set(open_and_ask(first.port, 4)) == {200}
    finally:
        first.stop()
