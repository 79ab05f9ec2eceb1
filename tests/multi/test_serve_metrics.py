"""``/metrics`` under ``authserver serve``: one scrape answers for every gunicorn worker."""

from __future__ import annotations

import http.client
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.multi.single import start_server


def get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("GET", path, headers={"Host": f"localhost:{port}"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def worker_pids(folder: Path) -> set[str]:
    """prometheus_client's multiprocess files are named after the process that wrote them."""
    return {m.group(1) for p in folder.iterdir() if (m := re.match(r"histogram_(\d+)\.db", p.name))}


def test_one_scrape_sums_the_requests_of_every_worker(tmp_path: Path, sqlite_template: Path):
    database = tmp_path / "authserver.db"
    shutil.copy(sqlite_template, database)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    server = start_server(tmp_path, f"sqlite:///{database}", "console", TMPDIR=str(scratch))
    [folder] = scratch.glob("authserver-metrics-*")  # made by serve, as in production
    sent = 0
    try:
        with ThreadPoolExecutor(8) as pool:
            # New connections, several at once: the kernel spreads them over both workers.
            for _ in range(10):
                statuses = list(pool.map(lambda _: get(server.port, "/login")[0], range(40)))
                assert set(statuses) == {200}
                sent += len(statuses)
                if len(worker_pids(folder)) >= 2:
                    break
        assert len(worker_pids(folder)) >= 2, "every request went to one worker"
        status, text = get(server.port, "/metrics")
        assert status == 200
        counted = re.search(
            r'^authserver_request_duration_seconds_count\{endpoint="accounts\.login",'
            r'method="GET"\} (\S+)$',
            text,
            re.M,
        )
        assert counted, text[:2000]
        assert float(counted.group(1)) == sent
        assert re.search(r"^authserver_outbox_pending 0\.0$", text, re.M)
    finally:
        server.stop()
    assert not folder.exists()


def test_a_folder_given_by_the_operator_is_used_and_kept(tmp_path: Path, sqlite_template: Path):
    database = tmp_path / "authserver.db"
    shutil.copy(sqlite_template, database)
    folder = tmp_path / "prometheus"
    folder.mkdir()
    server = start_server(
        tmp_path, f"sqlite:///{database}", "console", PROMETHEUS_MULTIPROC_DIR=str(folder)
    )
    try:
        assert get(server.port, "/login")[0] == 200
        assert worker_pids(folder)
    finally:
        server.stop()
    assert folder.exists()
