"""Buffer autotuning (stack.tcp.autotune): on a long fat path a fixed 256 KB receive buffer caps
the transfer at one buffer per round trip; with `rcvbuf_max`/`sndbuf_max` the receiver's window
and the sender's queue grow with what the path carries, never past their maxima, and not at all
for a buffer the application fixed. Observed on the wire: the windows b advertises, the octets a
has in flight, the virtual time the transfer takes."""

from __future__ import annotations

import asyncio
import re

import pytest

from stack.config import TcpConfig
from stack.sim import LinkProfile
from stack.socket import AF_INET, SO_RCVBUF, SO_SNDBUF, SOL_SOCKET
from stack.trace import MemorySink
from tests.two_hosts import two_hosts

from .helpers import run_transfer

BUF = 256 * 1024
MAX = 4 * 1024 * 1024
SIZE = 12_000_000
LINK = LinkProfile(delay=0.020, rate=1e9)  # RTT 40 ms: 256 KB a round trip is 6.5 MB/s
AUTO = TcpConfig(msl=0.5, sndbuf=BUF, rcvbuf=BUF, rcvbuf_max=MAX, sndbuf_max=MAX)


def _transfer(config: TcpConfig) -> tuple[float, MemorySink, MemorySink]:
    """Seconds (virtual) for SIZE octets a -> b, checked intact; a's and b's traces."""
    pair = two_hosts(3, LINK, config=config, ipv6=False)
    res = run_transfer(pair, SIZE, 0, seed=3)
    assert res.got_ab == res.sent_ab
    return res.done_ab - res.start, pair.sink_a, pair.sink_b


def _largest_window(sink: MemorySink) -> int:
    """The largest window b advertised, in octets (its SYN-ACK says the shift)."""
    (synack,) = [e for e in sink.segments("out") if e.flags == "S."]
    shift = int(re.search(r"wscale (\d+)", synack.options).group(1))  # type: ignore[union-attr]
    return max(e.win << shift for e in sink.segments("out") if "S" not in e.flags)


def _largest_flight(sink: MemorySink) -> int:
    """The most octets a had sent and not yet seen acknowledged."""
    acked, most = 0, 0
    for e in sink.segments():
        if e.direction == "in" and "." in e.flags:
            acked = max(acked, e.ack)
        elif e.direction == "out" and e.len and acked:
            most = max(most, e.seq + e.len - acked)
    return most


@pytest.fixture(scope="module")
def fixed() -> tuple[float, MemorySink, MemorySink]:
    return _transfer(AUTO.with_(rcvbuf_max=None, sndbuf_max=None))


@pytest.fixture(scope="module")
def tuned() -> tuple[float, MemorySink, MemorySink]:
    return _transfer(AUTO)


Run = tuple[float, MemorySink, MemorySink]


def test_a_fixed_buffer_caps_a_long_path_at_one_buffer_per_round_trip(fixed: Run) -> None:
    seconds, sink_a, sink_b = fixed
    assert _largest_window(sink_b) <= BUF and _largest_flight(sink_a) <= BUF
    assert SIZE / seconds < BUF / (2 * LINK.delay)


def test_autotuned_buffers_grow_to_what_the_path_needs_and_no_further(
        fixed: tuple[float, MemorySink, MemorySink], tuned: tuple[float, MemorySink, MemorySink]) -> None:
    seconds, sink_a, sink_b = tuned
    window, flight = _largest_window(sink_b), _largest_flight(sink_a)
    print(f"\nfixed {SIZE / fixed[0] / 1e6:.1f} MB/s, tuned {SIZE / seconds / 1e6:.1f} MB/s; "
          f"window up to {window} octets, flight up to {flight}")
    assert 4 * BUF < window <= MAX
    assert 4 * BUF < flight <= MAX
    assert seconds * 3 < fixed[0]


def test_the_window_scale_offered_covers_the_most_the_buffer_may_grow_to(
        tuned: tuple[float, MemorySink, MemorySink]) -> None:
    for sink in tuned[1:]:
        (syn,) = [e for e in sink.segments("out") if e.flags in ("S", "S.")]
        assert "wscale 7" in syn.options  # 4 MB >> 6 is one more than 16 bits hold


def test_a_buffer_the_application_fixed_does_not_grow() -> None:
    _, sink_a, sink_b = _transfer(AUTO.with_(rcvbuf_locked=True, sndbuf_locked=True))
    assert _largest_window(sink_b) <= BUF and _largest_flight(sink_a) <= BUF


def test_so_rcvbuf_on_a_connected_socket_stops_the_growth_and_getsockopt_shows_it() -> None:
    """Once a round trip has grown both buffers, the receiver fixes its buffer with SO_RCVBUF:
    its window never passes that again, while the sender's SO_SNDBUF reports its grown queue."""
    pair = two_hosts(4, LINK, config=AUTO, ipv6=False)
    fixed_at = 300_000
    seen: dict[str, int] = {}

    async def main() -> None:
        srv = pair.stack_b.socket(AF_INET)
        srv.bind(("", 5001))
        srv.listen(1)
        cli = pair.stack_a.socket(AF_INET)
        await cli.aconnect(("10.0.0.2", 5001))
        child, _ = await srv.aaccept()
        send = asyncio.ensure_future(cli.asendall(bytes(SIZE)))
        got = 0
        while got < SIZE // 2:
            got += len(await child.arecv(1 << 20))
        seen["rcvbuf_grown"] = child.getsockopt(SOL_SOCKET, SO_RCVBUF)
        seen["sndbuf_grown"] = cli.getsockopt(SOL_SOCKET, SO_SNDBUF)
        child.setsockopt(SOL_SOCKET, SO_RCVBUF, fixed_at)
        seen["fixed_from"] = len(pair.sink_b.segments("out"))
        while got < SIZE:
            got += len(await child.arecv(1 << 20))
        await send
        seen["rcvbuf_after"] = child.getsockopt(SOL_SOCKET, SO_RCVBUF)
        cli.close()
        child.close()
        srv.close()

    pair.run(main())
    assert seen["rcvbuf_grown"] > 4 * BUF and seen["sndbuf_grown"] > 4 * BUF
    assert seen["rcvbuf_after"] == fixed_at
    # RFC 9293 3.8.6: the right edge offered before never moves left; past it, no window is
    # larger than the buffer the application set.
    shift = 7
    out = pair.sink_b.segments("out")
    edge = max(e.ack + (e.win << shift) for e in out[: seen["fixed_from"]] if "S" not in e.flags)
    later = [e for e in out[seen["fixed_from"]:] if e.ack >= edge]
    assert later and max(e.win << shift for e in later) < fixed_at + (1 << shift)  # rounded up to the scale


def test_the_receiver_times_the_round_trip_its_data_takes_not_the_handshakes() -> None:
    """On a short path (0.2 ms idle round trip) that the transfer's own queue lengthens, the
    receiver measures the round trip from the timestamps its data echoes (Linux's
    tcp_rcv_rtt_measure_ts), as loaded; timed by the handshake's idle sample, 256 KB a round
    trip would look like plenty and the buffer would never grow."""
    pair = two_hosts(3, LinkProfile(delay=0.0001, rate=1e9), config=AUTO, ipv6=False)
    res = run_transfer(pair, 3_000_000, 0, seed=3)
    assert res.got_ab == res.sent_ab
    assert _largest_window(pair.sink_b) > 4 * BUF
