"""The peer of issue 13's comparison: Flask-Security-Too's passkey sign-in, as its docs set it up.

Runs in a virtual environment of its own (``bench/peer_fst.py`` makes it), never imported by
authserver: ``gunicorn peer_fst_app:app`` serves it, ``python peer_fst_app.py seed FILE``
writes the users and passkeys of ``FILE`` (JSON, made by the load generator, which holds
their private keys).

The setup is the one Flask-Security-Too documents for a JSON client: its SQLAlchemy models
(``fsqla_v3``), WebAuthn on as a first factor, Flask-WTF's CSRF protection with the
unauthenticated endpoints exempt (``SECURITY_CSRF_IGNORE_UNAUTH_ENDPOINTS``), the session
in Flask's signed cookie. SQLite in WAL mode, as authserver runs it: the peer measured with
SQLite's default rollback journal would only look slower.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from datetime import UTC, datetime

from flask import Flask
from flask_security import Security, SQLAlchemyUserDatastore
from flask_security.models import fsqla_v3 as fsqla
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import event
from sqlalchemy.engine import Engine

DATABASE = os.environ.get("PEER_DATABASE", "/tmp/peer-fst.db")

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ.get("PEER_SECRET_KEY", "peer-secret-key-for-the-benchmark-only"),
    SECURITY_PASSWORD_SALT="peer-salt",
    SQLALCHEMY_DATABASE_URI=f"sqlite:///{DATABASE}",
    SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"timeout": 30}},
    SECURITY_WEBAUTHN=True,
    SECURITY_WAN_ALLOW_AS_FIRST_FACTOR=True,
    SECURITY_CSRF_IGNORE_UNAUTH_ENDPOINTS=True,
    WTF_CSRF_CHECK_DEFAULT=False,
    SECURITY_CSRF_PROTECT_MECHANISMS=["session", "basic"],
)
db = SQLAlchemy(app)
fsqla.FsModels.set_db_info(db)


@event.listens_for(Engine, "connect")
def _wal(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Role(db.Model, fsqla.FsRoleMixin):  # type: ignore[name-defined,misc]
    pass


class User(db.Model, fsqla.FsUserMixin):  # type: ignore[name-defined,misc]
    pass


class WebAuthn(db.Model, fsqla.FsWebAuthnMixin):  # type: ignore[name-defined,misc]
    pass


CSRFProtect(app)
security = Security(app, SQLAlchemyUserDatastore(db, User, Role, WebAuthn))


@app.get("/healthz")
def healthz() -> str:
    return "ok"


def _bytes(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seed(path: str) -> None:
    """The users and passkeys of ``path``: [{username, handle, credential_id, public_key}]."""
    people = json.loads(open(path, encoding="utf-8").read())  # noqa: SIM115
    now = datetime.now(UTC).replace(tzinfo=None)
    with app.app_context():
        db.create_all()
        datastore = security.datastore
        for person in people:
            user = datastore.create_user(
                email=f"{person['username']}@bench.example.fr",
                password=None,
                active=True,
                fs_webauthn_user_handle=person["handle"],
            )
            db.session.flush()
            db.session.add(
                WebAuthn(
                    credential_id=_bytes(person["credential_id"]),
                    public_key=_bytes(person["public_key"]),
                    sign_count=0,
                    transports=["internal", "hybrid"],
                    backup_state=False,
                    device_type="single_device",
                    lastuse_datetime=now,
                    name="bench",
                    usage="first",
                    user_id=user.id,
                )
            )
        db.session.commit()


if __name__ == "__main__":
    if sys.argv[1:2] == ["seed"]:
        seed(sys.argv[2])
    else:
        sys.exit("usage: peer_fst_app.py seed FILE")
