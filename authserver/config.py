"""Deployment settings, read once from ``AUTHSERVER_*`` environment variables.

Everything is validated here, at start-up, so that a bad value stops the server
with one line naming the variable instead of failing later inside a request.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
# A checkout (``make run``, an editable install) keeps templates/, static/ and instance/ beside
# the package. An installed wheel carries templates and static inside the package (setup.py)
# and has no project folder: its instance/ is then the working directory's, as the contract's
# relative default database URL already implies.
IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "templates").is_dir()
DEFAULT_INSTANCE = PROJECT_ROOT / "instance" if IN_CHECKOUT else Path("instance").resolve()


def asset_dir(name: str) -> Path:
    """``templates`` or ``static``: the checkout's folder, else the copy inside the wheel."""
    return PROJECT_ROOT / name if IN_CHECKOUT else PACKAGE_DIR / name


class ConfigError(Exception):
    """A setting has a value the server cannot run with; the message names the variable."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


@dataclass(frozen=True)
class MailURL:
    """Where e-mails go: the terminal (``console``) or an SMTP server."""

    kind: str  # "console" or "smtp"
    host: str = ""
    port: int = 0
    username: str | None = None
    password: str | None = None
    use_ssl: bool = False
    use_starttls: bool = False


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5000
    base_url: str = "http://localhost:5000"
    database_url: str = ""
    redis_url: str | None = None
    mail: MailURL = field(default_factory=lambda: MailURL("console"))
    mail_sender: str = "France Travail Pro <no-reply@localhost>"
    secret_key: str = ""
    rp_id: str = "localhost"
    origins: tuple[str, ...] = ("http://localhost:5000",)
    # Authenticator models (AAGUIDs) staff passkeys must be; empty: any (issue 14).
    staff_aaguids: tuple[str, ...] = ()
    # Earlier secret keys (``authserver secret rotate``), still accepted, never used to sign.
    secret_key_fallbacks: tuple[str, ...] = ()
    instance_path: Path = DEFAULT_INSTANCE
    # Lifetimes, in seconds.
    activation_ttl: int = 72 * 3600
    reset_ttl: int = 3600
    session_idle: int = 30 * 60
    session_absolute: int = 12 * 3600
    # Argon2id parameters (OWASP minimum by default).
    argon2_memory_kib: int = 19 * 1024
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    # Request threads of each server worker (``authserver serve --threads``, set there): the
    # database pool of a worker is sized for them (ops.pool_capacity).
    threads: int = 4
    # Mail delivery.
    mail_worker: bool = True
    mail_retry_base: float = 2.0
    mail_retry_max: float = 600.0
    # A wake-up soon after a delivery round waits this long for the rest of its burst.
    mail_gather: float = 0.1
    # ``authserver serve``'s deliverer looks at the queue this often when no commit rang it
    # (mail queued by another instance or by a command rings nothing there).
    mail_poll: float = 1.0
    # Throttling of failed logins (per window of ``throttle_window`` seconds).
    throttle_window: int = 15 * 60
    throttle_account_failures: int = 5
    throttle_ip_failures: int = 50
    cgu_version: str = "2026-11"
    passkey_offer_delay: int = 7 * 24 * 3600
    # Retention (issue 15, RGPD / CNIL: connection logs 6 to 12 months), in days.
    retention_login_events: int = 180
    retention_security_events: int = 365
    retention_ip: int = 90
    retention_mail: int = 30
    # Company directory and identity verification (adapters; embedded ones by default).
    directory: str = "embedded"
    directory_url: str | None = None
    sirene_api_key: str | None = None
    identity_provider: str = "embedded"
    identity_url: str | None = None
    identity_secret: str | None = None
    identity_api_key: str | None = None
    identity_workflow_id: str | None = None
    # « Mon accompagnement »: the agency contact shown in the espace — from the table of
    # agencies by département (None: the one shipped), else these global values.
    agency_phone: str = "01 56 56 11 06"
    agency_email: str = "entreprise@francetravail.example"
    agency_contacts: Path | None = None
    # The services listed in the espace (establishments/portal_services.py); None: the shipped
    # authserver/data/portal_services.json (the CSP kit example at http://localhost:5001).
    services_file: Path | None = None
    # Domain of the session cookie (issue 6: forward-auth for sibling subdomains); None = host-only.
    cookie_domain: str | None = None
    # Reverse proxies in front whose X-Forwarded-For/-Proto are trusted (0: none, direct).
    trusted_proxies: int = 0
    # Security events, one JSON line each (issue 4): "stdout", "off", or a file path.
    security_log: str = "stdout"
    # Host names the server answers to (issue 11: DNS rebinding); the base URL's by default.
    allowed_hosts: tuple[str, ...] = ("localhost",)
    # Bearer token that opens /metrics to a scraper elsewhere (None: this machine only).
    metrics_token: str | None = None
    # Breached-password lookup (accounts/breached.py): "off" or "pwnedpasswords".
    breached_passwords: str = "off"
    breached_passwords_url: str | None = None

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def console_mail(self) -> bool:
        return self.mail.kind == "console"

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def parse_mail_url(value: str) -> MailURL:
    if value == "console":
        return MailURL("console")
    parts = urlsplit(value)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("attendu 'console', 'smtp://hôte:port' ou 'smtps://hôte:port'")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 25)
    except ValueError as exc:
        raise ValueError("port invalide") from exc
    query = parse_qs(parts.query)
    starttls = query.get("starttls", ["0"])[0] in ("1", "true", "yes")
    return MailURL(
        kind="smtp",
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_ssl=parts.scheme == "smtps",
        use_starttls=starttls,
    )


def mask_url(value: str) -> str:
    """The URL as it may be shown or logged: the password of ``user:password@`` hidden."""
    head, at, tail = value.rpartition("@")
    if not at:
        return value
    scheme, slashes, userinfo = head.rpartition("//")
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}{slashes}{user}{':***' if colon else ''}@{tail}"


def is_loopback_host(host: str) -> bool:
    """localhost (and its subdomains) or a loopback address (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen_host(raw: str | None) -> str:
    """AUTHSERVER_HOST: an IP address or a host name to bind (no port, no scheme)."""
    host = (raw or "127.0.0.1").strip()
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host.strip("[]")
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if (
        not host
        or len(host) > 253
        or any(
            not label
            or len(label) > 63
            or label.startswith("-")
            or label.endswith("-")
            or not all(c.isascii() and (c.isalnum() or c == "-") for c in label)
            for label in labels
        )
    ):
        raise ConfigError(
            "AUTHSERVER_HOST", f"adresse IP ou nom d'hôte attendu (sans port), reçu {raw!r}"
        )
    return host


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _staff_aaguids(raw: str | None) -> tuple[str, ...]:
    """AUTHSERVER_STAFF_AAGUIDS: UUIDs, each known to the shipped FIDO metadata table (a
    typo would otherwise lock every staff member out of enrolling)."""
    if not raw or not raw.strip():
        return ()
    from uuid import UUID

    from authserver.webauthn.providers import provider_name

    found: list[str] = []
    for item in raw.split(","):
        text = item.strip()
        if not text:
            continue
        try:
            aaguid = str(UUID(text))
        except ValueError:
            raise ConfigError("AUTHSERVER_STAFF_AAGUIDS", f"AAGUID invalide : {text!r}") from None
        if provider_name(aaguid) is None:
            raise ConfigError(
                "AUTHSERVER_STAFF_AAGUIDS",
                f"AAGUID inconnu des métadonnées FIDO : {aaguid}",
            )
        found.append(aaguid)
    return tuple(dict.fromkeys(found))


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"nombre entier attendu, reçu {raw!r}") from None
    if value < minimum:
        raise ConfigError(name, f"doit être au moins {minimum}, reçu {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"nombre attendu, reçu {raw!r}") from None
    if value < 0:
        raise ConfigError(name, "doit être positif")
    return value


def _http_url(name: str, value: str) -> str:
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(name, f"URL http(s) attendue, reçu {mask_url(value)!r}")
    return value.rstrip("/")


FALLBACKS_FILE = "secret_key_fallbacks"


def _secret_key_fallbacks(env: Mapping[str, str], instance_path: Path) -> tuple[str, ...]:
    """AUTHSERVER_SECRET_KEY_FALLBACKS (comma-separated), or, with the key kept in
    ``instance/secret_key``, the file beside it that ``authserver secret rotate`` writes."""
    raw = env.get("AUTHSERVER_SECRET_KEY_FALLBACKS")
    if raw is None and not env.get("AUTHSERVER_SECRET_KEY"):
        path = instance_path / FALLBACKS_FILE
        try:
            raw = path.read_text() if path.exists() else None
        except OSError as exc:
            raise ConfigError(
                "AUTHSERVER_SECRET_KEY_FALLBACKS", f"{path} illisible ({exc.strerror})"
            ) from None
        raw = ",".join(raw.split()) if raw else None
    keys = tuple(item.strip() for item in (raw or "").split(",") if item.strip())
    if any(len(key) < 16 for key in keys):
        raise ConfigError("AUTHSERVER_SECRET_KEY_FALLBACKS", "au moins 16 caractères par clé")
    return keys


def _secret_key(env: Mapping[str, str], instance_path: Path) -> str:
    value = env.get("AUTHSERVER_SECRET_KEY")
    if value:
        if len(value) < 16:
            raise ConfigError("AUTHSERVER_SECRET_KEY", "au moins 16 caractères")
        return value
    path = instance_path / "secret_key"
    try:
        if path.exists():
            return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            "AUTHSERVER_SECRET_KEY", f"non définie et {path} illisible ({exc.strerror})"
        ) from None
    try:
        instance_path.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key
    except FileExistsError:
        return path.read_text().strip()
    except OSError as exc:
        # The folder cannot be created or written: that is the instance path's problem.
        raise ConfigError(
            "AUTHSERVER_INSTANCE_PATH",
            f"impossible d'y écrire la clé secrète {path} ({exc.strerror})",
        ) from None


def _cookie_domain(raw: str | None, base_url: str) -> str | None:
    """AUTHSERVER_COOKIE_DOMAIN: a parent domain of the base URL's host (issue 6)."""
    if not raw:
        return None
    domain = raw.strip().lstrip(".").lower()
    labels = domain.split(".")
    if not domain or any(
        not label or len(label) > 63 or not all(c.isalnum() or c == "-" for c in label)
        for label in labels
    ):
        raise ConfigError("AUTHSERVER_COOKIE_DOMAIN", f"nom de domaine attendu, reçu {raw!r}")
    host = (urlsplit(base_url).hostname or "").lower()
    if host != domain and not host.endswith("." + domain):
        raise ConfigError(
            "AUTHSERVER_COOKIE_DOMAIN",
            f"doit contenir l'hôte de AUTHSERVER_BASE_URL ({host}), reçu {raw!r}",
        )
    return domain


def _security_log(raw: str | None) -> str:
    """AUTHSERVER_SECURITY_LOG: ``stdout`` (default), ``off``, ``syslog+udp://host:port``,
    ``syslog+tcp://host:port`` (RFC 5424), or a file the server can append."""
    target = (raw or "").strip() or "stdout"
    if target in ("stdout", "off"):
        return target
    if target.startswith("syslog+"):
        from authserver.alerts.syslog import parse

        try:
            if parse(target) is None:
                raise ValueError("syslog+udp://hôte:port ou syslog+tcp://hôte:port attendu")
        except ValueError as exc:
            raise ConfigError("AUTHSERVER_SECURITY_LOG", str(exc)) from None
        return target
    try:
        with open(target, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ConfigError(
            "AUTHSERVER_SECURITY_LOG",
            f"« stdout », « off » ou un fichier accessible en écriture attendu ; "
            f"{target!r} : {exc.strerror or exc}",
        ) from None
    return target


def _allowed_hosts(raw: str | None, base_url: str) -> tuple[str, ...]:
    """AUTHSERVER_ALLOWED_HOSTS: host names (no scheme, no port); ``.example.fr`` for subdomains.

    The base URL's host is always allowed: links in e-mails point there.
    """
    base_host = (urlsplit(base_url).hostname or "").lower()
    hosts = [base_host]
    for item in (raw or "").split(","):
        name = item.strip().lower().rstrip(".")
        if not name:
            continue
        bare = name[1:] if name.startswith(".") else name
        try:
            _listen_host(bare)
        except ConfigError:
            raise ConfigError(
                "AUTHSERVER_ALLOWED_HOSTS",
                f"noms d'hôte séparés par des virgules attendus (sans port), reçu {item.strip()!r}",
            ) from None
        if name not in hosts:
            hosts.append(name)
    return tuple(hosts)


def _breached(env: Mapping[str, str]) -> dict[str, Any]:
    """AUTHSERVER_BREACHED_PASSWORDS (``off`` or ``pwnedpasswords``) and its URL."""
    kind = env.get("AUTHSERVER_BREACHED_PASSWORDS") or "off"
    if kind not in ("off", "pwnedpasswords"):
        raise ConfigError(
            "AUTHSERVER_BREACHED_PASSWORDS", "valeurs possibles : off, pwnedpasswords"
        )
    url = env.get("AUTHSERVER_BREACHED_PASSWORDS_URL") or None
    if url:
        url = _http_url("AUTHSERVER_BREACHED_PASSWORDS_URL", url)
    return {"breached_passwords": kind, "breached_passwords_url": url}


def _metrics_token(raw: str | None) -> str | None:
    if not raw:
        return None
    if len(raw) < 16 or not raw.isascii() or not raw.isprintable() or " " in raw:
        raise ConfigError(
            "AUTHSERVER_METRICS_TOKEN", "au moins 16 caractères ASCII imprimables, sans espace"
        )
    return raw


def _local_only(variable: str, what: str, base_url: str, instead: str) -> None:
    """Refuse a development-only value unless the server is this machine's own (issue 11).

    Development adapters print links or approve anyone; a server that others reach (https,
    or a host that is not loopback) must name its real counterpart.
    """
    host = urlsplit(base_url).hostname or ""
    if base_url.startswith("https://") or not is_loopback_host(host):
        raise ConfigError(
            variable,
            f"{what} est réservé au développement local (AUTHSERVER_BASE_URL en "
            f"http://localhost) ; pour {base_url}, {instead}",
        )


IDENTITY_PROVIDERS = ("embedded", "hosted", "onfido")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _identity(env: Mapping[str, str]) -> dict[str, Any]:
    """AUTHSERVER_IDENTITY_*: the online identity verification provider and its credentials."""
    provider = env.get("AUTHSERVER_IDENTITY_PROVIDER") or "embedded"
    if provider not in IDENTITY_PROVIDERS:
        raise ConfigError(
            "AUTHSERVER_IDENTITY_PROVIDER", "valeurs possibles : " + ", ".join(IDENTITY_PROVIDERS)
        )
    url = env.get("AUTHSERVER_IDENTITY_URL") or None
    secret = env.get("AUTHSERVER_IDENTITY_SECRET") or None
    api_key = env.get("AUTHSERVER_IDENTITY_API_KEY") or None
    workflow_id = env.get("AUTHSERVER_IDENTITY_WORKFLOW_ID") or None
    if provider == "hosted" and not url:
        raise ConfigError("AUTHSERVER_IDENTITY_URL", "obligatoire avec le fournisseur hosted")
    if url:
        url = _http_url("AUTHSERVER_IDENTITY_URL", url)
    if provider in ("hosted", "onfido") and (not secret or len(secret) < 16):
        what = "le jeton du webhook Onfido" if provider == "onfido" else "le secret partagé"
        raise ConfigError("AUTHSERVER_IDENTITY_SECRET", f"{what}, au moins 16 caractères")
    if provider == "onfido":
        if not api_key:
            raise ConfigError(
                "AUTHSERVER_IDENTITY_API_KEY", "le jeton d'API Onfido est obligatoire"
            )
        if not workflow_id or not _UUID.fullmatch(workflow_id):
            raise ConfigError(
                "AUTHSERVER_IDENTITY_WORKFLOW_ID",
                "l'identifiant (UUID) du workflow Onfido Studio est obligatoire",
            )
    return {
        "identity_provider": provider,
        "identity_url": url,
        "identity_secret": secret,
        "identity_api_key": api_key,
        "identity_workflow_id": workflow_id,
    }


def _services_file(raw: str | None) -> Path | None:
    """AUTHSERVER_SERVICES: the espace's services file, read and checked here, at start-up."""
    from authserver.establishments.portal_services import ServicesFileError, load_catalog

    path = Path(raw) if raw else None
    try:
        load_catalog(path)
    except ServicesFileError as exc:
        raise ConfigError("AUTHSERVER_SERVICES", str(exc)) from None
    return path


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment; raise ConfigError on the first bad value."""
    env = os.environ if env is None else env
    instance_path = Path(env.get("AUTHSERVER_INSTANCE_PATH") or DEFAULT_INSTANCE)
    host = _listen_host(env.get("AUTHSERVER_HOST"))
    port = _int(env, "AUTHSERVER_PORT", 5000, minimum=1)
    if port > 65535:
        raise ConfigError("AUTHSERVER_PORT", f"port entre 1 et 65535, reçu {port}")

    base_url = _http_url(
        "AUTHSERVER_BASE_URL", env.get("AUTHSERVER_BASE_URL") or f"http://localhost:{port}"
    )

    database_url = (
        env.get("AUTHSERVER_DATABASE_URL") or f"sqlite:///{instance_path / 'authserver.db'}"
    )
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed_db = make_url(database_url)
    except (ArgumentError, ValueError):
        raise ConfigError(
            "AUTHSERVER_DATABASE_URL", f"URL SQLAlchemy invalide : {mask_url(database_url)!r}"
        ) from None
    if parsed_db.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            "AUTHSERVER_DATABASE_URL",
            "seuls sqlite:/// et postgresql+psycopg:// sont pris en charge",
        )

    redis_url = env.get("AUTHSERVER_REDIS_URL") or None
    if redis_url is not None:
        parts = urlsplit(redis_url)
        if parts.scheme not in ("redis", "rediss", "unix") or (
            parts.scheme != "unix" and not parts.hostname
        ):
            raise ConfigError(
                "AUTHSERVER_REDIS_URL", f"URL redis:// attendue, reçu {mask_url(redis_url)!r}"
            )

    try:
        mail = parse_mail_url(env.get("AUTHSERVER_MAIL_URL") or "console")
    except ValueError as exc:
        raise ConfigError("AUTHSERVER_MAIL_URL", str(exc)) from None
    if mail.kind == "console":
        # Console mail prints every activation and reset link, and the dev mailbox shows them:
        # development on this machine only, never a server that others reach.
        _local_only(
            "AUTHSERVER_MAIL_URL",
            "« console »",
            base_url,
            "configurez smtp://hôte:port ou smtps://…",
        )

    mail_sender = env.get("AUTHSERVER_MAIL_SENDER") or "France Travail Pro <no-reply@localhost>"
    if "@" not in mail_sender:
        raise ConfigError("AUTHSERVER_MAIL_SENDER", "adresse e-mail attendue")

    rp_id = env.get("AUTHSERVER_RP_ID") or (urlsplit(base_url).hostname or "localhost")
    origins_raw = env.get("AUTHSERVER_ORIGINS")
    if origins_raw:
        origins = tuple(
            _origin(_http_url("AUTHSERVER_ORIGINS", item.strip()))
            for item in origins_raw.split(",")
            if item.strip()
        )
        if not origins:
            raise ConfigError("AUTHSERVER_ORIGINS", "au moins une origine attendue")
    else:
        origins = (_origin(base_url),)

    directory = env.get("AUTHSERVER_DIRECTORY") or "embedded"
    if directory not in ("embedded", "recherche-entreprises", "sirene"):
        raise ConfigError(
            "AUTHSERVER_DIRECTORY", "valeurs possibles : embedded, recherche-entreprises, sirene"
        )
    sirene_api_key = env.get("AUTHSERVER_SIRENE_API_KEY") or None
    if directory == "sirene" and not sirene_api_key:
        raise ConfigError(
            "AUTHSERVER_SIRENE_API_KEY", "obligatoire avec AUTHSERVER_DIRECTORY=sirene"
        )
    directory_url = env.get("AUTHSERVER_DIRECTORY_URL") or None
    if directory_url:
        directory_url = _http_url("AUTHSERVER_DIRECTORY_URL", directory_url)
    identity = _identity(env)
    agency_contacts_raw = env.get("AUTHSERVER_AGENCY_CONTACTS") or None
    agency_contacts = Path(agency_contacts_raw) if agency_contacts_raw else None
    if agency_contacts is not None and not agency_contacts.is_file():
        raise ConfigError(
            "AUTHSERVER_AGENCY_CONTACTS", f"fichier JSON introuvable : {agency_contacts_raw}"
        )
    if agency_contacts is not None:
        # Its content too, here: under `authserver serve` the app is built in each worker,
        # where a bad file was a traceback per worker instead of one line.
        from authserver.establishments.agencies import AgencyContact, load_agency_table

        try:
            load_agency_table(agency_contacts, AgencyContact("", "", ""))
        except ValueError as exc:
            raise ConfigError("AUTHSERVER_AGENCY_CONTACTS", str(exc)) from None

    cookie_domain = _cookie_domain(env.get("AUTHSERVER_COOKIE_DOMAIN"), base_url)
    if identity["identity_provider"] == "embedded":
        # Its development page has « Approuver »: anyone could certify themselves. Checked
        # last, so that a malformed value elsewhere is named first.
        _local_only(
            "AUTHSERVER_IDENTITY_PROVIDER",
            "« embedded » (page de développement « Approuver »)",
            base_url,
            "configurez onfido (ou hosted) et ses variables AUTHSERVER_IDENTITY_*",
        )

    return Settings(
        cookie_domain=cookie_domain,
        trusted_proxies=_int(env, "AUTHSERVER_TRUSTED_PROXIES", 0),
        security_log=_security_log(env.get("AUTHSERVER_SECURITY_LOG")),
        allowed_hosts=_allowed_hosts(env.get("AUTHSERVER_ALLOWED_HOSTS"), base_url),
        metrics_token=_metrics_token(env.get("AUTHSERVER_METRICS_TOKEN")),
        **_breached(env),
        directory=directory,
        directory_url=directory_url,
        sirene_api_key=sirene_api_key,
        **identity,
        agency_phone=env.get("AUTHSERVER_AGENCY_PHONE") or Settings.agency_phone,
        agency_email=env.get("AUTHSERVER_AGENCY_EMAIL") or Settings.agency_email,
        agency_contacts=agency_contacts,
        services_file=_services_file(env.get("AUTHSERVER_SERVICES")),
        host=host,
        port=port,
        base_url=base_url,
        database_url=database_url,
        redis_url=redis_url,
        mail=mail,
        mail_sender=mail_sender,
        secret_key=_secret_key(env, instance_path),
        secret_key_fallbacks=_secret_key_fallbacks(env, instance_path),
        rp_id=rp_id,
        origins=origins,
        staff_aaguids=_staff_aaguids(env.get("AUTHSERVER_STAFF_AAGUIDS")),
        instance_path=instance_path,
        activation_ttl=_int(env, "AUTHSERVER_ACTIVATION_TTL_HOURS", 72, minimum=1) * 3600,
        session_idle=_int(env, "AUTHSERVER_SESSION_IDLE_MINUTES", 30, minimum=1) * 60,
        session_absolute=_int(env, "AUTHSERVER_SESSION_MAX_HOURS", 12, minimum=1) * 3600,
        mail_worker=(env.get("AUTHSERVER_MAIL_WORKER") or "1") not in ("0", "false", "no"),
        mail_retry_base=_float(env, "AUTHSERVER_MAIL_RETRY_BASE", 2.0),
        mail_retry_max=_float(env, "AUTHSERVER_MAIL_RETRY_MAX", 600.0),
        mail_gather=min(_float(env, "AUTHSERVER_MAIL_GATHER_SECONDS", 0.1), 5.0),
        mail_poll=min(max(_float(env, "AUTHSERVER_MAIL_POLL_SECONDS", 1.0), 0.1), 30.0),
        passkey_offer_delay=_int(env, "AUTHSERVER_PASSKEY_OFFER_DELAY_DAYS", 7) * 24 * 3600,
        retention_login_events=_int(env, "AUTHSERVER_RETENTION_LOGIN_EVENTS_DAYS", 180, minimum=1),
        retention_security_events=_int(
            env, "AUTHSERVER_RETENTION_SECURITY_EVENTS_DAYS", 365, minimum=1
        ),
        retention_ip=_int(env, "AUTHSERVER_RETENTION_IP_DAYS", 90, minimum=1),
        retention_mail=_int(env, "AUTHSERVER_RETENTION_MAIL_DAYS", 30, minimum=1),
    )
