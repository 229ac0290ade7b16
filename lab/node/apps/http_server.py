"""HTTP/1.1 server on h11: static files, `/bytes/N`, `/echo`, `/status/N`, keep-alive.

h11 does all parsing and framing; this module only routes and streams. A malformed request
gets 400 (431 for an oversized head, 413 for an oversized body) and a closed connection, never
an exception that escapes the connection handler.
"""

from __future__ import annotations

import asyncio
import functools
import http
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

import h11
from pydantic import BaseModel, ConfigDict, Field

from lab.node.apps import payload
from lab.node.apps.file_cache import FileCache
from lab.node.apps.net import AppServer, Net

log = logging.getLogger(__name__)

READ_SIZE = 65536
SERVER_NAME = b"tcplab"
# After an error response, how long and how much unread input to drain before closing: closing
# with unread data makes TCP send RST, which can destroy the error response in flight.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20
_PEER_GONE = (ConnectionError, BrokenPipeError, asyncio.IncompleteReadError)

Headers = list[tuple[bytes, bytes]]


class HttpServerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = "0.0.0.0"
    port: int = Field(default=80, ge=0, le=65535)
    root: Path | None = None
    """Directory whose files are served; None serves only the built-in routes."""
    max_header_bytes: int = Field(default=16384, ge=256)
    max_body_bytes: int = Field(default=16 << 20, ge=0)
    chunk_size: int = Field(default=65536, ge=1)
    idle_timeout: float | None = Field(default=60.0, gt=0)
    """Seconds a connection may sit idle (loop time); None waits forever."""


class _Reject(Exception):
    """Answer with this status and close the connection."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class HttpServer(AppServer):
    """A running server. `connections` and `requests` count what it has accepted."""

    def __init__(self, options: HttpServerOptions) -> None:
        super().__init__()
        self.options = options
        self.files = FileCache(options.root) if options.root is not None else None
        self.requests = 0

    async def start(self, net: Net) -> HttpServer:
        await self.listen(net, self.options.host, self.options.port)
        return self

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.options.max_header_bytes)
        try:
            async with asyncio.timeout(None) as scope:
                idle = _IdleTimer(scope, self.options.idle_timeout)
                try:
                    await self._requests(conn, reader, writer, idle)
                finally:
                    idle.cancel()
        except h11.RemoteProtocolError as exc:
            await self._fail(conn, reader, writer, exc.error_status_hint or 400)
        except _Reject as exc:
            await self._fail(conn, reader, writer, exc.status)
        except (*_PEER_GONE, TimeoutError):
            pass
        except Exception:
            log.exception("http: request handler failed")
            await self._fail(conn, reader, writer, 500)

    async def _requests(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        idle: _IdleTimer,
    ) -> None:
        while True:
            event = await _next_event(conn, reader, idle)
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}", error_status_hint=400)
            self.requests += 1
            if _head_size(event) > self.options.max_header_bytes:
                # h11 bounds only an *incomplete* head; a whole one can arrive in a single read.
                raise _Reject(431)
            await self._dispatch(conn, reader, writer, idle, event)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # MUST_CLOSE (Connection: close, HTTP/1.0) or a body left unread
            conn.start_next_cycle()

    async def _read_body(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        idle: _IdleTimer,
        request: h11.Request,
        keep: bool,
    ) -> bytes:
        """Read the request body up to max_body_bytes (413 beyond), keeping it only if asked."""
        limit = self.options.max_body_bytes
        declared = _header(request.headers, b"content-length")
        if declared is not None and int(declared) > limit:
            raise _Reject(413)  # before "100 Continue": the client need not send it at all
        if conn.they_are_waiting_for_100_continue:
            await _send(
                conn, writer, h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            )
        body = bytearray()
        size = 0
        while True:
            event = await _next_event(conn, reader, idle)
            if isinstance(event, h11.EndOfMessage):
                return bytes(body)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise _Reject(413)
                if keep:
                    body += event.data
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("peer closed inside a request body")

    async def _dispatch(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        idle: _IdleTimer,
        request: h11.Request,
    ) -> None:
        method = request.method.decode("ascii", "replace")
        target = urlsplit(request.target.decode("ascii", "replace"))
        path = unquote(target.path)
        is_echo = path == "/echo"
        # The body is read (or skipped) before routing so the next request starts in sync.
        body = await self._read_body(conn, reader, writer, idle, request, keep=is_echo and method == "POST")
        head = method == "HEAD"

        if is_echo:
            if method != "POST":
                return await _simple(conn, writer, 405, head, [(b"Allow", b"POST")])
            ctype = _header(request.headers, b"content-type") or b"application/octet-stream"
            return await _respond(conn, writer, 200, [(b"Content-Type", ctype)], body, len(body), False)

        if path.startswith("/status/"):
            code = _int(path[len("/status/") :])
            if code is None or not 200 <= code <= 599:
                return await _simple(conn, writer, 400, head)
            return await _simple(conn, writer, code, head)

        if method not in ("GET", "HEAD"):
            return await _simple(conn, writer, 405, head, [(b"Allow", b"GET, HEAD")])

        if path.startswith("/bytes/"):
            n = _int(path[len("/bytes/") :])
            if n is None or n < 0:
                return await _simple(conn, writer, 404, head)
            seed = _int(parse_qs(target.query).get("seed", ["0"])[0]) or 0
            hdrs = [(b"Content-Type", b"application/octet-stream"), (b"X-Payload-Seed", b"%d" % seed)]
            chunks = payload.chunks(n, seed, chunk_size=self.options.chunk_size)
            return await _respond(conn, writer, 200, hdrs, chunks, n, head)

        found = self.files.lookup(path) if self.files is not None else None
        if found is None:
            return await _simple(conn, writer, 404, head)
        hdrs = [(b"Content-Type", found.content_type)]
        if found.file is None:
            assert found.body is not None
            return await _respond(conn, writer, 200, hdrs, found.body, found.size, head)
        with found.file as f:
            chunks = _file_chunks(f, self.options.chunk_size)
            return await _respond(conn, writer, 200, hdrs, chunks, found.size, head)

    async def _fail(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int
    ) -> None:
        """Send an error response if the protocol state still allows one, then close gently."""
        try:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await _simple(conn, writer, status, False, [(b"Connection", b"close")])
            if writer.can_write_eof():
                writer.write_eof()
            await _linger(reader)
        except (*_PEER_GONE, TimeoutError, h11.LocalProtocolError):
            pass


class _IdleTimer:
    """The idle timeout of one connection: one loop timer, re-armed only when it fires, instead
    of a timer armed and cancelled around every read. `read` marks when its wait began; once one
    wait has lasted `seconds` the timer expires `scope`, the asyncio.timeout around the
    connection's requests, which cancels the handler and raises TimeoutError. None: no timeout."""

    def __init__(self, scope: asyncio.Timeout, seconds: float | None) -> None:
        self._scope = scope
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._since: float | None = None  # when the read now waiting began
        self._armed_for: float | None = None  # the _since the timer was armed for
        self._handle = self._loop.call_later(seconds, self._fire) if seconds is not None else None

    async def read(self, reader: asyncio.StreamReader) -> bytes:
        self._since = self._loop.time()
        try:
            return await reader.read(READ_SIZE)
        finally:
            self._since = None

    def _fire(self) -> None:
        assert self._seconds is not None
        since = self._since
        if since is not None and since == self._armed_for:  # this one wait lasted `seconds`
            self._scope.reschedule(self._loop.time())
            return
        self._armed_for = since
        self._handle = self._loop.call_at((self._loop.time() if since is None else since) + self._seconds,
                                          self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader, idle: _IdleTimer) -> h11.Event:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            assert event is not h11.PAUSED, "next cycle not started"
            return event  # type: ignore[return-value]
        conn.receive_data(await idle.read(reader))


async def _linger(reader: asyncio.StreamReader) -> None:
    drained = 0
    async with asyncio.timeout(LINGER_SECONDS):
        while drained < LINGER_BYTES and (data := await reader.read(READ_SIZE)):
            drained += len(data)


def _file_chunks(f: BinaryIO, size: int) -> Iterator[bytes]:
    # Local file reads are short and bounded by the chunk size; no thread (virtual-time loops).
    while chunk := f.read(size):
        yield chunk


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _head_size(request: h11.Request) -> int:
    """Approximate size of the request head as sent (request line and header lines)."""
    size = len(request.method) + len(request.target) + 12
    return size + sum(len(k) + len(v) + 4 for k, v in request.headers.raw_items())


def _int(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


_END = h11.EndOfMessage()  # immutable, like every h11 event: one serves all responses
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"")


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, *events: h11.Event) -> None:
    for event in events:
        _write(conn, writer, event)
    await writer.drain()


async def _simple(
    conn: h11.Connection, writer: asyncio.StreamWriter, status: int, head: bool, extra: Headers | None = None
) -> None:
    """A short text response (none for 204/304, whose framing forbids a body)."""
    extra = extra or []
    if status in (204, 304):
        hdrs = [(b"Server", SERVER_NAME), *extra]
        response = h11.Response(status_code=status, headers=hdrs, reason=_reason(status))
        await _send(conn, writer, response, h11.EndOfMessage())
        return
    text = b"%d %s\n" % (status, _reason(status))
    await _respond(conn, writer, status, [(b"Content-Type", b"text/plain"), *extra], text, len(text), head)


async def _respond(
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    status: int,
    headers: Headers,
    body: bytes | Iterable[bytes],
    length: int,
    head: bool,
) -> None:
    """Send a response with Content-Length (no body for HEAD). A body given as bytes goes in one
    write with the head, drained only if the write buffer is over its high-water mark (or the
    transport closing): a small response costs one write and no wait. An iterable is streamed
    chunk by chunk, drained after each chunk so a large body never outruns the peer."""
    response = _frame(conn, _response(status, (*headers, (b"Content-Length", b"%d" % length))))
    if isinstance(body, bytes):
        data = _frame(conn, h11.Data(data=body)) if not head else b""
        writer.write(b"".join((response, data, _frame(conn, _END))))
        if _drain_would_wait(writer):
            await writer.drain()
        return
    writer.write(response)  # leaves with the first chunk: writes of one loop step go together
    if not head:
        for chunk in body:
            _write(conn, writer, h11.Data(data=chunk))
            await writer.drain()
    _write(conn, writer, _END)
    await writer.drain()


@functools.lru_cache(maxsize=256)
def _response(status: int, headers: tuple[tuple[bytes, bytes], ...]) -> h11.Response:
    """The h11 Response for status and headers (and Server). h11 validates the headers of every
    event it is given to make; a server's responses recur (the same file, the same error) and h11
    events are immutable, so each is made once."""
    all_headers = [(b"Server", SERVER_NAME), *headers]
    return h11.Response(status_code=status, headers=all_headers, reason=_reason(status))


def _drain_would_wait(writer: asyncio.StreamWriter) -> bool:
    """Whether drain() has work to do: a buffer over the high-water mark (flow control paused
    us), or a closing transport (drain raises the error a lost connection left)."""
    t = writer.transport
    return t.is_closing() or t.get_write_buffer_size() > t.get_write_buffer_limits()[1]


def _frame(conn: h11.Connection, event: h11.Event) -> bytes:
    """The bytes h11 frames event into, joined."""
    return conn.send(event) or b""


def _write(conn: h11.Connection, writer: asyncio.StreamWriter, event: h11.Event) -> None:
    for data in conn.send_with_data_passthrough(event) or ():
        writer.write(data)


async def run_server(net: Net, options: HttpServerOptions) -> None:
    """Serve until cancelled."""
    server = await HttpServer(options).start(net)
    await server.serve_forever()
