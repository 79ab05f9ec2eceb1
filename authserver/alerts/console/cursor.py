"""Keyset positions: newest first on ``(created_at, id)``, carried as an opaque cursor.

A cursor names the last row a page returned; the next page holds the rows
strictly older in that order. It is not signed: a made-up cursor only moves
the reader's position, it grants nothing. No I/O here.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from authserver.models import MAX_ID

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class InvalidCursor(ValueError):
    """The cursor is not one this server produced."""


class InvalidLimit(ValueError):
    """The page size is not an integer between 1 and MAX_LIMIT."""


@dataclass(frozen=True)
class Position:
    created_at: datetime  # aware UTC
    id: int


def encode(position: Position) -> str:
    micros = (position.created_at - EPOCH) // timedelta(microseconds=1)
    raw = f"1:{micros}:{position.id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(cursor: str) -> Position:
    if not cursor or len(cursor) > 64:
        raise InvalidCursor(cursor)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        version, micros, row_id = raw.split(":")
        if version != "1":
            raise ValueError(version)
        moment = EPOCH + timedelta(microseconds=int(micros))
        position = Position(created_at=moment, id=int(row_id))
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError) as exc:
        raise InvalidCursor(cursor) from exc
    if not 0 <= position.id <= MAX_ID:
        raise InvalidCursor(cursor)
    return position


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError as exc:
        raise InvalidLimit(value) from exc
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidLimit(value)
    return limit
