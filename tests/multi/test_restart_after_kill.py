"""Issue 16: a server killed (SIGKILL) under passkey-login load leaves its SQLite WAL files;
restarted, it answers every login from its first second: no 503 from SQLITE_BUSY_RECOVERY."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from authserver.rawsql import recover_wal, retry_busy
from authserver.sqlitecodes import is_busy
from tests.multi.single import start_server


class _Busy(sqlite3.OperationalError):
    def __init__(self, code: int) -> None:
        super().__init__("database is locked")
        self.sqlite_errorcode = code


@pytest.mark.parametrize(
    ("code", "retried"),
    [(5, True), (261, True), (773, True), (6, True), (262, True), (517, False), (1, False)],
)
def test_the_whole_busy_family_is_tried_again_but_busy_snapshot(code: int, retried: bool) -> None:
    assert is_busy(_Busy(code)) is retried
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise _Busy(code)
        return "ok"

    if retried:
        assert retry_busy(flaky) == "ok" and len(calls) == 2
    else:
        with pytest.raises(sqlite3.OperationalError):
            retry_busy(flaky)
        assert calls == [1]


KILLED_WRITER = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("CREATE TABLE t (x)")
for i in range(500):
    db.execute("INSERT INTO t VALUES (?)", (i,))
os.kill(os.getpid(), signal.SIGKILL)
"""


LARGE_WAL = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
for _ in range(6000):
    db.execute("INSERT INTO filler VALUES (randomblob(4000))")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_wal_left_by_a_killed_process_is_recovered_once(tmp_path: Path) -> None:
    path = tmp_path / "ceremonies.db"
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], check=False, timeout=30)
    wal = path.with_name(path.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    assert recover_wal(path) is True
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed (and removed)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM t").fetchone() == (500,)
    assert recover_wal(tmp_path / "absent.db") is False


def _post(port: int, path: str, body: dict) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={"Host": f"localhost:{port}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0  # the server being killed (mid-answer too): not counted as an answer
    finally:
        connection.close()


def test_killed_under_load_then_restarted_answers_every_login(
    tmp_path: Path, sqlite_template: Path
) -> None:
    database = tmp_path / "authserver.db"
    shutil.copy(sqlite_template, database)
    url = f"sqlite:///{database}"
    server = start_server(tmp_path, url, "console", workers=4)
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            _post(server.port, "/webauthn/login/options", {})

    threads = [threading.Thread(target=load, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        threading.Event().wait(2.0)
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    sidecar = database.with_name("authserver.ceremonies.db")
    assert sidecar.exists()
    # A busy production server leaves a large WAL: its replay by the first connection takes
    # long enough for the other workers' first statements to meet it (SQLITE_BUSY_RECOVERY).
    subprocess.run([sys.executable, "-c", LARGE_WAL, str(sidecar)], check=False, timeout=60)
    assert sidecar.with_name(sidecar.name + "-wal").stat().st_size > 20_000_000

    restarted = start_server(tmp_path, url, "console", workers=4)
    try:
        with ThreadPoolExecutor(16) as pool:
            statuses = list(
                pool.map(
                    lambda _: _post(restarted.port, "/webauthn/login/options", {}), range(1000)
                )
            )
        errors = [status for status in statuses if status >= 500 or status == 0]
        assert errors == [], f"{len(errors)} failed answers: {sorted(set(errors))}"
    finally:
        restarted.stop()
