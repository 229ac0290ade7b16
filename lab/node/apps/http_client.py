"""HTTP/1.1 client on h11: keep-alive reuse, streamed digests, loop-time timings."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import h11
from pydantic import BaseModel, ConfigDict, Field

from lab.node.apps.net import Net, close_writer

READ_SIZE = 65536
HeadersArg = Mapping[str, str] | Sequence[tuple[str, str]]
BodyArg = bytes | Iterable[bytes]
_PEER_GONE = (ConnectionError, BrokenPipeError, asyncio.IncompleteReadError)


class HttpClientError(Exception):
    """The exchange failed: the peer broke the protocol or closed mid-response."""


@dataclasses.dataclass(frozen=True)
class HttpResponse:
    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes | None
    """None when the client was asked not to keep bodies (digest and length only)."""
    body_length: int
    sha256: str
    reused: bool
    """Sent on a connection that had already carried a request."""
    connect_time: float
    """Seconds to open the connection (0.0 when reused)."""
    ttfb: float
    """Seconds from sending the request to receiving the response head."""
    total: float
    """Seconds from the start (including connecting) to the end of the body."""

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        del d["body"]
        d["headers"] = [list(h) for h in self.headers]
        return d


class HttpClient:
    """Sends requests to one server, reusing the connection while the server keeps it open."""

    def __init__(
        self,
        net: Net,
        host: str,
        port: int,
        *,
        keep_body: bool = True,
        max_header_bytes: int = 65536,
        timeout: float | None = None,
    ) -> None:
        self.net = net
        self.host = host
        self.port = port
        self.keep_body = keep_body
        self.max_header_bytes = max_header_bytes
        self.timeout = timeout
        self.connections = 0
        """Connections opened so far."""
        self._conn: h11.Connection | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        writer, self._writer, self._reader, self._conn = self._writer, None, None, None
        if writer is not None:
            await close_writer(writer)

    async def request(
        self,
        method: str,
        path: str,
        headers: HeadersArg | None = None,
        body: BodyArg | None = None,
        *,
        keep_body: bool | None = None,
    ) -> HttpResponse:
        """One request/response exchange. A bytes body is sent with Content-Length, any other
        iterable of bytes chunked. A reused connection that the server had closed while idle
        is retried once on a fresh one when the body can be sent again."""
        keep = self.keep_body if keep_body is None else keep_body
        retry_ok = body is None or isinstance(body, bytes)
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(method, path, headers, body, keep)
        except _StaleConnection:
            if not retry_ok:
                raise HttpClientError("connection closed before a response") from None
            async with asyncio.timeout(self.timeout):
                return await self._exchange(method, path, headers, body, keep)

    async def _exchange(
        self, method: str, path: str, headers: HeadersArg | None, body: BodyArg | None, keep: bool
    ) -> HttpResponse:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        reused = self._conn is not None
        if self._conn is None:
            self._reader, self._writer = await self.net.open_connection(self.host, self.port)
            self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.max_header_bytes)
            self.connections += 1
        conn, reader, writer = self._conn, self._reader, self._writer
        assert reader is not None and writer is not None
        t_sent = loop.time()
        try:
            await self._send_request(conn, writer, method, path, headers, body)
            response, t_head, data, length, digest = await self._read_response(conn, reader, keep)
        except (*_PEER_GONE, h11.ProtocolError) as exc:
            await self.close()
            if reused and not isinstance(exc, h11.LocalProtocolError):
                raise _StaleConnection from exc
            raise HttpClientError(f"{method} {path}: {exc!r}") from exc
        t_end = loop.time()
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self.close()  # the server will close (Connection: close) or framing ended by EOF
        return HttpResponse(
            status=response.status_code,
            reason=response.reason.decode("latin-1"),
            http_version=response.http_version.decode("ascii"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers],
            body=data,
            body_length=length,
            sha256=digest,
            reused=reused,
            connect_time=0.0 if reused else t_sent - t0,
            ttfb=t_head - t_sent,
            total=t_end - t0,
        )

    async def _send_request(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        headers: HeadersArg | None,
        body: BodyArg | None,
    ) -> None:
        items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        names = {k.lower() for k, _ in items}
        if "host" not in names:
            # An IPv6 literal goes in brackets (RFC 9110 7.2 uri-host, RFC 3986 3.2.2 IP-literal).
            host = f"[{self.host}]" if ":" in self.host else self.host
            items.append(("Host", f"{host}:{self.port}"))
        if "user-agent" not in names:
            items.append(("User-Agent", "tcplab"))
        if isinstance(body, bytes):
            items.append(("Content-Length", str(len(body))))
        elif body is not None:
            items.append(("Transfer-Encoding", "chunked"))
        writer.write(conn.send(h11.Request(method=method, target=path, headers=items)) or b"")
        if isinstance(body, bytes):
            if body:
                writer.write(conn.send(h11.Data(data=body)) or b"")
        elif body is not None:
            for chunk in body:
                if chunk:  # an empty chunk would read as the chunked terminator
                    writer.write(conn.send(h11.Data(data=chunk)) or b"")
                    await writer.drain()
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()

    async def _read_response(
        self, conn: h11.Connection, reader: asyncio.StreamReader, keep: bool
    ) -> tuple[h11.Response, float, bytes | None, int, str]:
        loop = asyncio.get_running_loop()
        response: h11.Response | None = None
        t_head = 0.0
        digest = hashlib.sha256()
        length = 0
        data = bytearray() if keep else None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(READ_SIZE))
            elif isinstance(event, h11.Response):
                response, t_head = event, loop.time()
            elif isinstance(event, h11.Data):
                digest.update(event.data)
                length += len(event.data)
                if data is not None:
                    data += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                return response, t_head, None if data is None else bytes(data), length, digest.hexdigest()
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("connection closed before a complete response")
            # InformationalResponse (100 Continue and the like): wait for the final one.


class _StaleConnection(Exception):
    """A reused keep-alive connection failed before any response: the server had closed it."""


class HttpClientOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str
    port: int = Field(default=80, ge=1, le=65535)
    method: str = Field(default="GET", pattern=r"^[A-Z]+$")
    path: str = Field(default="/", pattern=r"^/")
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    count: int = Field(default=1, ge=1)
    """Requests sent one after another, on one connection while the server keeps it open."""
    keep_body: bool = False
    timeout: float | None = Field(default=None, gt=0)


@dataclasses.dataclass(frozen=True)
class HttpClientResult:
    responses: list[HttpResponse]
    connections: int

    @property
    def ok(self) -> bool:
        return all(r.status < 400 for r in self.responses)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "connections": self.connections,
            "responses": [r.to_dict() for r in self.responses],
        }


async def run_client(net: Net, options: HttpClientOptions) -> HttpClientResult:
    body = options.body.encode() if options.body is not None else None
    responses = []
    async with HttpClient(
        net, options.host, options.port, keep_body=options.keep_body, timeout=options.timeout
    ) as client:
        for _ in range(options.count):
            responses.append(await client.request(options.method, options.path, options.headers, body))
    return HttpClientResult(responses=responses, connections=client.connections)
