"""``authserver user list|show|unlock|…`` and ``authserver client list|delete|rotate-secret``:
the helpdesk from the command line, with the console's rules, audit rows and e-mails."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from authserver.accounts.validation import email_key, username_key
from authserver.cli import cli
from authserver.db import Database
from authserver.models import (
    AccountAction,
    OAuthClient,
    OAuthConsent,
    OutboxMail,
    User,
    WebAuthnCredential,
    utcnow,
)
from authserver.sessions.oidc.clients import hash_secret


@pytest.fixture
def env(tmp_path, sqlite_template):
    db = tmp_path / "cli.db"
    shutil.copy(sqlite_template, db)
    return {
        "AUTHSERVER_DATABASE_URL": f"sqlite:///{db}",
        "AUTHSERVER_INSTANCE_PATH": str(tmp_path / "instance"),
        "AUTHSERVER_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "AUTHSERVER_MAIL_WORKER": "0",
    }


def run(env, *args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)


def database(env) -> Database:
    return Database(env["AUTHSERVER_DATABASE_URL"])


def add(env, username: str, *, locked: bool = False, role: str = "employer") -> None:
    db = database(env)
    now = utcnow()
    try:
        with db.session_scope() as session:
            user = User(
                username=username,
                username_key=username_key(username),
                email=f"{username}@example.fr",
                email_key=email_key(f"{username}@example.fr"),
                password_hash="$argon2id$placeholder",
                role=role,
                activated_at=now,
                locked_at=now if locked else None,
            )
            session.add(user)
            session.flush()
            session.add(
                WebAuthnCredential(
                    credential_id=b"cred-" + username.encode(),
                    user_id=user.id,
                    public_key=b"key",
                    name="Téléphone",
                )
            )
    finally:
        db.dispose()


def query(env, statement):
    db = database(env)
    try:
        with db.session_scope() as session:
            rows = list(session.scalars(statement))
            session.expunge_all()
            return rows
    finally:
        db.dispose()


def test_list_and_show(env):
    add(env, "anne.active")
    add(env, "louis.verrou", locked=True)
    listed = run(env, "user", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["anne.active", "employer", "actif"]
    assert lines[1].split("\t")[:3] == ["louis.verrou", "employer", "verrouillé"]
    locked = run(env, "user", "list", "--locked", "--json").stdout.splitlines()
    assert [json.loads(line)["username"] for line in locked] == ["louis.verrou"]
    found = run(env, "user", "list", "--search", "ANNE.ACTIVE@example.fr").output
    assert found.startswith("anne.active\t")

    shown = json.loads(run(env, "user", "show", "louis.verrou").stdout)
    assert shown["state"] == "verrouillé" and shown["has_password"] is True
    assert [p["name"] for p in shown["passkeys"]] == ["Téléphone"]
    assert shown["helpdesk"] == []


def test_unlock_is_audited_and_mailed(env):
    add(env, "louis.verrou", locked=True)
    result = run(env, "user", "unlock", "louis.verrou", "--reason", "Ticket 4521")
    assert result.exit_code == 0, result.output
    assert "déverrouillé" in result.output
    (user,) = query(env, select(User))
    assert user.locked_at is None
    (row,) = query(env, select(AccountAction))
    assert row.action == "unlock" and row.reason == "Ticket 4521"
    assert row.actor.startswith("cli:") and row.actor_id is None
    mails = query(env, select(OutboxMail).where(OutboxMail.kind == "helpdesk_unlock"))
    assert [mail.recipient for mail in mails] == ["louis.verrou@example.fr"]
    assert "déverrouillé" in mails[0].body_text
    shown = json.loads(run(env, "user", "show", "louis.verrou").stdout)
    assert shown["helpdesk"][0]["reason"] == "Ticket 4521"
    # Again, on an account no longer locked: only the failure count starts again.
    again = run(env, "user", "unlock", "louis.verrou", "--reason", "x")
    assert again.exit_code == 0 and "compteur d'échecs" in again.output
    assert len(query(env, select(AccountAction))) == 2


def test_errors_are_one_line(env):
    unknown = run(env, "user", "unlock", "personne", "--reason", "x")
    assert unknown.exit_code == 1
    assert unknown.output.strip() == "authserver : aucun compte n'a l'identifiant « personne »"
    missing = run(env, "user", "unlock", "personne")
    assert missing.exit_code == 2 and "--reason" in missing.output
    add(env, "anne.active")
    empty = run(env, "user", "lock", "anne.active", "--reason", " ")
    assert empty.exit_code == 1 and "motif" in empty.output.lower()


def test_remove_passkeys_keeps_a_way_in(env):
    add(env, "anne.active")
    result = run(env, "user", "remove-passkeys", "anne.active", "--reason", "Perdu")
    assert result.exit_code == 0, result.output
    assert query(env, select(WebAuthnCredential)) == []


def test_delete_keeps_the_audit(env):
    add(env, "anne.active")
    refused = run(env, "user", "delete", "anne.active", "--reason", "RGPD", input="n\n")
    assert refused.exit_code == 1
    assert len(query(env, select(User))) == 1
    result = run(env, "user", "delete", "anne.active", "--reason", "Demande RGPD", "--yes")
    assert result.exit_code == 0, result.output
    assert query(env, select(User)) == []
    (row,) = query(env, select(AccountAction))
    assert (row.username, row.action, row.reason) == ("anne.active", "delete", "Demande RGPD")
    (mail,) = query(env, select(OutboxMail).where(OutboxMail.kind == "account_deleted"))
    assert "par l'assistance France Travail" in mail.body_text


def _client(env, *extra: str) -> dict:
    created = run(
        env,
        "client",
        "create",
        "--name",
        "Kit CSP",
        "--redirect-uri",
        "https://csp.example.fr/cb",
        *extra,
    )
    assert created.exit_code == 0, created.output
    # Its answer owns stdout; the security event goes to stderr (ECS, chained).
    assert '"action":"oidc_client_created"' in created.stderr
    return json.loads(created.stdout)


def test_client_list_rotate_and_delete(env):
    confidential = _client(env)
    public = _client(env, "--public")
    listed = [json.loads(line) for line in run(env, "client", "list").stdout.splitlines()]
    assert [c["client_id"] for c in listed] == [confidential["client_id"], public["client_id"]]
    assert all("client_secret" not in c for c in listed)

    rotated = json.loads(run(env, "client", "rotate-secret", confidential["client_id"]).stdout)
    assert rotated["client_secret"] != confidential["client_secret"]
    (row,) = query(
        env, select(OAuthClient).where(OAuthClient.client_id == confidential["client_id"])
    )
    assert row.secret_hash == hash_secret(rotated["client_secret"])
    no_secret = run(env, "client", "rotate-secret", public["client_id"])
    assert no_secret.exit_code == 1 and no_secret.output.startswith("authserver : ")

    add(env, "anne.active")
    (user,) = query(env, select(User))
    db = database(env)
    try:
        with db.session_scope() as session:
            session.add(
                OAuthConsent(user_id=user.id, client_id=confidential["client_id"], scope="openid")
            )
    finally:
        db.dispose()
    deleted = run(env, "client", "delete", confidential["client_id"], "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout)["consents"] == 1
    remaining = query(env, select(OAuthClient.client_id))
    assert remaining == [public["client_id"]]
    assert query(env, select(OAuthConsent)) == []
    unknown = run(env, "client", "delete", "inconnu", "--yes")
    assert unknown.exit_code == 1


def test_client_ids_never_start_with_a_dash(monkeypatch):
    """CI failed once: ``client rotate-secret -Ud9n…`` read the random id as an option (1 id
    in 64 began with ``-``). New ids never do, and an older one is given after ``--``."""
    from authserver.sessions.oidc import clients

    drawn = iter(["-Ud9nYey9GxitEe5Nq2HIu4X", "Ud9nYey9GxitEe5Nq2HIu4X-"])
    monkeypatch.setattr(clients.secrets, "token_urlsafe", lambda _n: next(drawn))
    assert clients.new_client_id() == "Ud9nYey9GxitEe5Nq2HIu4X-"
    monkeypatch.undo()
    assert not any(clients.new_client_id().startswith("-") for _ in range(2000))


def test_an_older_client_id_with_a_leading_dash_is_given_after_double_dash(env):
    confidential = _client(env)
    db = database(env)
    try:
        with db.session_scope() as session:
            row = session.scalars(
                select(OAuthClient).where(OAuthClient.client_id == confidential["client_id"])
            ).one()
            row.client_id = "-" + confidential["client_id"][1:]
        dashed = "-" + confidential["client_id"][1:]
    finally:
        db.dispose()
    rotated = run(env, "client", "rotate-secret", "--", dashed)
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout)["client_id"] == dashed
