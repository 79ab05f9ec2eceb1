"""``authserver serve`` delivers mail from one process beside its workers (mail/child.py).

A real server on SQLite and a real SMTP relay: a worker's commit wakes it at once (its own
look at the queue set to 30 s here, so only the doorbell can be that quick), the master
starts it again when it is killed, it leaves when the master is killed outright, and no web
worker delivers anything itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from bench.cpu import children, is_mail_deliverer
from tests.multi.cluster import AUTHSERVER, PASSWORD, Browser, wait_until
from tests.multi.single import queue, start_server
from tests.services import SMTPServer


def deliverers(master: int) -> list[int]:
    return [pid for pid in children(master) if is_mail_deliverer(pid)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status").read_text() if Path(f"/proc/{pid}").exists() else ""
    return "State:\tZ" not in status


def create_user(tmp_path: Path, env: dict[str, str], name: str) -> None:
    subprocess.run(
        [str(AUTHSERVER), "user", "create", "--username", name, "--email",
         f"{name}@entreprise.fr", "--activated", "--password-stdin"],
        env={**env, "AUTHSERVER_MAIL_WORKER": "0"},
        cwd=tmp_path,
        input=PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
    )  # fmt: skip


def test_one_deliverer_beside_the_workers_woken_by_their_commits_and_kept_alive(
    tmp_path: Path, sqlite_template: Path
):
    database = tmp_path / "authserver.db"
    shutil.copy(sqlite_template, database)
    database_url = f"sqlite:///{database}"
    relay = SMTPServer().start()
    extra = {"AUTHSERVER_MAIL_POLL_SECONDS": "30"}
    server = start_server(tmp_path, database_url, relay.url, **extra)
    assert server.proc is not None
    master = server.proc.pid
    seen: set[int] = set()
    try:
        create_user(tmp_path, server.env, "ana.lefort")
        wait_until(lambda: len(deliverers(master)) == 1, 20, what="the deliverer")
        (first,) = deliverers(master)
        seen.add(first)
        workers = [pid for pid in children(master) if pid != first]
        assert len(workers) == 2
        threads = {
            Path(f"/proc/{w}/task/{t}/comm").read_text().strip()
            for w in workers
            for t in os.listdir(f"/proc/{w}/task")
        }
        assert "mail-delivery" not in threads  # no worker delivers by itself

        # A worker's commit (the reset request) rings: the e-mail leaves at once, not at the
        # deliverer's next look 30 s later.
        browser = Browser()
        page = browser.get(server, "/password/forgot")
        asked = time.monotonic()
        reply = browser.request(
            server,
            "POST",
            "/password/forgot",
            form={"csrf_token": page.csrf(), "username": "ana.lefort"},
        )
        assert reply.status in (200, 302, 303), reply.text[:300]
        wait_until(lambda: len(relay.messages) == 1, 10, what="the reset e-mail")
        assert time.monotonic() - asked < 10
        assert "/password/reset/" in relay.messages[0].get_body(("plain",)).get_content()
        # Counted in the instance's metrics with the workers' requests.
        metrics = browser.get(server, "/metrics").text
        assert re.search(r"^authserver_mail_sent_total(\{[^}]*\})? 1\.0$", metrics, re.M), metrics

        # Killed: the master starts another one, which finds mail queued meanwhile.
        os.kill(first, signal.SIGKILL)
        queue(database_url, 1)  # behind its back: only its look finds it
        wait_until(
            lambda: [p for p in deliverers(master) if p != first], 20, what="a new deliverer"
        )
        wait_until(lambda: len(relay.messages) == 2, 20, what="the mail queued meanwhile")
        (second,) = deliverers(master)
        seen.add(second)
        assert f"mail deliverer (pid {first}) stopped (killed by SIGKILL)" in server.log_text()

        # The master killed outright (the OOM killer, kill -9): neither the deliverer nor
        # the workers outlive it (a worker left listening would answer with the old code
        # beside the next server, on the same port).
        seen.update(workers)
        os.kill(master, signal.SIGKILL)
        server.proc.wait(10)
        wait_until(lambda: not alive(second), 10, what="the deliverer to leave")
        wait_until(lambda: not any(alive(w) for w in workers), 15, what="the workers to leave")
    finally:
        server.stop()
        for pid in seen:  # a failed test leaves no deliverer or worker behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        relay.stop()
