"""The values rawsql sends to the driver are the ones SQLAlchemy itself would send.

The hot paths run the models' statements on bare driver cursors (rawsql.Prepared); each
value goes through its column type's conversion, datetimes' remembered for the instants a
login binds several times. Here: a login's real rows, sent by SQLAlchemy to a real database
(the parameters caught on their way to the driver) and converted by rawsql, must be equal.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, Table, create_engine, event
from sqlalchemy import insert as sql_insert

from authserver.accounts import tokens
from authserver.alerts import devices, events
from authserver.alerts.notify import SECURITY_EVENT, Site, new_device_alert
from authserver.mail import outbox
from authserver.models import Base, UTCDateTime, utcnow
from authserver.rawsql import Prepared
from authserver.sessions import store
from authserver.webauthn import service

PARIS = timezone(timedelta(hours=1))


def login_rows(now: datetime) -> list[tuple[Any, dict[str, Any]]]:
    """Each statement of a new-browser passkey login, with the row the login core gives it."""
    device = devices.new_device_row(
        user_id=1, token="jeton", ip="192.0.2.7", agent="Mozilla/5.0 Firefox/133.0", now=now
    )
    _, session = store.new_session_row(
        1,
        method="passkey",
        amr=["hwk", "user"],
        ip="192.0.2.7",
        user_agent="Firefox",
        lifetimes=store.Lifetimes(idle=3600, absolute=36000),
        device_id=1,
    )
    site = Site(base_url="https://entreprise.example.fr", build=lambda endpoint, **values: "/x")
    alert = new_device_alert(
        site,
        user_id=1,
        username="martin.dupont",
        email="martin@example.fr",
        device=device,
        method="passkey",
        now=now,
        recovery=False,
    ).for_device(1)
    login = events.login_row(
        method="passkey",
        outcome="success",
        reason="new_device",
        user_id=1,
        username_attempt="",
        ip="192.0.2.7",
        agent="Firefox",
        device_id=1,
        now=now,
    )
    use = {"pk": 1, "seen": 0, "count": 1, "bs": True, "now": now, "ip": "192.0.2.7"}
    return [
        (devices.INSERT, device),
        (tokens.INSERT, alert.token),
        (outbox.INSERT, alert.mail),
        (SECURITY_EVENT, alert.event),
        (store.OPEN, session),
        (events.RECORD, login),
        (service.RECORD_USE, use),
    ]


def sent_by_sqlalchemy(engine: Engine, statement: Any, row: dict[str, Any]) -> Any:
    """The parameters SQLAlchemy hands the driver for ``statement`` with ``row``."""
    caught: list[Any] = []

    def catch(conn: Any, cursor: Any, sql: str, parameters: Any, context: Any, many: Any):
        caught.append(parameters)

    event.listen(engine, "before_cursor_execute", catch)
    try:
        with engine.connect() as connection:
            connection.execute(statement, row)
            connection.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", catch)
    (parameters,) = caught
    return parameters


@pytest.fixture
def engine(tmp_path) -> Engine:
    engine = create_engine(f"sqlite:///{tmp_path}/params.db")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_a_logins_rows_are_sent_as_sqlalchemy_sends_them(engine):
    now = utcnow()
    # Twice: the second time every instant is a remembered one.
    for _ in range(2):
        for statement, row in login_rows(now):
            ours = Prepared(statement, engine.dialect)
            assert ours.compiled(row).params(row) == sent_by_sqlalchemy(engine, statement, row)


def test_many_instants_in_a_row_are_each_converted_as_their_own(engine):
    start = utcnow()
    for second in range(200):  # more than the conversions remember
        now = start + timedelta(seconds=second, microseconds=second)
        statement, row = login_rows(now)[5]  # the login event
        ours = Prepared(statement, engine.dialect)
        assert ours.compiled(row).params(row) == sent_by_sqlalchemy(engine, statement, row)


def test_one_instant_in_two_zones_keeps_each_columns_own_text(engine):
    """Equal datetimes need not be stored alike: a plain DateTime keeps the wall clock (two
    texts for one instant), UTCDateTime converts to UTC (one text)."""
    metadata = MetaData()
    table = Table(
        "moments",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("plain", DateTime()),
        Column("utc", UTCDateTime()),
    )
    metadata.create_all(engine)
    statement = sql_insert(table)
    ours = Prepared(statement, engine.dialect)
    in_utc = datetime(2026, 12, 8, 11, 0, tzinfo=timezone.utc)
    in_paris = in_utc.astimezone(PARIS)
    assert in_utc == in_paris
    sent = []
    for moment in (in_utc, in_paris, in_utc):
        row = {"plain": moment, "utc": moment}
        params = ours.compiled(row).params(row)
        assert params == sent_by_sqlalchemy(engine, statement, row)
        sent.append(params)
    assert sent[0][0] != sent[1][0]  # the plain column: 11:00 and 12:00
    assert sent[0][1] == sent[1][1]  # UTCDateTime: 11:00 both times
    assert sent[2] == sent[0]


def test_a_naive_datetime_is_refused_every_time(engine):
    """UTCDateTime refuses a naive datetime; a refusal is never remembered as a value."""
    statement, row = login_rows(utcnow())[5]
    naive = {**row, "created_at": datetime(2026, 12, 8, 11, 0)}
    ours = Prepared(statement, engine.dialect)
    for _ in range(2):
        with pytest.raises(ValueError, match="naive"):
            ours.compiled(naive).params(naive)
