"""asyncio streams on the stack: `open_connection` and `start_server` return the standard
`asyncio.StreamReader`/`StreamWriter`, backed by a Transport over a TcpConnection.

Flow control is real on both sides: when the StreamReader's buffer is full it pauses the
transport, which stops reading from the connection, so our receive window closes; when the
connection's send buffer is full, writes wait in the transport and `drain()` waits for the ACKs.
"""

from __future__ import annotations

import asyncio
import errno
import socket as _pysocket
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from stack.driver import StackRuntime
from stack.errors import socket_error
from stack.inet import is_ipv6
from stack.tcp.connection import TcpConnection
from stack.tcp.listener import Listener
from stack.tcp.state import State

HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024
READ_CHUNK = 256 * 1024

ClientConnected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]


class _StepFlush:
    """The writes of one loop step, sent together at its end (see TcpTransport.write): each
    transport's buffer goes to its connection, then one pump transmits them all, so a step in
    which many connections answer costs one pump and one timer re-arm, not one per connection."""

    def __init__(self, runtime: StackRuntime) -> None:
        self._loop = runtime.loop
        self._pending: list[TcpTransport] = []

    def add(self, transport: TcpTransport) -> None:
        if not self._pending:
            self._loop.call_soon(self._run)
        self._pending.append(transport)

    def _run(self) -> None:
        pending, self._pending = self._pending, []
        for transport in pending:
            transport._deferred_flush()
        pending[0].runtime.pump()


# One per runtime, which it must not keep alive (hence no reference back to it but through the
# transports it holds for one step).
_step_flushes: weakref.WeakKeyDictionary[StackRuntime, _StepFlush] = weakref.WeakKeyDictionary()


def _step_flush(runtime: StackRuntime) -> _StepFlush:
    flush = _step_flushes.get(runtime)
    if flush is None:
        flush = _step_flushes[runtime] = _StepFlush(runtime)
    return flush


class TcpTransport(asyncio.Transport):
    """An asyncio Transport whose far side is a TcpConnection of our stack."""

    def __init__(self, runtime: StackRuntime, conn: TcpConnection, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.runtime = runtime
        self.conn = conn
        self._protocol = protocol
        self._wbuf = bytearray()
        self._closing = False
        self._eof_requested = False
        self._reading_paused = False
        self._writing_paused = False
        self._eof_delivered = False
        self._lost = False
        self._flush_soon = False
        self._step_flush = _step_flush(runtime)
        runtime.watch(conn, self._on_change)
        protocol.connection_made(self)
        runtime.loop.call_soon(self._on_change)

    # -- asyncio.Transport API

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        c = self.conn
        return {
            "peername": _sockaddr(c.remote_ip, c.remote_port),
            "sockname": _sockaddr(c.local_ip, c.local_port),
            "tcp_connection": c,
            "socket": None,
        }.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._on_change()

    def abort(self) -> None:
        self._closing = True
        self._wbuf.clear()
        if self.conn.state is not State.CLOSED:
            self.conn.abort(self.runtime.now())
            self.runtime.host.app_call(self.conn)
            self.runtime.pump()
        self._connection_lost(None)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._eof_requested:
            raise RuntimeError("write after close or write_eof")
        if self._lost or not data:
            return
        self._wbuf += data
        # Writes made in one step of the application go out together at the end of the loop
        # iteration: an HTTP header and its body share a segment instead of the body waiting
        # behind Nagle for the header's ACK (the effect of TCP_CORK, without the API).
        if not self._flush_soon:
            self._flush_soon = True
            self._step_flush.add(self)
        if not self._writing_paused and len(self._wbuf) > HIGH_WATER:
            self._writing_paused = True
            self._protocol.pause_writing()

    def write_eof(self) -> None:
        self._eof_requested = True
        self._on_change()

    def shutdown(self, how: int) -> None:
        """shutdown(2) for a streams user (`writer.transport.shutdown(socket.SHUT_RD)`): SHUT_RD
        gives the reader EOF once what was queued is delivered (reader.read() returns b"" at
        once); data arriving later stays in the connection, unread, as on Linux. SHUT_WR is
        write_eof(); SHUT_RDWR both."""
        if how not in (_pysocket.SHUT_RD, _pysocket.SHUT_WR, _pysocket.SHUT_RDWR):
            raise ValueError(f"shutdown: invalid how={how}")
        if how in (_pysocket.SHUT_RD, _pysocket.SHUT_RDWR):
            self.conn.shutdown_read(self.runtime.now())
        if how in (_pysocket.SHUT_WR, _pysocket.SHUT_RDWR):
            self.write_eof()
        else:
            self._on_change()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return len(self._wbuf)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return LOW_WATER, HIGH_WATER

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self.runtime.loop.call_soon(self._on_change)

    def is_reading(self) -> bool:
        return not self._reading_paused

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # -- the connection side

    def _deferred_flush(self) -> None:
        """Send what this step wrote; the caller (_StepFlush) pumps once for every transport."""
        self._flush_soon = False
        if not self._lost:
            self._flush(pump=False)

    def _flush(self, pump: bool = True) -> None:
        conn = self.conn
        if self._wbuf and conn.is_open_for_send:
            n = conn.send(self._wbuf, self.runtime.now())
            if n:
                del self._wbuf[:n]
                self.runtime.host.app_call(conn)
                if pump:
                    self.runtime.pump()
        if self._writing_paused and len(self._wbuf) <= LOW_WATER:
            self._writing_paused = False
            self._protocol.resume_writing()

    def _on_change(self) -> None:
        if self._lost:
            return
        conn = self.conn
        now = self.runtime.now()
        # Deliver what arrived, unless the reader asked us to stop (its buffer is full).
        while not self._reading_paused and not self._eof_delivered and conn.readable:
            data = conn.recv(READ_CHUNK, now)
            self.runtime.host.app_call(conn)
            self._protocol.data_received(data)
        eof = conn.at_eof or (conn.read_shut and not conn.readable)
        if eof and not self._eof_delivered and not self._reading_paused:
            self._eof_delivered = True
            keep_open = self._protocol.eof_received()
            if not keep_open:
                self._closing = True
        self._flush()
        if not self._wbuf and (self._eof_requested or self._closing):
            if self._closing:
                conn.close(now)
            elif conn.state in (State.ESTABLISHED, State.CLOSE_WAIT, State.SYN_RECEIVED):
                conn.shutdown(now)
            self.runtime.host.app_call(conn)
            self.runtime.pump()
        if conn.error is not None and conn.state is State.CLOSED:
            self._connection_lost(conn.error if not self._closing else None)
        elif self._closing and not self._wbuf:
            self._connection_lost(None)

    def _connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self.runtime.unwatch(self.conn)
        error = exc if isinstance(exc, Exception) or exc is None else ConnectionError(str(exc))
        self.runtime.loop.call_soon(self._protocol.connection_lost, error)


def _sockaddr(ip: str, port: int) -> tuple[str, int] | tuple[str, int, int, int]:
    """What asyncio's transports give: a 4-tuple (host, port, flowinfo, scope_id) for IPv6."""
    return (ip, port, 0, 0) if is_ipv6(ip) else (ip, port)


def _make_streams(
    runtime: StackRuntime, conn: TcpConnection, limit: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = runtime.loop
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = TcpTransport(runtime, conn, protocol)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


def _serve_streams(runtime: StackRuntime, conn: TcpConnection, limit: int, cb: ClientConnected) -> None:
    # The protocol makes the StreamWriter itself and hands both streams to cb. (A StreamWriter
    # made here and dropped would close the transport from its __del__.)
    reader = asyncio.StreamReader(limit=limit, loop=runtime.loop)
    protocol = asyncio.StreamReaderProtocol(reader, cb, loop=runtime.loop)
    TcpTransport(runtime, conn, protocol)


async def wait_connected(runtime: StackRuntime, conn: TcpConnection) -> None:
    while not conn.connected and conn.error is None and conn.state is not State.CLOSED:
        await runtime.wait_for_change(conn)
    if conn.error is not None:
        raise type(conn.error)(*conn.error.args)
    if not conn.connected:
        raise socket_error(errno.ECONNABORTED, "closed during the handshake")


class StackServer:
    """What `start_server` returns: the listener plus the asyncio.Server methods apps use."""

    def __init__(
        self, runtime: StackRuntime, listener: Listener, cb: ClientConnected, limit: int
    ) -> None:
        self.runtime = runtime
        self.listener = listener
        self.port = listener.port
        self._cb = cb
        self._limit = limit
        self._closed = asyncio.Event()
        self.connections = 0
        runtime.watch(listener, self._accept_ready)
        runtime.loop.call_soon(self._accept_ready)

    def _accept_ready(self) -> None:
        while not self.listener.closed:
            conn = self.listener.accept()
            if conn is None:
                return
            self.connections += 1
            _serve_streams(self.runtime, conn, self._limit, self._cb)

    def close(self) -> None:
        if not self.listener.closed:
            self.runtime.unwatch(self.listener)
            self.runtime.host.close_listener(self.listener, self.runtime.now())
            self.runtime.pump()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def is_serving(self) -> bool:
        return not self.listener.closed

    async def __aenter__(self) -> StackServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


async def open_connection(
    runtime: StackRuntime, host: str, port: int, *, limit: int = 2**16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    conn = runtime.host.connect(host, port, runtime.now())
    runtime.pump()
    await wait_connected(runtime, conn)
    return _make_streams(runtime, conn, limit)


async def start_server(
    runtime: StackRuntime, cb: ClientConnected, port: int, *, backlog: int = 128, limit: int = 2**16
) -> StackServer:
    listener = runtime.host.listen(port, backlog)
    return StackServer(runtime, listener, cb, limit)
