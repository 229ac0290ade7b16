"""The apps on a virtual-time loop over an in-memory Net: they use no kernel socket and no clock
but the loop's, so their timings come out exact (the way they will on the simulated network)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lab.node.apps import payload
from lab.node.apps.bulk import BulkClientOptions, BulkServer, BulkServerOptions
from lab.node.apps.bulk import run_client as run_bulk
from lab.node.apps.echo import EchoClientOptions, EchoServer
from lab.node.apps.echo import run_client as run_echo
from lab.node.apps.http_client import HttpClient
from lab.node.apps.http_server import HttpServer, HttpServerOptions
from lab.node.apps.net import ClientConnectedCb
from stack.sim.loop import run

DELAY = 0.010  # one-way, seconds of virtual time
WINDOW = 65536  # bytes in flight before the writer must wait (drain)


class _Pipe(asyncio.Transport):
    """One end of an in-memory byte pipe with a fixed one-way delay and a bounded window."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self._loop = loop
        self._protocol: Any = protocol
        self.peer: _Pipe | None = None
        self._closing = False
        self._eof_sent = False
        self._lost = False
        self._in_flight = 0
        self._paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._eof_sent or not data:
            return
        chunk = bytes(data)
        self._in_flight += len(chunk)
        if not self._paused and self._in_flight > WINDOW:
            self._paused = True
            self._protocol.pause_writing()
        self._loop.call_later(DELAY, self._arrive, chunk)

    def _arrive(self, chunk: bytes) -> None:
        self._in_flight -= len(chunk)
        if self._paused and self._in_flight <= WINDOW // 2:
            self._paused = False
            self._protocol.resume_writing()
        assert self.peer is not None
        if not self.peer._lost:
            self.peer._protocol.data_received(chunk)

    def write_eof(self) -> None:
        if not self._eof_sent:
            self._eof_sent = True
            self._loop.call_later(DELAY, self._arrive_eof)

    def _arrive_eof(self) -> None:
        assert self.peer is not None
        if not self.peer._lost:
            self.peer._protocol.eof_received()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if not self._closing:
            self.write_eof()
            self._closing = True
            self._loop.call_soon(self._connection_lost)

    def abort(self) -> None:
        self.close()

    def _connection_lost(self) -> None:
        self._lost = True
        self._protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Handle:
    def __init__(self, port: int) -> None:
        self.port = port

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


class MemNet:
    """A Net whose connections are in-memory pipes; connecting takes one round trip."""

    def __init__(self) -> None:
        self._servers: dict[int, ClientConnectedCb] = {}

    async def start_server(self, client_connected_cb: ClientConnectedCb, host: str, port: int) -> _Handle:
        port = port or 40000 + len(self._servers)
        self._servers[port] = client_connected_cb
        return _Handle(port)

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        handshake: asyncio.Future[None] = loop.create_future()
        loop.call_later(2 * DELAY, handshake.set_result, None)
        await handshake
        server_reader, client_reader = asyncio.StreamReader(), asyncio.StreamReader()
        server_proto = asyncio.StreamReaderProtocol(server_reader, self._servers[port])
        client_proto = asyncio.StreamReaderProtocol(client_reader)
        server_end, client_end = _Pipe(loop, server_proto), _Pipe(loop, client_proto)
        server_end.peer, client_end.peer = client_end, server_end
        server_proto.connection_made(server_end)
        client_proto.connection_made(client_end)
        return client_reader, asyncio.StreamWriter(client_end, client_proto, client_reader, loop)


def test_echo_round_trip_in_virtual_time() -> None:
    async def main() -> tuple[float, float, bool]:
        net = MemNet()
        server = await EchoServer().start(net, "10.0.0.1", 7)
        result = await run_echo(net, EchoClientOptions(host="10.0.0.1", port=7, message="x"))
        server.close()
        await server.wait_closed()
        return result.connect_time, result.rtt, result.ok

    connect, rtt, ok = run(main(), timeout=60)
    assert ok and connect == pytest.approx(2 * DELAY) and rtt == pytest.approx(2 * DELAY)


def test_http_timings_and_keep_alive_in_virtual_time() -> None:
    async def main() -> None:
        net = MemNet()
        server = await HttpServer(HttpServerOptions(host="10.0.0.1", port=80)).start(net)
        async with HttpClient(net, "10.0.0.1", 80) as client:
            r = await client.request("GET", "/bytes/1000")
            assert r.body == payload.payload(1000)
            assert r.connect_time == pytest.approx(2 * DELAY) and r.ttfb == pytest.approx(2 * DELAY)
            assert r.total == pytest.approx(4 * DELAY)
            r = await client.request("POST", "/echo", body=b"abc")
            assert r.body == b"abc" and r.reused and r.total == pytest.approx(2 * DELAY)
        server.close()
        await server.wait_closed()
        assert server.connections == 1 and server.requests == 2

    run(main(), timeout=60)


def test_timed_bulk_in_virtual_time_is_window_limited() -> None:
    async def main() -> None:
        net = MemNet()
        server = await BulkServer(BulkServerOptions(host="10.0.0.1", port=5201)).start(net)
        opts = BulkClientOptions(host="10.0.0.1", port=5201, direction="send", seconds=1.0)
        result = await run_bulk(net, opts)
        assert result.verified and server.results[0].verified
        # At most a window per one-way delay: about 6.5 MB/s here, whatever the host's speed.
        assert 0 < result.bytes <= (1.0 / DELAY + 2) * (WINDOW + payload.PERIOD)
        assert result.streams[0].duration == pytest.approx(1.0 + 2 * DELAY, abs=3 * DELAY)
        server.close()
        await server.wait_closed()

    run(main(), timeout=60)
