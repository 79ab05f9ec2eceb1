"""What the HTTP adapters share: bounded attempts, retries and reads (see the package's
docstring for the time bound)."""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from authserver.establishments.directory.model import (
    MAX_BODY_BYTES,
    USER_AGENT,
    DirectoryUnavailable,
    Establishment,
    _Malformed,
)

# The package's logger, as before the adapters had a module each.
log = logging.getLogger("authserver.establishments.directory")


class _Transient(Exception):
    """A failure worth another attempt: no connection, a timeout, a cut answer."""


_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504}) | frozenset(range(505, 600))
_MIN_ATTEMPT_SECONDS = 0.05


class _HttpDirectory:
    """Bounded GET of a JSON document, shared by the two HTTP adapters."""

    service = "directory"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        retries: int,
        total_timeout: float,
        backoff: float,
    ) -> None:
        if timeout <= 0 or total_timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("timeout and total_timeout must be positive, retries non-negative")
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{self.service}: an http(s) base URL is expected, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.total_timeout = total_timeout
        self.backoff = backoff
        self._opener = urllib.request.build_opener()

    def _get(self, url: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """(status, body) of the first answer that is not worth retrying.

        Raises ``DirectoryUnavailable`` when every allowed attempt failed or the time
        budget is spent.
        """
        deadline = time.monotonic() + self.total_timeout
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                status, body = self._attempt(url, headers, min(self.timeout, remaining), deadline)
            except _Transient as exc:
                failure = str(exc)
            else:
                if status not in _RETRY_STATUSES:
                    return status, body
                failure = f"HTTP {status}"
            pause = self.backoff * (2**attempt)
            if attempt >= self.retries:
                raise self._unavailable(f"{failure} (after {attempt + 1} attempts)")
            if time.monotonic() + pause + _MIN_ATTEMPT_SECONDS >= deadline:
                raise self._unavailable(
                    f"{failure} (time budget of {self.total_timeout:g} s spent "
                    f"after {attempt + 1} attempts)"
                )
            log.info("%s: attempt %d failed (%s), retrying", self.service, attempt + 1, failure)
            time.sleep(pause)
            attempt += 1

    def _attempt(
        self, url: str, headers: Mapping[str, str], timeout: float, deadline: float
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            url,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT, **headers},
            method="GET",
        )
        try:
            response = self._opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, _read_bounded(exc, deadline)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Transient(f"{type(reason).__name__}: {reason}") from None
        with response:
            return response.status, _read_bounded(response, deadline)

    def _unavailable(self, detail: str) -> DirectoryUnavailable:
        message = f"{self.service}: {detail}"
        log.warning("%s", message)
        return DirectoryUnavailable(message)

    def _json(self, body: bytes) -> Any:
        try:
            return json.loads(body)
        except ValueError:  # also UnicodeDecodeError
            raise self._unavailable(
                f"the answer is not JSON ({body[:60]!r}{'...' if len(body) > 60 else ''})"
            ) from None

    def _read(
        self,
        status: int,
        body: bytes,
        read: Callable[[object, str], Establishment | None],
        wanted: str,
    ) -> Establishment | None:
        """A 200 answer read by the adapter's ``read``; anything else is unavailability."""
        if status != 200:
            raise self._unavailable(f"unexpected HTTP {status}")
        try:
            return read(self._json(body), wanted)
        except _Malformed as exc:
            raise self._unavailable(f"unexpected answer: {exc}") from None


def _read_bounded(response: Any, deadline: float) -> bytes:
    """The body, read in chunks: never past the deadline nor beyond ``MAX_BODY_BYTES``."""
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            if time.monotonic() > deadline:
                raise _Transient("the answer did not arrive within the time budget")
            chunk = response.read1(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _Transient(f"the answer is larger than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
    except (OSError, ValueError, AttributeError, http.client.HTTPException) as exc:
        # ValueError: read on a closed file; AttributeError: an HTTPError without a body.
        raise _Transient(f"reading the answer failed: {type(exc).__name__}: {exc}") from None


# --- API Recherche d'entreprises ----------------------------------------------------------
