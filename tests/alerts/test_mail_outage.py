"""An alert never delays or blocks a login, and SMTP being down loses none (issue 4).

Alerts go through the outbox in the login's transaction; the delivery worker sends them
in the background and retries. Counted at the real SMTP server: every alert arrives once.
Timing is asserted with generous bounds only (this is a shared 2-core machine): no login
waits for SMTP, i.e. each one stays far below the SMTP timeout, even when the server
accepts connections and then says nothing.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time

from authserver.mail.delivery import SMTP_TIMEOUT
from tests.alerts.alert_helpers import (
    ALERT_SUBJECT,
    USERNAME,
    account_with_first_login,
    browser,
    not_me_link,
    queued,
    received,
    wait_delivered,
)
from tests.conftest import PASSWORD
from tests.services import SMTPServer, text_of

LOGINS = 20
# A login that waited for SMTP would take about SMTP_TIMEOUT (15 s); a normal one takes
# tens of milliseconds. A third of the timeout leaves room for a very slow machine.
FAR_BELOW_TIMEOUT = SMTP_TIMEOUT / 3


def timed_new_device_logins(app, smtp: SMTPServer, count: int, first_ip: int) -> list[float]:
    """``count`` password logins, each from a browser never seen: seconds each POST took."""
    durations = []
    for n in range(count):
        stranger = browser(app, smtp, ip=f"198.51.100.{first_ip + n}")
        stranger.csrf("/login")  # the form page, outside the timing
        started = time.perf_counter()
        response = stranger.login(USERNAME, PASSWORD)
        durations.append(time.perf_counter() - started)
        assert response.status_code == 302
    return durations


def wait_for_alerts(smtp: SMTPServer, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(received(smtp, ALERT_SUBJECT)) < count:
        assert time.monotonic() < deadline, f"{len(received(smtp, ALERT_SUBJECT))} of {count}"
        time.sleep(0.05)


def test_smtp_down_during_20_new_device_logins(app, smtp):
    account_with_first_login(app, smtp)
    running = timed_new_device_logins(app, smtp, 10, first_ip=1)
    wait_delivered(app)
    smtp.clear()

    smtp.stop()
    stopped = timed_new_device_logins(app, smtp, LOGINS, first_ip=100)
    assert len(queued(app, "new_device")) == 10 + LOGINS  # all in the outbox, at commit
    time.sleep(1.5)  # the worker tries (and fails) meanwhile
    assert smtp.messages == []
    smtp.start()

    wait_for_alerts(smtp, LOGINS)
    wait_delivered(app)
    time.sleep(1.0)  # a duplicate would arrive now
    alerts = received(smtp, ALERT_SUBJECT)
    assert len(alerts) == LOGINS
    assert len({not_me_link(m) for m in alerts}) == LOGINS  # none twice
    assert len({m["Message-ID"] for m in alerts}) == LOGINS
    shown = sorted(text_of(m).split("Adresse IP : ", 1)[1].split()[0] for m in alerts)
    assert shown == sorted(f"198.51.100.{100 + n}" for n in range(LOGINS))  # one per login

    # Logins were not slower: none waited for SMTP, and the median stayed of the same order.
    assert max(stopped) < FAR_BELOW_TIMEOUT, stopped
    assert statistics.median(stopped) < 3 * statistics.median(running) + 0.5, (running, stopped)


class SilentSMTP:
    """Accepts connections on the SMTP port and never says a word (a hung server)."""

    def __init__(self, port: int) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(16)
        self.listener.settimeout(0.05)  # a blocked accept() would outlive close()
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.accepted.append(connection)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.listener.close()
        for connection in self.accepted:  # the waiting client sees the end at once
            connection.close()


def test_a_hung_smtp_server_does_not_hold_logins(app, smtp):
    account_with_first_login(app, smtp)
    wait_delivered(app)
    smtp.stop()
    silent = SilentSMTP(smtp.port)
    try:
        durations = timed_new_device_logins(app, smtp, 5, first_ip=200)
        deadline = time.monotonic() + 5
        while not silent.accepted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert silent.accepted, "the delivery worker did not even try the hung server"
    finally:
        silent.close()
    assert max(durations) < FAR_BELOW_TIMEOUT, durations
    smtp.start()
    wait_for_alerts(smtp, 5, timeout=SMTP_TIMEOUT + 30)
    wait_delivered(app, timeout=SMTP_TIMEOUT + 30)
    assert len(received(smtp, ALERT_SUBJECT)) == 5
