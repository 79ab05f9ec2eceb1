"""The load generator's HTTP/1.1 client: one keep-alive connection on raw asyncio streams.

asyncio on raw sockets (one process, one thread): on a 2-core machine the client shares the
CPU with the server, so it must be cheap."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

USER_AGENT = "authserver-bench/1 (Linux x86_64) Mozilla/5.0 Chrome/131.0"


class HTTPError(Exception):
    """A request that did not give what the benchmark expected."""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def cookies(self) -> dict[str, str]:
        """``name -> value`` of every Set-Cookie (attributes ignored; empty value = deleted)."""
        jar = {}
        for key, value in self.headers:
            if key == "set-cookie":
                pair = value.split(";", 1)[0]
                name, _, cookie = pair.partition("=")
                jar[name.strip()] = cookie.strip()
        return jar


class Connection:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams (reconnects when closed)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout  # per request: a stuck server never hangs the benchmark
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = -1  # the first connect is not a reconnect

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.reconnects += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        cookies: Mapping[str, str] | None = None,
    ) -> Response:
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: localhost:{self.port}",
            f"User-Agent: {USER_AGENT}",
            "Accept: */*",
        ]
        if cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items() if v))
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            return await asyncio.wait_for(self._exchange(head + body, method), self.timeout)
        except (
            OSError,
            TimeoutError,
            ValueError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as exc:
            self.close()
            raise HTTPError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, data: bytes, method: str) -> Response:
        if self.writer is None:
            await self._open()
        assert self.writer is not None
        self.writer.write(data)
        return await self._read_response(method)

    async def _read_response(self, method: str) -> Response:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        head = raw.decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = []
        for line in head[1:]:
            if line:
                key, _, value = line.partition(":")
                headers.append((key.strip().lower(), value.strip()))
        response = Response(status, headers, b"")
        length = response.header("content-length")
        if method == "HEAD" or status in (204, 304):
            pass
        elif length is not None:
            response.body = await self.reader.readexactly(int(length))
        elif (response.header("transfer-encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")  # no trailers expected
                    break
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            response.body = b"".join(chunks)
        else:  # body until close
            response.body = await self.reader.read()
            self.close()
        if (response.header("connection") or "").lower() == "close":
            self.close()
        return response
