"""The outbox with several delivery workers: every e-mail sent exactly once."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import uuid
from collections import Counter

import pytest
from sqlalchemy import create_engine, func, insert, select

from authserver.models import OutboxMail, utcnow
from tests.multi.cluster import AUTHSERVER, wait_until
from tests.multi.conftest import Setup

pytestmark = [pytest.mark.pg, pytest.mark.xdist_group("multi")]

COUNT = 200


def test_200_queued_emails_and_two_delivery_workers_each_delivered_once(multi: Setup):
    run = uuid.uuid4().hex[:8]
    engine = create_engine(multi.database_url)
    try:
        now = utcnow()
        with engine.begin() as connection:
            connection.execute(
                insert(OutboxMail),
                [
                    {
                        "created_at": now,
                        "kind": "test",
                        "recipient": f"employer{i}@multi.example.fr",
                        "subject": f"multi {run} {i:03d}",
                        "body_text": f"Message {i}\n",
                        "body_html": None,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                    }
                    for i in range(COUNT)
                ],
            )
        # Two `authserver mail deliver` processes race for the rows (the servers' own
        # in-process workers may join in: more competitors, same rule).
        cluster = multi.cluster
        logs = [cluster.tmpdir / f"deliver{n}.log" for n in (1, 2)]
        workers = [
            subprocess.Popen(
                [str(AUTHSERVER), "mail", "deliver"],
                env=cluster.base_env,
                cwd=cluster.tmpdir,
                stdin=subprocess.DEVNULL,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            for log in logs
        ]
        try:

            def ours() -> list[str]:
                return [
                    str(m["Subject"])
                    for m in list(multi.smtp.messages)
                    if str(m["Subject"]).startswith(f"multi {run} ")
                ]

            wait_until(lambda: len(ours()) >= COUNT, timeout=40, what=f"{COUNT} e-mails")

            def all_sent() -> bool:
                with engine.connect() as connection:
                    pending = connection.scalar(
                        select(func.count())
                        .select_from(OutboxMail)
                        .where(OutboxMail.subject.like(f"multi {run} %"))
                        .where(OutboxMail.status != "sent")
                    )
                return pending == 0

            wait_until(all_sent, timeout=10, what="every row marked sent")
        finally:
            for worker in workers:
                with contextlib.suppress(ProcessLookupError):
                    worker.send_signal(signal.SIGINT)
            for worker in workers:
                try:
                    worker.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
        counts = Counter(ours())
        assert len(counts) == COUNT
        duplicates = {subject: n for subject, n in counts.items() if n != 1}
        assert not duplicates, duplicates
        # One Message-ID per outbox row, each seen once.
        ids = Counter(
            re.search(r"outbox-(\d+)", str(m["Message-ID"])).group(1)  # type: ignore[union-attr]
            for m in list(multi.smtp.messages)
            if str(m["Subject"]).startswith(f"multi {run} ")
        )
        assert len(ids) == COUNT and set(ids.values()) == {1}
        with engine.connect() as connection:
            attempts = connection.execute(
                select(OutboxMail.attempts, OutboxMail.claimed_until).where(
                    OutboxMail.subject.like(f"multi {run} %")
                )
            ).all()
        assert {row.attempts for row in attempts} == {1}
        assert {row.claimed_until for row in attempts} == {None}
    finally:
        engine.dispose()
