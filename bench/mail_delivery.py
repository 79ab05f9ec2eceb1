"""The CPU of delivering one alert e-mail (issue 13), in this process, to a real SMTP server.

New-device alerts are delivered by the one deliverer process ``authserver serve`` runs
beside its workers, on the same cores. Measured here, on a fresh migrated SQLite database
and a real aiosmtpd:

- **delivery**: the outbox filled with new-device alerts queued as a login queues them (their
  facts, mail/rendering.py), then drained batch after batch as the deliverer does (claim,
  the facts put into words, build the message, SMTP, record): the delivering thread's CPU
  per e-mail and the rate;
- **the message's bytes alone**, built by ``mail/message.py`` and, for comparison, by
  Flask-Mail (what delivery used before: its ``policy.SMTP`` generation was half of an
  e-mail's CPU).

``python -m bench --only mail_delivery``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import Options, Report, log, summary_row
from bench.server import PROJECT_ROOT

NAME = "mail_delivery"


def alert_row(i: int, now: Any) -> dict[str, Any]:
    """Outbox row ``i`` of a new-device alert, queued as a login queues it (its facts)."""
    from authserver.mail.rendering import unrendered_row

    return unrendered_row(
        now,
        kind="new_device",
        to=f"employeur{i}@entreprise.fr",
        subject="Nouvelle connexion à votre espace France Travail",
        template="new_device",
        user={"username": f"employeur{i}"},
        when=now,
        browser="Firefox 133",
        system="Windows 11",
        ip="192.0.2.10",
        method="clé d'accès (sans mot de passe)",
        recovery=False,
        not_me_link="https://entreprise.example.fr/alerts/not-me/abc",
        security_link="https://entreprise.example.fr/securite",
        forgot_link="https://entreprise.example.fr/password/forgot",
    )


def storage_bytes_written() -> int | None:
    """What this process has sent to the storage layer so far (Linux; None elsewhere): the
    database file and its WAL, checkpoints included; the SMTP conversation is a socket."""
    try:
        with open("/proc/self/io", encoding="ascii") as io:
            fields = dict(line.split(": ", 1) for line in io.read().splitlines())
        return int(fields["write_bytes"])
    except (OSError, KeyError, ValueError):
        return None


def _per_message_ms(build: Any, rounds: int) -> float:
    started = time.thread_time()
    for _ in range(rounds):
        build()
    return 1000 * (time.thread_time() - started) / rounds


def run(options: Options) -> Report:
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    import flask_mail
    from sqlalchemy import insert

    from authserver import create_app, settings_of
    from authserver.db import get_database
    from authserver.mail.delivery import Outgoing, SMTPTransport, deliver_due, message_id
    from authserver.mail.rendering import bodies
    from authserver.migrate import upgrade
    from authserver.models import OutboxMail, utcnow
    from tests.services import SMTPServer

    count = 60 if options.quick else 1000
    smtp = SMTPServer().start()
    folder = Path(tempfile.mkdtemp(prefix="authserver-bench-mail-"))
    url = f"sqlite:///{folder}/bench.db"
    os.environ.update(
        AUTHSERVER_INSTANCE_PATH=str(folder),
        AUTHSERVER_DATABASE_URL=url,
        AUTHSERVER_MAIL_URL=smtp.url,
    )
    try:
        upgrade(url)
        app = create_app(test_config={"MAIL_WORKER_DISABLED": True, "DETECTOR_INTERVAL": 0})
        database = get_database(app)
        settings = settings_of(app)
        now = utcnow()
        rows = [alert_row(i, now) for i in range(count)]
        with database.session_scope() as session:
            session.execute(insert(OutboxMail), rows)
        transport = SMTPTransport(settings)
        log(f"[{NAME}] delivering {count} new-device alerts to aiosmtpd ...")
        written = storage_bytes_written()
        cpu, wall, sent = time.thread_time(), time.perf_counter(), 0
        while sent < count:
            done, failed = deliver_due(database, transport, settings, templates=app.jinja_env)
            if failed or not done:
                raise RuntimeError(f"delivery stopped after {sent} e-mails ({failed} failed)")
            sent += done
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        after = storage_bytes_written()
        written = after - written if after is not None and written is not None else None
        smtp.wait_for(count, timeout=30)

        first = rows[0]
        text, html = bodies(
            app.jinja_env, first["subject"], None, None, first["template"], first["context"]
        )
        mail = Outgoing(1, first["recipient"], first["subject"], text, html, first["created_at"])
        ours = _per_message_ms(lambda: transport.render(mail), 50 if options.quick else 500)
        app.extensions["mail"] = transport.state

        def flask_mail_bytes() -> bytes:
            message = flask_mail.Message(
                subject=mail.subject,
                recipients=[mail.recipient],
                body=mail.body_text,
                html=mail.body_html,
                sender=settings.mail_sender,
                extra_headers={"Auto-Submitted": "auto-generated"},
            )
            message.msgId = message_id(mail, "entreprise.example.fr")
            return message.as_bytes()

        with app.app_context():
            theirs = _per_message_ms(flask_mail_bytes, 50 if options.quick else 500)
        get_database(app).dispose()
    finally:
        smtp.stop()
    data = {
        "quick": options.quick,
        "emails": count,
        "delivery_cpu_ms_per_email": round(1000 * cpu / count, 3),
        "delivery_per_s_one_thread": round(count / wall, 1),
        # The outbox's writes (claim, record), which SQLite makes under its one write lock.
        "storage_kib_written_per_email": round(written / 1024 / count, 1)
        if written is not None
        else None,
        "message_bytes_cpu_ms": round(ours, 3),
        "flask_mail_message_bytes_cpu_ms": round(theirs, 3),
    }
    table_rows = [
        summary_row(
            "delivery, CPU ms per e-mail (one thread)",
            data["delivery_cpu_ms_per_email"],
            f"{data['delivery_per_s_one_thread']} e-mails/s",
        ),
        summary_row(
            "delivery, KiB written to storage per e-mail",
            data["storage_kib_written_per_email"] if written is not None else "-",
            "database and WAL",
        ),
        # In µs: the table shows one decimal, and ours is a few hundredths of a millisecond.
        summary_row("message bytes, CPU µs (mail/message.py)", round(1000 * ours), ""),
        summary_row("message bytes, CPU µs (Flask-Mail)", round(1000 * theirs), "before"),
    ]
    return Report(name=NAME, data=data, rows=table_rows)
