"""A real SMTP server (aiosmtpd) that misbehaves on purpose, per recipient.

The recipient's local part chooses the behaviour, so a test sets it up by naming addresses:

- ``slow…``      answers the end of DATA after ``slow_seconds`` (a slow relay);
- ``flaky…``     answers ``451`` at the end of DATA the first ``flaky_times`` times;
- ``greylist…``  answers ``450`` to RCPT TO the first ``flaky_times`` times;
- ``refused…``   answers ``550 5.1.1`` to RCPT TO, always (the mailbox does not exist);
- anything else is accepted at once.

Only accepted messages are kept (``messages``), exactly as the receiving side would see them:
counting their Message-IDs is counting deliveries.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections import Counter

from tests.services import SMTPServer


class _FaultyHandler:
    def __init__(self, server: FaultySMTPServer) -> None:
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0]
        if local.startswith("refused"):
            return "550 5.1.1 Destinataire inconnu"
        if local.startswith("greylist") and self.server._fault(("rcpt", address)):
            return "450 4.2.0 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.default
        )
        address = envelope.rcpt_tos[0]
        if address.startswith("slow"):
            await asyncio.sleep(self.server.slow_seconds)
        if address.startswith("flaky") and self.server._fault(("data", address)):
            return "451 4.3.0 Temporary local problem, try again"
        self.server._received(msg, envelope.mail_from, list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


class FaultySMTPServer(SMTPServer):
    def __init__(
        self, slow_seconds: float = 0.3, flaky_times: int = 2, smtputf8: bool = True
    ) -> None:
        super().__init__()
        self.smtputf8 = smtputf8  # False: a relay that does not announce SMTPUTF8
        self.slow_seconds = slow_seconds
        self.flaky_times = flaky_times
        self.faults: Counter[tuple[str, str]] = Counter()
        self.connections = 0

    def _fault(self, key: tuple[str, str]) -> bool:
        with self._cond:
            if self.faults[key] >= self.flaky_times:
                return False
            self.faults[key] += 1
            return True

    def start(self) -> FaultySMTPServer:
        if self._controller is not None:
            return self
        from aiosmtpd.controller import Controller

        outer = self

        class _Counting(_FaultyHandler):
            async def handle_EHLO(self, server, session, envelope, hostname, responses):
                with outer._cond:
                    outer.connections += 1
                session.host_name = hostname
                return responses

        controller = Controller(
            _Counting(self),
            hostname=self.host,
            port=self.port,
            enable_SMTPUTF8=self.smtputf8,
            ready_timeout=10,
        )
        controller.start()
        self._controller = controller
        return self

    def message_ids(self) -> Counter[str]:
        with self._cond:
            return Counter(str(m["Message-ID"]) for m in self.messages)
