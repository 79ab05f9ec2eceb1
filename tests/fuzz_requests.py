"""Hostile HTTP requests for every URL rule, from a seeded generator (tests/test_fuzz.py).

Each request is built as the raw WSGI environ a server such as gunicorn hands the app:
``PATH_INFO`` percent-decoded with each byte one latin-1 character (so paths can carry
bytes that are not UTF-8), ``QUERY_STRING`` as sent, headers as latin-1 text, repeated
headers joined with a comma. Nothing here talks to the app: ``FuzzRequest.environ()`` is
run by the test through the whole WSGI stack.

The generator mixes plausible input (real field names, real ids, a valid CSRF token now and
then) with malformed input, so that requests get past the first checks into the views.
"""

from __future__ import annotations

import base64
import io
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_from_bytes

from tests.softauthn import cbor_encode

COOKIE_NAMES = (
    "authserver_session",
    "authserver_device",
    "authserver_flask",
    "authserver_ceremony",
)
GOOD_HOSTS = ("localhost", "localhost:5000")
BAD_HOSTS = (
    "evil.example",
    "evil.example:5000",
    "",
    " ",
    "localhost:",
    ":5000",
    "[::1]",
    "[::1",
    "127.0.0.1:5000",
    "LOCALHOST",
    "localhost.",
    "localhost..",
    "localhost:99999999999",
    "localhost:abc",
    "localhost\x00",
    "local host",
    "localhost, evil.example",
    "xn--80ak6aa92e.com",
    "\xe9vil.fr",
    "a" * 300,
    "user@localhost",
)
PEERS = ("127.0.0.1", "127.0.0.1", "127.0.0.1", "::1", "192.0.2.7", "2001:db8::1", "10.0.0.1")
EXTRA_METHODS = ("GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "TRACE", "PROPFIND")

# Text values that break naive code: empty, huge, NUL and other controls, lone surrogates,
# non-Latin scripts, markup, numbers out of range, URLs for open redirects, header injection.
NASTY_TEXT: tuple[str, ...] = (
    "",
    " ",
    "a",
    "0",
    "-1",
    "1",
    "2",
    "9" * 30,
    "1e400",
    "NaN",
    "true",
    "null",
    "[]",
    "{}",
    "\x00",
    "a\x00b",
    "\x1b[2J",
    "\x7f\x80\x9f",
    "\ud800",
    "a\udfffb",
    "\ufeff",
    "\uffff",
    "\u202eevil",
    "\u200b",
    "é",
    "日本語",
    "😀",
    "ℌ𝔢𝔩𝔩𝔬",
    "../../etc/passwd",
    "..",
    ".",
    "/",
    "%00",
    "%ff",
    "%2e%2e%2f",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "{{7*7}}",
    "%s%s%n",
    "http://evil.example/",
    "//evil.example",
    "/\\evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "/espace",
    "/account?x=1#y",
    "\r\nSet-Cookie: x=y",
    "x" * 300,
    "y" * 5000,
    "martin.dupont",
    "martin.dupont@entreprise.fr",
    "73282932000074",
    "00000000000000",
    "abc.def.ghi",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
)
NASTY_BYTES: tuple[bytes, ...] = (
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe9t\xe9",
    b"\x00",
    b"%",
    b"%zz",
    b"\xef\xbb\xbf",
)

# Per URL prefix, the field names its views read (forms, JSON keys, query parameters); the
# generator uses them often so that requests reach the views' own checks.
FIELD_HINTS: dict[str, tuple[str, ...]] = {
    "/login": ("username", "password", "next", "method"),
    "/signup": (
        "username",
        "password",
        "password_confirm",
        "civility",
        "last_name",
        "first_name",
        "email",
        "phone",
        "cgu",
    ),
    "/password/forgot": ("username", "email"),
    "/password/reset/": ("password", "password_confirm"),
    "/activate/": ("username", "email"),
    "/account/email": ("email", "password"),
    "/account/delete": ("password", "confirm"),
    "/account/reauth": ("password", "next", "method"),
    "/account/passkeys/": ("name",),
    "/account": ("civility", "last_name", "first_name", "phone", "email"),
    "/establishment/collaborators/": ("reason", "note"),
    "/establishment": ("siret", "confirm"),
    "/certification/webhook": ("object", "payload", "action", "resource_type", "resource"),
    "/certification": ("method", "result", "reference", "sig", "ts", "outcome"),
    "/counselor": ("reason", "note", "siret"),
    "/security": ("note", "reason", "outcome", "limit", "cursor", "before"),
    "/api/security": ("outcome", "limit", "cursor", "before"),
    "/alerts/not-me/": ("confirm", "note"),
    "/dev/identity/": ("outcome",),
    "/oauth/authorize": (
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "prompt",
        "max_age",
        "login_hint",
        "response_mode",
        "decision",
        "confirm",
    ),
    "/oauth/token": (
        "grant_type",
        "code",
        "redirect_uri",
        "client_id",
        "client_secret",
        "code_verifier",
        "refresh_token",
        "scope",
    ),
    "/oauth/introspect": ("token", "token_type_hint", "client_id", "client_secret"),
    "/oauth/revoke": ("token", "token_type_hint", "client_id", "client_secret"),
    "/oauth/logout": ("id_token_hint", "post_logout_redirect_uri", "state", "client_id"),
    "/oauth/userinfo": ("access_token",),
    "/webauthn/login/": ("username", "mediation", "credential", "next"),
    "/webauthn/register/": ("name", "credential"),
    "/passkeys/offer": ("next",),
}
ALL_FIELDS = tuple(sorted({name for names in FIELD_HINTS.values() for name in names}))
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "application/vnd.api+json",
    "application/jsonx",
    FORM_CONTENT_TYPE,
    FORM_CONTENT_TYPE + "; charset=utf-16",
    FORM_CONTENT_TYPE + "; charset=bogus",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    'multipart/form-data; boundary="unterminated',
    "multipart/form-data; boundary=" + "b" * 200,
    "text/plain",
    "text/html",
    "application/xml",
    "application/octet-stream",
    "*/*",
    "",
    "garbage",
    "application/json\x00",
    "application/json; charset=\xe9",
)


# A request's parameters in order, a name possibly repeated (query, form or JSON members).
Fields = list[tuple[str, str]]


@dataclass
class Browser:
    """Who sends a request: its cookies (name → value) and the CSRF token they make valid."""

    name: str
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str | None = None


@dataclass
class Known:
    """Real values of the database under test, so that some requests name real things."""

    values: dict[str, list[str]] = field(default_factory=dict)
    segments: dict[str, list[str]] = field(default_factory=dict)
    templates: dict[str, list[Fields]] = field(default_factory=dict)  # by rule: valid sets
    bearer: list[str] = field(default_factory=list)
    basic: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, *values: str) -> None:
        self.values.setdefault(name, []).extend(values)


@dataclass(frozen=True)
class Rule:
    """A URL rule as ``app.url_map`` states it: its parts and converters, its methods."""

    rule: str
    methods: tuple[str, ...]
    parts: tuple[tuple[str, str], ...]  # ("text", "/account/") or (converter, argument)

    @classmethod
    def of(cls, rule: Any) -> Rule:
        parts: list[tuple[str, str]] = []
        for piece in re.split(r"(<[^>]+>)", rule.rule):
            if piece.startswith("<"):
                argument = piece[1:-1].split(":")[-1]
                converter = type(rule._converters[argument]).__name__
                parts.append((converter, argument))
            elif piece:
                parts.append(("text", piece))
        methods = tuple(sorted((rule.methods or set()) - {"OPTIONS"}))
        return cls(rule.rule, methods, tuple(parts))

    def prefix(self) -> str:
        return "".join(text for kind, text in self.parts if kind == "text")


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: bytes  # percent-decoded, as PATH_INFO carries it
    query: bytes  # QUERY_STRING as sent
    headers: tuple[tuple[str, str], ...]  # latin-1 text; a name may repeat
    body: bytes
    peer: str
    rule: str  # the rule it was made for (a failure report names it)
    browser: str

    def environ(self) -> dict[str, Any]:
        """The WSGI environ gunicorn would build for this request."""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": self.path.decode("latin-1"),
            "QUERY_STRING": self.query.decode("latin-1"),
            "RAW_URI": quote_from_bytes(self.path, safe="/")
            + ("?" + self.query.decode("latin-1") if self.query else ""),
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "5000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": self.peer,
            "REMOTE_PORT": "40000",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(self.body),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in self.headers:
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def describe(self) -> str:
        """Everything needed to replay the request, bodies shortened past 3,000 bytes."""
        body = (
            repr(self.body)
            if len(self.body) <= 3000
            else f"{self.body[:3000]!r}… ({len(self.body)} bytes)"
        )
        headers = "\n".join(f"    {name}: {value[:500]!r}" for name, value in self.headers)
        return (
            f"{self.method} {self.path!r} query={self.query[:2000]!r}\n"
            f"  rule {self.rule}, browser {self.browser}, peer {self.peer}\n"
            f"  headers:\n{headers}\n  body: {body}"
        )


class RequestFactory:
    """Seeded: the same seed, rules, browsers and known values give the same requests."""

    def __init__(
        self,
        rng: random.Random,
        rules: Sequence[Rule],
        browsers: Sequence[Browser],
        known: Known,
    ) -> None:
        self.rng = rng
        self.rules = list(rules)
        self.browsers = list(browsers)
        self.known = known

    # ------------------------------------------------------------------ the request

    def request(self) -> FuzzRequest:
        rng = self.rng
        browser = rng.choice(self.browsers)
        rule = rng.choice(self.rules)
        method = rng.choice(rule.methods if rng.random() < 0.8 else EXTRA_METHODS)
        path = self.path(rule)
        fields = self.fields_for(rule)
        if method in ("GET", "HEAD"):
            query = self.query(fields) if fields or rng.random() < 0.3 else b""
        else:
            query = self.query(self.random_fields(rule)) if rng.random() < 0.3 else b""
        body, content_type = self.body(method, rule, fields, browser)
        headers = self.headers(browser, content_type, body, rule)
        peer = rng.choice(PEERS)
        return FuzzRequest(method, path, query, headers, body, peer, rule.rule, browser.name)

    # ------------------------------------------------------------------ values

    def text(self, name: str | None = None) -> str:
        rng = self.rng
        known = self.known.values.get(name or "")
        if known and rng.random() < 0.6:
            value = rng.choice(known)
            if rng.random() < 0.2:  # a real value, slightly broken
                value = rng.choice(
                    [value + rng.choice(NASTY_TEXT), value[:-1], value.upper(), " " + value]
                )
            return value
        roll = rng.random()
        if roll < 0.7:
            return rng.choice(NASTY_TEXT)
        if roll < 0.85:
            return "".join(rng.choice(NASTY_TEXT) for _ in range(rng.randint(2, 4)))
        return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(1, 12)))

    def encoded(self, text: str) -> bytes:
        """Usually UTF-8; sometimes bytes that are not (surrogates, latin-1, stray bytes)."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.8:
            return text.encode("utf-8", "surrogatepass")
        if roll < 0.9:
            return text.encode("latin-1", "replace")
        return text.encode("utf-8", "surrogatepass") + rng.choice(NASTY_BYTES)

    def fields_for(self, rule: Rule) -> Fields:
        """The request's parameters: often a valid set for the rule with one or two values
        broken (so that requests reach the checks past the first), else random ones."""
        rng = self.rng
        templates = self.known.templates.get(rule.rule)
        if not templates or rng.random() < 0.4:
            return self.random_fields(rule)
        fields = list(rng.choice(templates))
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            if not fields:
                break
            index = rng.randrange(len(fields))
            name = fields[index][0]
            roll = rng.random()
            if roll < 0.6:
                fields[index] = (name, self.text(name))
            elif roll < 0.8:
                del fields[index]
            else:
                fields.append((name, self.text(name)))  # the parameter twice
        if rng.random() < 0.2:
            fields.append((rng.choice(ALL_FIELDS), self.text()))
        return fields

    def random_fields(self, rule: Rule) -> Fields:
        rng = self.rng
        prefix = rule.prefix()
        hints: tuple[str, ...] = ()
        for start, names in FIELD_HINTS.items():
            if prefix.startswith(start):
                hints = names
                break
        chosen = [name for name in hints if rng.random() < 0.7]
        chosen += rng.sample(ALL_FIELDS, rng.randint(0, 3))
        if rng.random() < 0.1:
            chosen.append(self.text())  # a made-up name
        if chosen and rng.random() < 0.15:
            chosen.append(rng.choice(chosen))  # a field twice
        return [(name, self.text(name)) for name in chosen]

    # ------------------------------------------------------------------ the URL

    def path(self, rule: Rule) -> bytes:
        rng = self.rng
        if rng.random() < 0.04:
            return self.garbage_path()
        path = b"".join(
            text.encode() if kind == "text" else self.segment(kind, text)
            for kind, text in rule.parts
        )
        roll = rng.random()
        if roll < 0.03:
            path += b"/"
        elif roll < 0.05:
            path = path.replace(b"/", b"//", 1)
        elif roll < 0.06:
            path = path.upper()
        elif roll < 0.07:
            path += rng.choice([b"/.", b"/..", b"%2e", b"\x00", b";jsessionid=1", b"\xff"])
        return path

    def garbage_path(self) -> bytes:
        rng = self.rng
        return rng.choice(
            [
                b"",
                b"/",
                b"//",
                b"/../../../etc/passwd",
                b"/static/../pyproject.toml",
                b"/static/%2e%2e/pyproject.toml",
                b"/\x00",
                b"/\xff\xfe",
                b"/" + b"a" * 5000,
                b"/%",
                b"/.well-known/",
                b"/webauthn/",
                b"/api/",
                b"/auth/",
                b"/oauth/",
                b"*",
                b"http://evil.example/",
                b"/" + self.encoded(self.text()),
            ]
        )

    def segment(self, converter: str, argument: str) -> bytes:
        rng = self.rng
        known = self.known.segments.get(argument)
        if known and rng.random() < 0.4:
            return self.encoded(rng.choice(known))
        if converter == "DatabaseIntConverter" or converter == "IntegerConverter":
            return rng.choice(
                [
                    b"1",
                    b"2",
                    b"3",
                    b"4",
                    b"0",
                    b"00001",
                    str(2**63 - 1).encode(),
                    str(2**63).encode(),
                    b"9" * rng.choice([20, 40, 5000]),
                    b"-1",
                    b"1.5",
                    b"1e3",
                    "\u0661".encode(),
                    "\uff11".encode(),
                    b"0x10",
                    b" 1",
                ]
            )
        if converter == "PathConverter":
            return rng.choice(
                [
                    b"css/app.css",
                    b"js/login.js",
                    b"../pyproject.toml",
                    b"..%2fpyproject.toml",
                    b"css/../../pyproject.toml",
                    b"css//app.css",
                    b"css/app.css\x00",
                    b"/etc/passwd",
                    b"vendor",
                    b"\xff",
                    b"a" * 3000,
                ]
            )
        return self.encoded(self.text()).replace(b"/", b"%2F")

    def query(self, fields: Fields) -> bytes:
        rng = self.rng
        if rng.random() < 0.08:
            return rng.choice(
                [b"&&&", b"=", b"a=%", b"a=%zz", b"a=%ff%fe", b"%00=%00", b"a" * 9000, b"a=b&a=c&a"]
            )
        pairs = [self.pair(name, value) for name, value in fields]
        if rng.random() < 0.1:
            pairs.append(b"flag")
        return b"&".join(pairs)

    def pair(self, name: str, value: str) -> bytes:
        """``name=value`` urlencoded, now and then with raw or non-UTF-8 bytes."""
        return (
            self.quoted(name.encode("utf-8", "surrogatepass"))
            + b"="
            + self.quoted(self.encoded(value))
        )

    def quoted(self, raw: bytes) -> bytes:
        rng = self.rng
        if rng.random() < 0.9:
            return quote_from_bytes(raw, safe="").encode()
        return raw.replace(b"&", b"").replace(b"#", b"")  # raw bytes in the query

    # ------------------------------------------------------------------ the body

    def body(
        self, method: str, rule: Rule, fields: Fields, browser: Browser
    ) -> tuple[bytes, str | None]:
        rng = self.rng
        if method in ("GET", "HEAD") and rng.random() < 0.85:
            return b"", None
        if method in ("GET", "HEAD"):
            fields = self.random_fields(rule)
        json_path = rule.rule.startswith(("/webauthn/", "/api/", "/certification/webhook"))
        roll = rng.random()
        if roll < (0.6 if json_path else 0.12):
            body, content_type = self.json_body(rule, fields), "application/json"
        elif roll < 0.8:
            body, content_type = self.form_body(fields, browser), FORM_CONTENT_TYPE
        elif roll < 0.9:
            body, content_type = self.multipart_body(fields, browser)
        else:
            body = rng.choice(
                [b"", b"\x00" * 10, b"\xff\xfe\xfd", bytes(rng.randrange(256) for _ in range(64))]
            )
            content_type = rng.choice(CONTENT_TYPES)
        if rng.random() < 0.12:
            content_type = rng.choice(CONTENT_TYPES)  # the wrong type for the body
        if rng.random() < 0.03:
            body = b"x" * rng.choice([200 * 1024, 300 * 1024])  # under and over the limit
        return body, content_type

    def form_body(self, fields: Fields, browser: Browser) -> bytes:
        rng = self.rng
        pairs = [self.pair(name, value) for name, value in fields]
        token = self.csrf_value(browser)
        if token is not None:
            pairs.insert(rng.randrange(len(pairs) + 1), b"csrf_token=" + quote(token).encode())
        if rng.random() < 0.05:
            pairs.append(rng.choice([b"%", b"=&=", b"a=%ff", b"\xff=\xfe", b"a=" + b"b" * 100_000]))
        return b"&".join(pairs)

    def multipart_body(self, fields: Fields, browser: Browser) -> tuple[bytes, str]:
        rng = self.rng
        boundary = "fuzzboundary"
        parts = []
        items = [(name, self.encoded(value)) for name, value in fields]
        token = self.csrf_value(browser)
        if token is not None:
            items.append(("csrf_token", token.encode()))
        for name, value in items:
            disposition = f'form-data; name="{name}"'.encode("utf-8", "surrogatepass")
            if rng.random() < 0.2:
                disposition += b'; filename="' + self.encoded(self.text()) + b'"'
            parts.append(b"Content-Disposition: " + disposition + b"\r\n\r\n" + value)
        if rng.random() < 0.1:  # a part without a name (RFC 7578 wants one)
            parts.insert(rng.randrange(len(parts) + 1), b"Content-Disposition: form-data\r\n\r\nx")
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
        body += b"--" + boundary.encode() + b"--\r\n"
        if rng.random() < 0.2:
            body = body[: rng.randrange(len(body) + 1)]  # cut short
        return body, f"multipart/form-data; boundary={boundary}"

    def csrf_value(self, browser: Browser) -> str | None:
        rng = self.rng
        roll = rng.random()
        if browser.csrf and roll < 0.6:
            return browser.csrf
        if roll < 0.75:
            return rng.choice(["", "x", "IjAw.YWJj.ZGVm", "\x00", "a" * 5000])
        return None

    def json_body(self, rule: Rule, fields: Fields) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.05:
            depth = rng.choice([100, 1000, 100_000])
            return b"[" * depth + b"]" * depth if rng.random() < 0.5 else b'{"a":' * depth
        if roll < 0.1:
            return rng.choice(
                [
                    b"",
                    b"{",
                    b"null",
                    b"[]",
                    b'"x"',
                    b"1",
                    b"NaN",
                    b'{"a":NaN}',
                    b'{"a":1e999}',
                    b'{"username":' + b"9" * 5000 + b"}",
                    b'{"username":"\\ud800"}',
                    b'{"username":"a\\u0000"}',
                    b'{"next":"\\udfff/x"}',
                    b"\xef\xbb\xbf{}",
                    b'{"a":1,"a":2}',
                    b"{}\x00",
                    b'{"\xff":1}',
                    '{"username":"é"}'.encode("latin-1"),
                    '{"username":"x"}'.encode("utf-16"),
                ]
            )
        body: dict[str, Any] = {}
        for name, value in fields:
            body[name] = value if rng.random() < 0.6 else self.json_value(name)
        if rule.rule.startswith("/webauthn/") and rng.random() < 0.6:
            body["credential"] = self.credential()
        text = json.dumps(body, ensure_ascii=rng.random() < 0.7)
        return text.encode("utf-8", "surrogatepass")

    def json_value(self, name: str, depth: int = 0) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            return self.text(name)
        if roll < 0.6:
            return rng.choice([None, True, False, 0, -1, 2**64, 1.5, float("1e308")])
        if roll < 0.7 and depth < 3:
            return [self.json_value(name, depth + 1) for _ in range(rng.randint(0, 3))]
        if roll < 0.8 and depth < 3:
            return {self.text(): self.json_value(name, depth + 1) for _ in range(rng.randint(0, 3))}
        if roll < 0.9:
            return self.credential()
        return self.text()

    def b64(self, data: bytes) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.75:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        if roll < 0.85:
            return base64.b64encode(data).decode()  # standard alphabet, padded
        return self.json_value("", 3)

    def credential(self) -> Any:
        """An assertion or attestation response in the right shape with garbage inside."""
        rng = self.rng
        challenge = base64.urlsafe_b64encode(rng.randbytes(32)).rstrip(b"=").decode()
        client_data = {
            "type": rng.choice(["webauthn.get", "webauthn.create", "x", 1]),
            "challenge": rng.choice([challenge, "", "\x00", None, "%%%"]),
            "origin": rng.choice(["http://localhost:5000", "https://evil.example", "", None]),
            "crossOrigin": rng.choice([False, True, "no", None]),
        }
        client_data_bytes = json.dumps(client_data).encode()
        if rng.random() < 0.2:
            client_data_bytes = rng.choice([b"", b"{", b"\xff", b"[]", b"null"])
        auth_data = rng.randbytes(rng.choice([0, 10, 37, 100]))
        credential_id = rng.randbytes(rng.choice([0, 16, 32, 2000]))
        response: dict[str, Any] = {
            "clientDataJSON": self.b64(client_data_bytes),
            "authenticatorData": self.b64(auth_data),
            "signature": self.b64(rng.randbytes(rng.choice([0, 64, 72]))),
            "userHandle": rng.choice([None, "", self.b64(rng.randbytes(16)), 5]),
        }
        if rng.random() < 0.5:
            attestation = cbor_encode(
                {"fmt": rng.choice(["none", "packed", "x"]), "attStmt": {}, "authData": auth_data}
            )
            response["attestationObject"] = self.b64(attestation)
            response["transports"] = rng.choice([["internal"], "usb", None, [1, 2]])
        credential: dict[str, Any] = {
            "id": self.b64(credential_id),
            "rawId": self.b64(credential_id),
            "type": rng.choice(["public-key", "", "x", None]),
            "response": response if rng.random() < 0.9 else self.json_value("", 2),
            "clientExtensionResults": rng.choice([{}, None, [], {"credProps": {"rk": True}}]),
            "authenticatorAttachment": rng.choice(["platform", "cross-platform", None, 7]),
        }
        for key in list(credential):
            if rng.random() < 0.05:
                del credential[key]
        return credential

    # ------------------------------------------------------------------ headers

    def headers(
        self, browser: Browser, content_type: str | None, body: bytes, rule: Rule
    ) -> tuple[tuple[str, str], ...]:
        rng = self.rng
        headers: list[tuple[str, str]] = []
        roll = rng.random()
        if roll < 0.85:
            headers.append(("Host", rng.choice(GOOD_HOSTS)))
        elif roll < 0.97:
            headers.append(("Host", rng.choice(BAD_HOSTS)))
        elif roll < 0.99:
            headers += [("Host", "localhost"), ("Host", "evil.example")]
        # else: no Host at all (HTTP/1.0)
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        headers.append(("Content-Length", self.content_length(len(body))))
        cookie = self.cookie_header(browser)
        if cookie is not None:
            headers.append(("Cookie", cookie))
            if rng.random() < 0.05:
                headers.append(("Cookie", self.cookie_header(browser) or "a=b"))
        maybe: list[tuple[float, Callable[[], tuple[str, str]]]] = [
            (0.2, lambda: ("Authorization", self.authorization())),
            (
                0.7 if content_type == "application/json" else 0.2,
                lambda: ("X-CSRFToken", self.csrf_value(browser) or ""),
            ),
            (0.1, lambda: ("X-CSRF-Token", self.csrf_value(browser) or "")),
            (
                0.2,
                lambda: (
                    "Origin",
                    rng.choice(["http://localhost:5000", "null", "https://evil.example", "\xff"]),
                ),
            ),
            (
                0.2,
                lambda: (
                    "Referer",
                    rng.choice(
                        [
                            "http://localhost:5000/login",
                            "https://evil.example/",
                            "\x00",
                            "http://localhost:5000/" + "a" * 3000,
                        ]
                    ),
                ),
            ),
            (
                0.5,
                lambda: (
                    "User-Agent",
                    rng.choice(
                        [
                            "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
                            "",
                            "\x00\x1b[31m",
                            "Z" * 10_000,
                            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
                        ]
                    ),
                ),
            ),
            (
                0.3,
                lambda: (
                    "Accept",
                    rng.choice(["application/json", "text/html", "*/*", "", "\xff;q=x"]),
                ),
            ),
            (
                0.1,
                lambda: (
                    "Accept-Language",
                    rng.choice(["fr-FR,fr;q=0.9", "en", "\x00", "*;q=abc"]),
                ),
            ),
            (
                0.1,
                lambda: (
                    "X-Forwarded-For",
                    rng.choice(["1.2.3.4", "evil", "\x00", "1.2.3.4, 5.6.7.8"]),
                ),
            ),
            (
                0.05,
                lambda: (
                    "Forwarded",
                    rng.choice(["for=1.2.3.4", 'for="[::1]";proto=https', "garbage"]),
                ),
            ),
            (0.05, lambda: ("X-Forwarded-Proto", rng.choice(["https", "gopher", ""]))),
            (
                0.1,
                lambda: (
                    "Sec-Fetch-Site",
                    rng.choice(["same-origin", "cross-site", "none", "\xff"]),
                ),
            ),
            (0.1, lambda: ("Sec-Fetch-Mode", rng.choice(["navigate", "cors", "no-cors", ""]))),
            (0.05, lambda: ("If-None-Match", rng.choice(['"abc"', "*", "W/", "\x00"]))),
            (
                0.05,
                lambda: (
                    "If-Modified-Since",
                    rng.choice(["Wed, 21 Oct 2015 07:28:00 GMT", "yesterday", "\xff"]),
                ),
            ),
            (
                0.05,
                lambda: (
                    "Range",
                    rng.choice(
                        [
                            "bytes=0-10",
                            "bytes=-1",
                            "bytes=10-5",
                            "bytes=a-b",
                            "bytes=0-0,1-1," * 100,
                        ]
                    ),
                ),
            ),
            (0.03, lambda: ("X-SHA2-Signature", rng.choice(["0" * 64, "zz", "", "a" * 5000]))),
            (0.02, lambda: ("Transfer-Encoding", rng.choice(["chunked", "gzip", "bogus"]))),
            (0.02, lambda: ("Content-Encoding", rng.choice(["gzip", "deflate", "bogus"]))),
            (0.02, lambda: ("Expect", "100-continue")),
        ]
        for probability, make in maybe:
            if rng.random() < probability:
                headers.append(make())
        return tuple(headers)

    def content_length(self, length: int) -> str:
        rng = self.rng
        if rng.random() < 0.95:
            return str(length)
        return rng.choice(
            ["", "abc", "-5", "0", str(length + 10), str(max(length - 1, 0)), "9" * 20, " 5"]
        )

    def authorization(self) -> str:
        rng = self.rng
        known = self.known
        roll = rng.random()
        if roll < 0.25 and known.bearer:
            return "Bearer " + rng.choice(known.bearer) + rng.choice(["", "", "x", " extra"])
        if roll < 0.45 and known.basic:
            client_id, secret = rng.choice(known.basic)
            secret = rng.choice([secret, secret + "x", "", self.text()])
            raw = f"{client_id}:{secret}".encode("utf-8", "surrogatepass")
            return "Basic " + base64.b64encode(raw).decode()
        return rng.choice(
            [
                "Basic",
                "Basic ",
                "Basic !!!",
                "Basic " + base64.b64encode(b"nocolon").decode(),
                "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
                "Basic " + base64.b64encode(b":").decode(),
                "Basic " + base64.b64encode("é:é".encode("latin-1")).decode(),
                "Basic " + base64.b64encode(b"a" * 5000 + b":b").decode(),
                "Basic YQ",
                "Bearer",
                "Bearer ",
                "Bearer \x00",
                "Bearer " + "a" * 5000,
                "Bearer a b c",
                "bearer lowercase",
                "Digest username=x",
                "Negotiate \xff",
                "\xff\xfe",
                "",
            ]
        )

    def cookie_header(self, browser: Browser) -> str | None:
        rng = self.rng
        cookies = list(browser.cookies.items())
        roll = rng.random()
        if roll < 0.6:
            pass  # the browser's own cookies, as they are
        elif roll < 0.8:
            # one of our cookies replaced by garbage (or added), maybe before the real one
            name = rng.choice(COOKIE_NAMES)
            garbage = self.cookie_garbage()
            if rng.random() < 0.5:
                cookies = [(n, v) for n, v in cookies if n != name]
            cookies.insert(rng.randrange(len(cookies) + 1), (name, garbage))
        elif roll < 0.85 and cookies:
            cookies.pop(rng.randrange(len(cookies)))
        elif roll < 0.9:
            cookies.append(
                rng.choice([("x", "\xff\xfe"), ("\xe9", "\xe9t\xe9"), ("big", "b" * 8000)])
            )
        elif roll < 0.95:
            return rng.choice(["", ";", "=;=", "a", "; ; ;", "\x00", "\xff", "a=b; " * 500, '"=""'])
        if not cookies:
            return None
        return "; ".join(f"{name}={value}" for name, value in cookies)

    def cookie_garbage(self) -> str:
        rng = self.rng
        return rng.choice(
            [
                "",
                "x",
                '"quoted"',
                '"\\377"',
                "a" * 101,
                "a" * 5000,
                "\xff\xfe",
                "\xe9",
                ".eJwxyz.abc.def",
                "eyJ0ZXN0IjoxfQ.Z0.sig",
                "a b",
                "%00",
                "\x00",
                "a,b",
            ]
        )
