"""The bytes of one queued e-mail: text and HTML alternatives in UTF-8, ready for SMTP.

The MIME tree is the standard library's ``email.mime`` one, written by its ``compat32``
generator. Flask-Mail builds the same tree but generates it through the modern
``policy.SMTP``, whose header registry parses every header again while writing it: more than
half of an alert e-mail's delivery CPU (1.4-1.5 ms of about 2.5, issue 13). Here the header
lines that need no folding are written directly (``_QuickFolds``), and the message, always of
one shape, is put together directly (``_assembled``) as the generator would write it: 0.04 ms
(``python -m bench --only mail_delivery``). An address with no ASCII form (SMTPUTF8) still
goes through the generator.

The headers are the ones Flask-Mail wrote (Subject, From, To, Date, Message-ID, the extra
``Auto-Submitted``), and tests/mail/test_message.py checks that a mail reader decodes both
messages to the same headers and bodies, and that ``_assembled`` writes the generator's
bytes.
"""

from __future__ import annotations

import re
import secrets
import time
from email import policy
from email.charset import BASE64, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import formatdate
from functools import lru_cache
from typing import Any

from flask_mail import sanitize_address


class _Folded(str):
    """A header line's value already folded as ``compat32`` folds it: written as it is."""


class _QuickFolds(Compat32):
    """``compat32``, with the header lines it would leave as they are written directly.

    The generator folds every header of every part (14 in an alert e-mail) through a
    ``Header`` object, even a short ASCII value that comes out unchanged: two thirds of the
    message's CPU, on the threads that answer logins. A value that fits on its line is
    written as it is; a ``_Folded`` one (the subject, folded once per subject) too; anything
    else is folded by ``compat32`` itself. ``tests/mail/test_message.py`` compares the
    bytes with ``compat32``'s.
    """

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if isinstance(value, _Folded):
            return f"{name}: {value}{self.linesep}"
        if (
            type(value) is str
            and value.isascii()
            and len(name) + 2 + len(value) <= (self.max_line_length or 0)
            and value.isprintable()
            and value == value.strip()
            and "  " not in value
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)  # type: ignore[misc,no-any-return]


# RFC 5322 lines end in CRLF; smtplib sends bytes as they are.
SMTP_LINES = _QuickFolds(linesep="\r\n")
# RFC 6531: UTF-8 headers as they are, for a relay that announces SMTPUTF8.
SMTPUTF8_OPTION = "SMTPUTF8"
AUTO_SUBMITTED = "auto-generated"  # RFC 3834: no out-of-office replies to these
# Non-ASCII subjects in base64 encoded-words: the default (the shorter of Q and B) measures
# both at every split, a quarter of the message's CPU for one French subject.
_HEADER_CHARSET = Charset("utf-8")
_HEADER_CHARSET.header_encoding = BASE64


class BadHeaderError(ValueError):
    """A line break in a header value: it would let the value write headers of its own."""


def needs_smtputf8(recipient: str) -> bool:
    """An address whose local part is not ASCII (``élise@entreprise.fr``, accepted at sign-up)
    has no ASCII form: it goes only through a relay that announces SMTPUTF8 (RFC 6531)."""
    return not recipient.rpartition("@")[0].isascii()


@lru_cache(maxsize=256)  # the sender's at every e-mail
def address(value: str) -> str:
    """An address as it goes in a header and the envelope (an IDN domain in its ASCII form,
    a non-ASCII display name encoded): ASCII addresses, nearly all of them, as they are."""
    if value.isascii() and "<" not in value and '"' not in value:
        return value
    return sanitize_address(value)


@lru_cache(maxsize=64)  # a handful of subjects, each at every e-mail of its kind
def _header(value: str) -> str:
    """Non-ASCII text encoded and folded as the ``compat32`` generator does a ``Header``,
    once (``_Folded``: written as it is)."""
    if value.isascii():
        return value
    folded = Header(value, _HEADER_CHARSET).encode(
        linesep=SMTP_LINES.linesep, maxlinelen=SMTP_LINES.max_line_length
    )
    return _Folded(folded)


def render(
    *,
    sender: str,
    recipient: str,
    subject: str,
    body_text: str,
    body_html: str | None,
    message_id: str,
    date: float | None = None,
) -> bytes:
    for value in (sender, recipient, subject, message_id):
        if "\r" in value or "\n" in value:
            raise BadHeaderError("saut de ligne dans un en-tête")
    headers = {
        "Date": formatdate(time.time() if date is None else date, localtime=True),
        "Message-ID": message_id,
        "Auto-Submitted": AUTO_SUBMITTED,
    }
    if needs_smtputf8(recipient):
        # Under SMTPUTF8 every header is written in UTF-8 by the modern policy, which is
        # slower but only for these few addresses.
        headers = {"Subject": subject, "From": sender, "To": recipient, **headers}
        return _generated(body_text, body_html, headers, policy.SMTPUTF8)
    headers = {
        "Subject": _header(subject),
        "From": address(sender),
        "To": address(recipient),
        **headers,
    }
    return _assembled(body_text, body_html, headers)


def _boundary() -> str:
    # A random boundary of ours: 128 bits cannot be in the bodies, where the generator's own
    # is checked against them with a regular expression compiled for each message.
    return f"=_{secrets.token_hex(16)}"


def _generated(
    body_text: str, body_html: str | None, headers: dict[str, str], generator: Any
) -> bytes:
    """The message built as ``email.mime`` objects and written by the standard library's
    generator under ``generator`` (a policy)."""
    text = MIMEText(body_text, "plain", "utf-8")
    message: MIMENonMultipart | MIMEMultipart
    if body_html is None:
        message = text
    else:
        message = MIMEMultipart("alternative", boundary=_boundary(), _subparts=[text])
        message.attach(MIMEText(body_html, "html", "utf-8"))
    for name, value in headers.items():
        message[name] = value
    return message.as_bytes(policy=generator)


# Line ends as the generator writes a body's lines (email.generator's NLCRE, joined by CRLF).
_LINE_END = re.compile(r"\r\n|\r|\n")
CRLF = "\r\n"


def _part(body: str, subtype: str) -> bytes:
    """A ``MIMEText(body, subtype, "utf-8")`` as ``SMTP_LINES`` writes it: UTF-8 as it is
    (« 8bit », or « 7bit » for ASCII, as Flask-Mail's setting of the utf-8 charset makes the
    standard library write it), every line ending in CRLF."""
    encoding = "7bit" if body.isascii() else "8bit"
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"MIME-Version: 1.0\r\n"
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
        f"{_LINE_END.sub(CRLF, body)}"
    ).encode()


def _assembled(body_text: str, body_html: str | None, headers: dict[str, str]) -> bytes:
    """The bytes ``_generated(..., SMTP_LINES)`` writes, put together directly: the
    generator walks the whole MIME tree, parses the parts' parameters again and writes the
    bodies line by line, half of an alert e-mail's delivery CPU for a message of one fixed
    shape. tests/mail/test_message.py compares the two byte for byte."""
    fold = SMTP_LINES.fold_binary
    top = b"".join(fold(name, value) for name, value in headers.items())
    if body_html is None:
        text = _part(body_text, "plain")
        head, _, body = text.partition(b"\r\n\r\n")
        return head + b"\r\n" + top + b"\r\n" + body
    boundary = _boundary()
    # Too long for one line: folded at its parameter, as compat32 folds it.
    kind = f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'.encode()
    delimiter = f"--{boundary}".encode()
    return b"".join(
        (
            kind,
            b"MIME-Version: 1.0\r\n",
            top,
            b"\r\n",
            delimiter,
            b"\r\n",
            _part(body_text, "plain"),
            b"\r\n",
            delimiter,
            b"\r\n",
            _part(body_html, "html"),
            b"\r\n",
            delimiter,
            b"--\r\n",
        )
    )
