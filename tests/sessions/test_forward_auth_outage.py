"""``/auth/verify`` during a database outage: every request a clean 503, one log line per
outage (a traceback at most once a minute, the other failures counted), not one per request."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError

from authserver.sessions.forward_auth import OUTAGE_KEY, READER_KEY
from tests.sessions.oidc_support import logged_in_actions

LOGGER = "authserver.sessions.forward_auth"


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == LOGGER]


def assert_unavailable(answer) -> None:
    assert answer.status_code == 503
    assert answer.get_json()["error"] == "unavailable"
    assert "Traceback" not in answer.get_data(as_text=True)


def test_a_database_outage_logs_one_traceback_not_one_per_request(make_app, tmp_path, caplog):
    app = make_app(f"sqlite:///{tmp_path}/absent/dir/authserver.db", AUTHSERVER_MAIL_WORKER="0")
    client = app.test_client()
    client.set_cookie("authserver_session", "s" * 43)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(200):
            assert_unavailable(client.get("/auth/verify"))
    (line,) = records(caplog)
    assert line.levelno == logging.ERROR and line.exc_info is not None
    assert "503" in line.getMessage()


class Switch:
    """The real reader, or a database that does not answer."""

    def __init__(self, reader) -> None:
        self.reader = reader
        self.down = False

    def lookup(self, id_hash: bytes):
        if self.down:
            raise OperationalError("SELECT …", {}, ConnectionRefusedError("connection refused"))
        return self.reader.lookup(id_hash)


def test_one_traceback_a_minute_the_rest_counted_and_one_line_when_it_answers_again(
    app, actions, caplog
):
    user = logged_in_actions(actions)
    switch = Switch(app.extensions[READER_KEY])
    app.extensions[READER_KEY] = switch
    now = [1000.0]
    app.extensions[OUTAGE_KEY].clock = lambda: now[0]

    def verify(expected: int) -> None:
        answer = user.client.get("/auth/verify")
        if expected == 503:
            assert_unavailable(answer)
        else:
            assert answer.status_code == expected

    with caplog.at_level(logging.INFO, logger=LOGGER):
        verify(200)
        switch.down = True
        for _ in range(10):
            verify(503)
        now[0] += 30
        for _ in range(5):
            verify(503)
        assert len(records(caplog)) == 1  # the first failure only, with its traceback
        now[0] += 31  # a minute after the first report: the next failure is reported
        verify(503)
        first, second = records(caplog)
        assert first.exc_info is not None and second.exc_info is not None
        assert "14 more" in second.getMessage()

        switch.down = False
        verify(200)
        verify(200)
        recovered = records(caplog)[2:]
        assert [r.getMessage() for r in recovered] == [
            "forward-auth answering again after 16 failed request(s)"
        ]
        assert recovered[0].exc_info is None

        switch.down = True  # a new outage within the minute: counted, no second traceback
        verify(503)
        assert len(records(caplog)) == 3
        now[0] += 60
        verify(503)
        assert len(records(caplog)) == 4 and records(caplog)[3].exc_info is not None
        assert "1 more" in records(caplog)[3].getMessage()


def test_failing_and_answering_by_turns_logs_one_traceback_a_minute(app, actions, caplog):
    """A success does not restart the minute: a flapping database (or one bad connection
    of several) is one traceback a minute, not one per failure."""
    user = logged_in_actions(actions)
    switch = Switch(app.extensions[READER_KEY])
    app.extensions[READER_KEY] = switch
    now = [1000.0]
    app.extensions[OUTAGE_KEY].clock = lambda: now[0]

    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(50):
            switch.down = True
            assert_unavailable(user.client.get("/auth/verify"))
            switch.down = False
            assert user.client.get("/auth/verify").status_code == 200
            now[0] += 1
        tracebacks = [r for r in records(caplog) if r.exc_info is not None]
        assert len(tracebacks) == 1
        # One line when it answered again after the reported failure; the other failures
        # are counted for the next report.
        assert len(records(caplog)) == 2
        now[0] += 10
        switch.down = True
        assert_unavailable(user.client.get("/auth/verify"))
        assert "49 more" in records(caplog)[-1].getMessage()
