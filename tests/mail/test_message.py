"""The e-mail's bytes (mail/message.py): what a mail reader decodes is what Flask-Mail sent."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage

import flask_mail
import pytest
from flask import Flask

from authserver.mail.message import BadHeaderError, render

SENDER = "Espace Entreprise <ne-pas-repondre@entreprise.example.fr>"
MESSAGE_ID = "<outbox-7.1796530016000000@entreprise.example.fr>"
DATE = 1796530016.0
TEXT = "Bonjour Élodie,\n\nUne connexion à votre compte…\n.\nUne ligne qui commence par un point.\n"
HTML = "<p>Bonjour Élodie,</p>\n<p>Une connexion à votre compte…</p>\n"


def flask_mail_bytes(subject: str, recipient: str, html: str | None) -> bytes:
    app = Flask(__name__)
    app.extensions["mail"] = flask_mail.Mail().init_mail(
        {"MAIL_DEFAULT_SENDER": SENDER, "MAIL_SUPPRESS_SEND": True}
    )
    with app.app_context():
        message = flask_mail.Message(
            subject=subject,
            recipients=[recipient],
            body=TEXT,
            html=html,
            sender=SENDER,
            extra_headers={"Auto-Submitted": "auto-generated"},
        )
        message.msgId = MESSAGE_ID
        message.date = DATE
        return message.as_bytes()


def read(data: bytes) -> tuple[dict[str, str], dict[str, str]]:
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    headers = {
        name: str(parsed[name])
        for name in ("Subject", "From", "To", "Date", "Message-ID", "Auto-Submitted")
    }
    bodies = {
        part.get_content_type(): part.get_content()
        for part in parsed.walk()
        if not part.is_multipart()
    }
    return headers, bodies


def ours(**overrides: object) -> bytes:
    """``render`` of an alert-like message; ``overrides``: the fields a test is about."""
    values: dict[str, object] = {
        "sender": SENDER,
        "recipient": "contact@entreprise.fr",
        "subject": "Nouvelle connexion à votre compte",
        "body_text": TEXT,
        "body_html": HTML,
        "message_id": MESSAGE_ID,
        "date": DATE,
        **overrides,
    }
    return render(**values)


@pytest.mark.parametrize(
    ("subject", "recipient", "html"),
    [
        ("Nouvelle connexion à votre compte", "elodie.martin@entreprise.fr", HTML),
        ("Activate", "contact@entreprise.fr", HTML),
        (
            "Une connexion à votre compte Espace Entreprise depuis un nouvel appareil — "
            "vérifiez qu'il s'agit bien de vous",  # folded over several lines
            "rh@boulangerie-élodie.fr",  # an IDN domain: sent in its ASCII form
            HTML,
        ),
        ("Texte seul", "contact@entreprise.fr", None),
    ],
)
def test_a_reader_decodes_what_flask_mail_sent(
    subject: str, recipient: str, html: str | None
) -> None:
    data = ours(recipient=recipient, subject=subject, body_html=html)
    assert read(data) == read(flask_mail_bytes(subject, recipient, html))
    headers, bodies = read(data)
    assert headers["Subject"] == subject
    assert bodies["text/plain"].replace("\r\n", "\n") == TEXT  # CRLF on the wire
    assert ("text/html" in bodies) == (html is not None)


def test_every_line_ends_in_crlf() -> None:
    data = ours()
    assert data.count(b"\n") == data.count(b"\r\n") > 10
    assert data.isascii() is False  # UTF-8 bodies go as 8bit, as Flask-Mail sent them


@pytest.mark.parametrize("field", ["subject", "recipient"])
def test_a_line_break_in_a_header_is_refused(field: str) -> None:
    values = {"subject": "Bonjour", "recipient": "contact@entreprise.fr"}
    values[field] += "\r\nBcc: victime@example.org"
    with pytest.raises(BadHeaderError):
        ours(body_html=None, **values)


def test_an_accented_local_part_is_written_in_utf8() -> None:
    """No ASCII form exists (RFC 6531): the headers go in UTF-8, for a SMTPUTF8 relay."""
    data = ours(recipient="élise@entreprise.fr")
    assert "To: élise@entreprise.fr\r\n".encode() in data
    headers, bodies = read(data)
    assert headers["To"] == "élise@entreprise.fr"
    assert headers["Subject"] == "Nouvelle connexion à votre compte"
    assert headers["Auto-Submitted"] == "auto-generated"
    assert bodies["text/html"].replace("\r\n", "\n") == HTML


@pytest.mark.parametrize(
    ("sender", "subject", "recipient", "message_id"),
    [
        (SENDER, "Nouvelle connexion à votre compte", "contact@entreprise.fr", MESSAGE_ID),
        (SENDER, "Activate  your   account", "contact@entreprise.fr", MESSAGE_ID),
        (
            "Équipe Entreprise <ne-pas-repondre@entreprise.example.fr>",
            "Une connexion à votre compte Espace Entreprise depuis un nouvel appareil — "
            "vérifiez qu'il s'agit bien de vous",
            "rh@boulangerie-élodie.fr",
            MESSAGE_ID,
        ),
        (
            SENDER,
            "An ASCII subject long enough to be folded by the generator over more than one "
            "line of the header",
            "tres.long.prenom.et.nom.de.famille.du.responsable@etablissement-"
            "du-groupe.entreprise.example.fr",
            "<outbox-1234567890.1796530016000000@un-domaine-tres-long.entreprise.example.fr>",
        ),
    ],
)
def test_the_bytes_are_compat32s(
    monkeypatch: pytest.MonkeyPatch, sender: str, subject: str, recipient: str, message_id: str
) -> None:
    """Header lines written directly where ``compat32`` leaves them as they are, and the
    subject folded once: the same bytes as the standard library's generator writes."""
    from email.charset import BASE64, Charset
    from email.header import Header

    from authserver.mail import message as module

    monkeypatch.setattr(module.secrets, "token_hex", lambda _n: "0" * 32)  # one boundary
    values = {
        "sender": sender,
        "recipient": recipient,
        "subject": subject,
        "body_text": TEXT,
        "body_html": HTML,
        "message_id": message_id,
        "date": DATE,
    }
    quick = render(**values)
    charset = Charset("utf-8")
    charset.header_encoding = BASE64
    monkeypatch.setattr(module, "SMTP_LINES", policy.compat32.clone(linesep="\r\n"))
    monkeypatch.setattr(
        module, "_header", lambda value: value if value.isascii() else Header(value, charset)
    )
    assert quick == render(**values)


def test_every_header_line_is_compat32s() -> None:
    """Around the folding limit, with and without spaces: the line written directly is the
    one ``compat32`` writes (or ``compat32`` writes it)."""
    import random

    from authserver.mail.message import SMTP_LINES

    stock = policy.compat32.clone(linesep="\r\n")
    pick = random.Random(13)
    words = ["a", "bb", "multipart/alternative;", 'boundary="=_0f"', "x@y.fr", "<i@d>", "7,"]
    values = ["x" * length for length in range(55, 100)]
    for length in range(1, 110):
        value = ""
        while len(value) < length:
            value = f"{value} {pick.choice(words)}".strip()
        values.append(value[:length].strip())
    for name in ("To", "Subject", "Message-ID", "Content-Type", "Auto-Submitted"):
        for value in values:
            assert SMTP_LINES.fold_binary(name, value) == stock.fold_binary(name, value), value


BODIES = [
    TEXT,
    HTML,
    "ASCII seulement\n",  # 7bit, not 8bit
    "",
    "sans fin de ligne",
    "From the start: a line the mbox format would mangle\nFrom here\n",
    "Windows\r\nline ends\r\nand a lone\rCR, then\n\nblank lines\n\n\n",
    "trailing CR\r",
    "Ünïcödé\u00a0espace insécable, emoji 🔐, ligne " + "très " * 60 + "longue\n",
    ".\n..\n. point\n",
]


@pytest.mark.parametrize("html", [*BODIES, None])
@pytest.mark.parametrize("text", BODIES)
def test_the_assembled_bytes_are_the_generators(
    monkeypatch: pytest.MonkeyPatch, text: str, html: str | None
) -> None:
    """The message put together directly is byte for byte the one the standard library's
    generator writes of the same MIME tree, whatever the bodies hold."""
    from authserver.mail import message as module

    monkeypatch.setattr(module.secrets, "token_hex", lambda _n: "0f" * 16)
    for subject, sender, recipient in [
        ("Nouvelle connexion à votre compte", SENDER, "contact@entreprise.fr"),
        ("Activate", "ne-pas-repondre@entreprise.example.fr", "rh@boulangerie-élodie.fr"),
        (
            "Une connexion à votre compte Espace Entreprise depuis un nouvel appareil — "
            "vérifiez qu'il s'agit bien de vous",
            "Équipe Entreprise <ne-pas-repondre@entreprise.example.fr>",
            "tres.long.prenom.et.nom.de.famille.du.responsable@etablissement-"
            "du-groupe.entreprise.example.fr",
        ),
    ]:
        headers = {
            "Subject": module._header(subject),
            "From": module.address(sender),
            "To": module.address(recipient),
            "Date": "Tue, 08 Dec 2026 03:00:00 +0100",
            "Message-ID": MESSAGE_ID,
            "Auto-Submitted": module.AUTO_SUBMITTED,
        }
        generated = module._generated(text, html, headers, module.SMTP_LINES)
        assert module._assembled(text, html, headers) == generated
