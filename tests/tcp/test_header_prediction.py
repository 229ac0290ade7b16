"""Header prediction (stack.tcp.connection._predicted) changes nothing TCP does: the same segments,
states, drops and congestion events with it on and off, over a lossy, reordering, duplicating
link and for each profile; and it does take the segments of a clean bulk transfer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from stack.config import TcpConfig, freebsd_profile, linux_profile
from stack.sim.link import LinkProfile
from stack.tcp.counters import ConnStats
from tests.trace_compare import record_lossy
from tests.two_hosts import B_ADDR, two_hosts

PROFILES: dict[str, Callable[..., TcpConfig]] = {
    "default": lambda **kw: TcpConfig().with_(**kw),
    "linux": linux_profile,
    "freebsd": freebsd_profile,
}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_a_lossy_two_way_transfer_is_the_same_with_and_without_it(
    profile: str, seed: int, tmp_path: Path
) -> None:
    on, off = tmp_path / "on.jsonl", tmp_path / "off.jsonl"
    record_lossy(on, seed=seed, nbytes=80_000, config=PROFILES[profile](header_prediction=True))
    record_lossy(off, seed=seed, nbytes=80_000, config=PROFILES[profile](header_prediction=False))
    assert on.read_text().count("SegmentEvent") > 100
    assert on.read_bytes() == off.read_bytes()


def _bulk(config: TcpConfig, nbytes: int) -> tuple[ConnStats, ConnStats]:
    """A clean one-way transfer of nbytes; the sender's and the receiver's counters."""
    pair = two_hosts(3, LinkProfile(delay=0.002), config=config, trace=False)
    stats: list[ConnStats] = []

    async def main() -> None:
        done = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stats.append(writer.get_extra_info("tcp_connection").stats)
            assert len(await reader.read()) == nbytes
            writer.close()
            done.set()

        server = await pair.stack_b.start_server(serve, port=9)
        _reader, writer = await pair.stack_a.open_connection(B_ADDR, 9)
        stats.insert(0, writer.get_extra_info("tcp_connection").stats)
        writer.write(bytes(nbytes))
        writer.write_eof()
        await writer.drain()
        await done.wait()
        writer.close()
        server.close()

    pair.net.run(main(), timeout=600)
    return stats[0], stats[1]


def test_it_takes_the_data_and_the_acks_of_a_clean_bulk_transfer() -> None:
    sender, receiver = _bulk(TcpConfig(), 2_000_000)
    assert receiver.bytes_received == 2_000_000
    assert receiver.predicted >= 0.9 * receiver.segs_in  # in-order data
    assert sender.predicted >= 0.8 * sender.segs_in  # ACKs of new data


def test_off_it_takes_nothing() -> None:
    sender, receiver = _bulk(TcpConfig().with_(header_prediction=False), 200_000)
    assert receiver.bytes_received == 200_000
    assert sender.predicted == receiver.predicted == 0


def _ping_pong(config: TcpConfig, rounds: int) -> tuple[ConnStats, ConnStats, list[object], list[object]]:
    """Request and reply, `rounds` times on one connection (every data segment after the first
    acknowledges the other side's last one); both ends' counters and traces."""
    pair = two_hosts(4, LinkProfile(delay=0.002), config=config)
    stats: list[ConnStats] = []

    async def main() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stats.append(writer.get_extra_info("tcp_connection").stats)
            while request := await reader.read(100):
                writer.write(request.upper() * 3)
            writer.close()

        server = await pair.stack_b.start_server(serve, port=9)
        reader, writer = await pair.stack_a.open_connection(B_ADDR, 9)
        stats.insert(0, writer.get_extra_info("tcp_connection").stats)
        for i in range(rounds):
            writer.write(b"request %03d" % i)
            assert await reader.readexactly(33) == (b"REQUEST %03d" % i) * 3
        writer.close()
        await asyncio.sleep(1.0)
        server.close()

    pair.net.run(main(), timeout=600)
    return stats[0], stats[1], list(pair.sink_a.events), list(pair.sink_b.events)


def test_it_takes_data_that_acknowledges_the_last_reply_with_the_same_trace() -> None:
    client, server, *on = _ping_pong(TcpConfig(), 50)
    assert server.predicted >= 45 and client.predicted >= 45  # requests and replies alike
    *_, trace_a, trace_b = _ping_pong(TcpConfig().with_(header_prediction=False), 50)
    assert on == [trace_a, trace_b]
