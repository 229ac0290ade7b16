"""Bulk transfer on the real stack: both directions at once, and flow control end to end."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from lab.node.apps import payload
from lab.node.apps.bulk import BulkClientOptions, BulkResult, BulkServer, BulkServerOptions, run_client
from lab.node.apps.net import close_writer
from stack.config import TcpConfig
from stack.streams import HIGH_WATER
from stack.trace import TimerEvent

from .helpers import PROFILES, make_lab

PORT = 5201
BOTH = pytest.mark.parametrize("profile", ["clean", "lossy"])


def _stats(writer: asyncio.StreamWriter) -> dict[str, object]:
    conn = writer.get_extra_info("tcp_connection")
    return dict(conn.info())


@BOTH
def test_bulk_both_directions_at_once(profile: str) -> None:
    lab = make_lab(seed=21, profile=PROFILES[profile])
    up = BulkClientOptions(host="server", port=PORT, direction="send", bytes=3_000_001, streams=2, seed=10)
    down = BulkClientOptions(host="server", port=PORT, direction="recv", bytes=2_999_999, streams=2, seed=20)

    async def scenario() -> tuple[BulkResult, BulkResult, BulkServer]:
        server = await BulkServer(BulkServerOptions(port=PORT), conn_stats=_stats).start(lab.stack_b)
        sent, received = await asyncio.gather(
            run_client(lab.stack_a, up, conn_stats=_stats),
            run_client(lab.stack_a, down, conn_stats=_stats),
        )
        await lab.settle()
        server.close()
        await server.wait_closed()
        return sent, received, server

    with lab.net:
        sent, received, server = lab.run(scenario(), timeout=900)

    for result, options in ((sent, up), (received, down)):
        assert result.verified, result
        assert result.bytes == options.bytes
        for i, stream in enumerate(result.streams):
            # Each stream carries its share of the payload stream seed+i, checked by digest.
            assert stream.sha256 == payload.sha256(stream.bytes, options.seed + i), stream
            # The connection's own counters agree (the opening line and the reply come on top).
            assert stream.stats is not None
            counted = stream.stats["bytes_acked" if stream.role == "sender" else "bytes_received"]
            assert isinstance(counted, int) and stream.bytes <= counted <= stream.bytes + 200, stream
    assert [s.bytes for s in sent.streams] == [1_500_001, 1_500_000]
    assert [s.bytes for s in received.streams] == [1_500_000, 1_499_999]
    # The server verified what it received and sent what the client verified: four streams.
    assert sorted((r.role, r.bytes, r.verified) for r in server.results) == [
        ("receiver", 1_500_000, True), ("receiver", 1_500_001, True),
        ("sender", 1_499_999, True), ("sender", 1_500_000, True),
    ]  # fmt: skip
    # The four transfers overlapped in time: data flowed both ways over the link at once.
    client_out = [s.time for s in lab.sink_a.segments("out") if s.len]
    server_out = [s.time for s in lab.sink_b.segments("out") if s.len]
    assert max(client_out[0], server_out[0]) < min(client_out[-1], server_out[-1])
    if profile == "lossy":
        lab.assert_impaired()
        retransmitted = sum(int(str(r.stats["retransmits"])) for r in server.results if r.stats)
        assert retransmitted > 0


SLOW_READ = 1024  # bytes per read
SLOW_PERIOD = 0.010  # virtual seconds between reads: 100 kB/s


@BOTH
def test_slow_reader_closes_the_window_and_drain_waits(profile: str) -> None:
    n = 2_000_000
    data = payload.payload(n, seed=30)
    lab = make_lab(seed=31, profile=PROFILES[profile])
    got = hashlib.sha256()
    received = 0

    async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        while chunk := await reader.read(SLOW_READ):
            got.update(chunk)
            received += len(chunk)
            await asyncio.sleep(SLOW_PERIOD)
        await close_writer(writer)

    async def scenario() -> list[float]:
        server = await lab.stack_b.start_server(slow_reader, "0.0.0.0", PORT)
        reader, writer = await lab.stack_a.open_connection("server", PORT)
        loop = asyncio.get_running_loop()
        waits = []
        for pos in range(0, n, 65536):
            writer.write(data[pos : pos + 65536])
            t = loop.time()
            await writer.drain()
            waits.append(loop.time() - t)
        writer.write_eof()
        assert await reader.read() == b""  # the server closes once it has read everything
        await close_writer(writer)
        await lab.settle()
        server.close()
        await server.wait_closed()
        return waits

    with lab.net:
        waits = lab.run(scenario(), timeout=900)
        finished = lab.net.now

    assert (received, got.hexdigest()) == (n, hashlib.sha256(data).hexdigest())
    # Reading 1 kB per 10 ms paces the whole transfer: about n / 100 kB/s of virtual time.
    assert finished >= n / SLOW_READ * SLOW_PERIOD
    # The sender's drain() waited for the reader, not for the network (a 10 ms round trip).
    assert max(waits) > 0.5, waits
    # All but what the buffers hold (send and receive buffers, the StreamReader's 2 * limit and
    # the transport's high-water mark: about 770 kB) had to wait for the reader's pace.
    config = TcpConfig()
    buffered = config.sndbuf + config.rcvbuf + 2 * 2**16 + HIGH_WATER
    assert sum(waits) > 0.9 * (n - buffered) / SLOW_READ * SLOW_PERIOD, sum(waits)
    # The receiver advertised a zero window, then opened it again as the reader caught up.
    windows = [s.win for s in lab.sink_b.segments("out") if "S" not in s.flags]
    assert 0 in windows
    assert windows[-1] > 0 or any(w > 0 for w in windows[windows.index(0) :])
    # The sender waited it out with its persist timer, probing the closed window.
    assert any(t.timer == "persist" for t in lab.sink_a.of(TimerEvent))
    lab.assert_impaired()
