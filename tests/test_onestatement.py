"""Writes sent to PostgreSQL as one statement (onestatement.py): all of them or none.

The passkey login fast path writes a login's rows this way on PostgreSQL; the login
equivalence test (tests/sessions/test_login_equivalence.py) compares the rows it leaves
with the views'. Here: the statement's own promises, on a real PostgreSQL database.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import bindparam, func, select, update

from authserver.alerts import devices
from authserver.db import get_database
from authserver.models import AuthSession, Device, User, utcnow
from authserver.onestatement import Composer, LostRace
from authserver.rawsql import RawConnections
from authserver.sessions import store
from tests.alerts.console_helpers import add_user

pytestmark = pytest.mark.pg

_USERS = User.__table__
# A compare-and-set as the passkey's counter is: it changes the row only as it was read.
LOCK_IF_OPEN = (
    update(_USERS)
    .where(_USERS.c.id == bindparam("pk"), _USERS.c.locked_at.is_(None))
    .values(locked_at=bindparam("now"))
)


@pytest.fixture
def pg_app(request: pytest.FixtureRequest, make_app: Any) -> Flask:
    from tests.conftest import fresh_pg_url

    postgres = request.getfixturevalue("postgres")
    return make_app(fresh_pg_url(postgres, request.getfixturevalue("pg_template")))


@pytest.fixture
def raw(pg_app: Flask) -> Any:
    connections = RawConnections(get_database(pg_app).engine)
    yield connections
    connections.dispose()


def device_row(user_id: int, token: str = "t") -> dict[str, Any]:
    return devices.new_device_row(
        user_id=user_id, token=token, ip="192.0.2.7", agent="Firefox", now=utcnow()
    )


def session_row(user_id: int, device_id: int) -> dict[str, Any]:
    _, row = store.new_session_row(
        user_id,
        method="passkey",
        amr=["hwk"],
        ip="192.0.2.7",
        user_agent="Firefox",
        lifetimes=store.Lifetimes(idle=600, absolute=3600),
        device_id=device_id,
    )
    return row


def count(app: Flask, model: Any) -> int:
    with get_database(app).session_scope() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def locked(app: Flask, user_id: int) -> bool:
    with get_database(app).session_scope() as session:
        return session.scalar(select(User.locked_at).where(User.id == user_id)) is not None


def login_like(
    composer: Composer, cursor: Any, user_id: int, *, gated: bool = True, token: str = "t"
) -> Any:
    """A gate, a new device (its id taken first), then a session naming it."""
    one = composer.statement(cursor)
    if gated:
        one.gate(LOCK_IF_OPEN, {"pk": user_id, "now": utcnow()})
    device_id = one.insert(devices.INSERT, device_row(user_id, token))
    one.execute(store.OPEN, session_row(user_id, device_id))
    return one


def test_the_statements_are_written_together_when_the_gate_holds(pg_app, raw):
    user_id = add_user(pg_app, "martin.dupont")
    composer = Composer(raw)
    with raw.transaction() as cursor:
        login_like(composer, cursor, user_id).run()
    assert locked(pg_app, user_id)
    assert (count(pg_app, Device), count(pg_app, AuthSession)) == (1, 1)
    with get_database(pg_app).session_scope() as session:
        (device,) = session.scalars(select(Device))
        (auth_session,) = session.scalars(select(AuthSession))
        assert auth_session.device_id == device.id
        assert device.last_ip == "192.0.2.7" and device.user_id == user_id


def test_a_gate_that_changes_no_row_writes_nothing(pg_app, raw):
    """Everything after the gate is written only if it changed its one row: the statement
    fails as a whole, and the caller hears ``LostRace``."""
    user_id = add_user(pg_app, "paul.bloque", locked=True)
    composer = Composer(raw)
    with pytest.raises(LostRace), raw.transaction() as cursor:
        login_like(composer, cursor, user_id).run()
    assert (count(pg_app, Device), count(pg_app, AuthSession)) == (0, 0)
    # The connection is fine for the next login.
    other = add_user(pg_app, "claire.martin")
    with raw.transaction() as cursor:
        login_like(composer, cursor, other).run()
    assert (count(pg_app, Device), count(pg_app, AuthSession)) == (1, 1)


def test_a_failing_statement_writes_nothing_of_the_others(pg_app, raw):
    user_id = add_user(pg_app, "martin.dupont")
    composer = Composer(raw)
    with pytest.raises(raw.errors), raw.transaction() as cursor:
        one = login_like(composer, cursor, user_id)
        one.execute(store.OPEN, session_row(user_id + 100, 1))  # no such user, no device
        one.run()
    assert not locked(pg_app, user_id)
    assert (count(pg_app, Device), count(pg_app, AuthSession)) == (0, 0)


def test_ids_taken_from_the_sequence_are_the_tables_own(pg_app, raw):
    """A row written with an id taken first, then one the ORM writes with the column's
    default: neither collides, as two default ids would not."""
    user_id = add_user(pg_app, "martin.dupont")
    composer = Composer(raw)
    with raw.transaction() as cursor:
        login_like(composer, cursor, user_id, gated=False).run()
    with get_database(pg_app).session_scope() as session:
        session.add(Device(**device_row(user_id, token="u")))
    with raw.transaction() as cursor:
        login_like(composer, cursor, user_id, gated=False, token="v").run()
    with get_database(pg_app).session_scope() as session:
        ids = list(session.scalars(select(Device.id).order_by(Device.id)))
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2]


def test_each_sequence_of_statements_is_composed_once(pg_app, raw):
    user_id = add_user(pg_app, "martin.dupont")
    composer = Composer(raw)
    with raw.transaction() as cursor:
        first = login_like(composer, cursor, user_id, gated=False)
        second = login_like(composer, cursor, user_id, gated=False)
    shape = composer.shape(first.statements, gated=False)
    assert composer.shape(second.statements, gated=False) is shape
    assert shape.sql.startswith("WITH w0 AS (INSERT INTO devices")
    assert composer.shape(first.statements, gated=True) is not shape
