"""Congestion window validation seen in the trace (RFC 7661, RFC 9438 5.8; stack.tcp.cwv): a
sender held back by the application or by the receive window does not grow cwnd past what it
uses, per segment and with TSO; CUBIC's curve resumes where it stopped after an idle period.
A cwnd-limited transfer grows as before (tests/reliability/test_congestion_control.py)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from stack.config import TcpConfig
from stack.host import GSO_MAX_PAYLOAD
from stack.sim import LinkProfile, Network
from stack.socket import Stack
from stack.trace import CongestionEvent, MemorySink, Trace

from .helpers import drop_data_packets

A, B = "10.0.0.1", "10.0.0.2"
PORT = 5001
DELAY = 0.025
RTT = 2 * DELAY
MSS = 1448  # 1500 - 40 - 12 (timestamps)
IW = 10 * MSS  # RFC 6928

App = Callable[[Stack, Stack], Awaitable[None]]


def run(app: App, cc: str, *, offload: bool = False, config_b: TcpConfig | None = None,
        drop: set[int] | None = None, seed: int = 1) -> MemorySink:
    """Run app(a's stack, b's stack) on a clean 50 ms, 1 Gbit/s path (that drops a's data
    packets numbered in `drop`); return a's trace."""
    sink = MemorySink()
    config = TcpConfig(congestion_control=cc, rcvbuf=4 << 20, sndbuf=4 << 20, msl=0.5)
    with Network(seed) as net:
        a = net.add_host("a", A, config=config, trace=Trace([sink]), offload=offload)
        b = net.add_host("b", B, config=config_b or config)
        net.connect("a", "b", LinkProfile(delay=DELAY, rate=1e9))
        if drop:
            drop_data_packets(net.duplex("a", "b").forward, drop)
        net.run(app(Stack(a.runtime), Stack(b.runtime)), timeout=3600)
    return sink


def acks(sink: MemorySink) -> list[CongestionEvent]:
    return [e for e in sink.of(CongestionEvent) if e.why == "ack"]


async def sink_server(sb: Stack, done: asyncio.Future[int]) -> asyncio.AbstractServer:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        while chunk := await reader.read(1 << 16):
            n += len(chunk)
        writer.close()
        done.set_result(n)

    return await sb.start_server(serve, port=PORT)


def paced(segments: int, rounds: int) -> App:
    """a writes `segments` full segments once a round trip, `rounds` times: application-limited."""

    async def app(sa: Stack, sb: Stack) -> None:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = await sink_server(sb, done)
        _reader, writer = await sa.open_connection(B, PORT)
        for _ in range(rounds):
            writer.write(bytes(segments * MSS))
            await writer.drain()
            await asyncio.sleep(RTT)
        writer.write_eof()
        assert await done == segments * MSS * rounds
        writer.close()
        server.close()

    return app


def request_response(size: int, rounds: int, think: float = 0.0) -> App:
    """b asks, a answers `size` octets, `rounds` times on one connection (a: the server); b
    waits `think` seconds after each answer."""

    async def app(sa: Stack, sb: Stack) -> None:
        served: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(100):
                writer.write(bytes(size))
                await writer.drain()
            writer.close()
            served.set_result(None)

        server = await sa.start_server(serve, port=PORT)
        reader, writer = await sb.open_connection(A, PORT)
        for _ in range(rounds):
            writer.write(b"GET")
            got = 0
            while got < size:
                got += len(await reader.read(1 << 16))
            await asyncio.sleep(think)
        writer.close()
        await served
        server.close()

    return app


@pytest.mark.parametrize("offload", [False, True], ids=["per-segment", "tso"])
@pytest.mark.parametrize("cc", ["newreno", "cubic"])
def test_application_limited_sender_grows_cwnd_to_twice_its_flight_only(cc: str, offload: bool) -> None:
    """Three segments a round trip for 200 round trips: with the third segment's delayed ACK,
    at most six are in flight, so slow start may take cwnd to twelve and no further
    (unvalidated, every ACK grew it: three segments a round trip, 610 in all)."""
    sink = run(paced(3, 200), cc, offload=offload)
    ev = acks(sink)
    assert len(ev) >= 3 * 200
    assert max(e.flight for e in ev) < 6 * MSS  # after an ACK: at least one segment less
    assert max(e.cwnd for e in ev) == 2 * 6 * MSS


@pytest.mark.parametrize("cc", ["newreno", "cubic"])
def test_request_response_server_grows_cwnd_to_twice_an_answer_only(cc: str) -> None:
    """Six-segment answers to 100 requests: slow start takes cwnd to twice the answer and no
    further (unvalidated: six segments more per answer, 610 in all)."""
    sink = run(request_response(6 * MSS, 100), cc)
    ev = acks(sink)
    assert len(ev) >= 3 * 100
    assert max(e.cwnd for e in ev) == 2 * 6 * MSS


@pytest.mark.parametrize("offload", [False, True], ids=["per-segment", "tso"])
@pytest.mark.parametrize("cc", ["newreno", "cubic"])
def test_receive_window_limited_bulk_grows_to_twice_the_flight(cc: str, offload: bool) -> None:
    """The receiver offers 64 KB: slow start stops once cwnd reaches twice what is in flight
    (RFC 7661's non-validated phase; Linux tcp_is_cwnd_limited), plus the last ACK's increase."""
    rcvbuf = 64 * 1024
    config_b = TcpConfig(congestion_control=cc, rcvbuf=rcvbuf, sndbuf=4 << 20, msl=0.5)

    async def app(sa: Stack, sb: Stack) -> None:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = await sink_server(sb, done)
        _reader, writer = await sa.open_connection(B, PORT)
        writer.write(bytes(4_000_000))
        writer.write_eof()
        await writer.drain()
        assert await done == 4_000_000
        writer.close()
        server.close()

    sink = run(app, cc, offload=offload, config_b=config_b)
    ev = acks(sink)
    top = max(e.cwnd for e in ev)
    flight = max(e.flight for e in ev)  # after an ACK: what the window held, less what it freed
    print(f"\n{cc}: most in flight {flight} octets, cwnd at most {top} (rcvbuf {rcvbuf})")
    assert flight <= rcvbuf
    assert 2 * flight <= top <= 2 * rcvbuf + abc_limit(offload)


def abc_limit(offload: bool) -> int:
    """The most one ACK may add in slow start: L*SMSS (RFC 3465), L = a TSO train with TSO."""
    return (GSO_MAX_PAYLOAD // MSS if offload else 2) * MSS  # as stack.tcp.tcb sets cc.abc_limit



def bulk_gap_bulk(gap: str, resumed: list[float]) -> App:
    """a sends 3 MB (the link drops one segment of it: congestion avoidance follows), then for
    10 s is idle or writes three segments a round trip, then sends 3 MB more; `resumed` gets
    the time the second bulk write began."""

    async def app(sa: Stack, sb: Stack) -> None:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = await sink_server(sb, done)
        _reader, writer = await sa.open_connection(B, PORT)
        writer.write(bytes(3_000_000))
        await writer.drain()
        await asyncio.sleep(1.0)  # all acknowledged
        for _ in range(200):
            if gap == "paced":
                writer.write(bytes(3 * MSS))
                await writer.drain()
            await asyncio.sleep(RTT)
        resumed.append(asyncio.get_running_loop().time())
        writer.write(bytes(3_000_000))
        writer.write_eof()
        await writer.drain()
        await done
        writer.close()
        server.close()

    return app


@pytest.mark.parametrize("gap", ["idle", "paced"])
def test_cubic_resumes_its_curve_after_an_unused_period(gap: str) -> None:
    """RFC 9438 4.2/5.8: t leaves out the 10 s the window went unused, so the curve goes on
    from where it stopped, a few segments a round trip here; counting them, W_cubic(t) was far
    above cwnd and cwnd grew by a quarter in the first round trip, up to W_max at once."""
    resumed: list[float] = []
    # b acknowledges a lone last segment within 40 ms (Linux's delayed ACK): at 200 ms, its ACK
    # would come after our 200 ms RTO, and the timeout would restart slow start.
    config_b = TcpConfig(congestion_control="cubic", rcvbuf=4 << 20, delack_timeout=0.04)
    sink = run(bulk_gap_bulk(gap, resumed), "cubic", drop={400}, config_b=config_b)
    ev = acks(sink)
    t = resumed[0]
    before = [e.cwnd for e in ev if e.time < t]
    after = per_rtt(ev, t, 6)
    print(f"\n{gap}: cwnd before {before[-1] // MSS}, per RTT after: {[c // MSS for c in after]}")
    assert any(e.why == "loss" for e in sink.of(CongestionEvent) if e.time < t)
    assert not any(e.why == "rto" for e in sink.of(CongestionEvent))
    assert after[-1] > before[-1]  # growing again
    assert after[2] - before[-1] <= 3 * 2 * MSS  # at most a few segments a round trip


def per_rtt(events: list[CongestionEvent], t0: float, rounds: int) -> list[int]:
    """cwnd at the end of each of the `rounds` round trips after t0."""
    return [max((e.cwnd for e in events if t0 < e.time <= t0 + (k + 1) * RTT), default=0)
            for k in range(rounds)]


def test_cubic_does_not_count_idle_time_between_answers() -> None:
    """Answers of 600 segments, each using the whole window, 5 s apart: the window goes unused
    from the ACK that leaves nothing in flight until the next answer (Linux shifts the epoch by
    such idle time, bictcp_cwnd_event CA_EVENT_TX_START); counting it, cwnd reached 846."""
    config_b = TcpConfig(congestion_control="cubic", rcvbuf=4 << 20, delack_timeout=0.04)
    sink = run(request_response(600 * MSS, 8, think=5.0), "cubic", drop={300}, config_b=config_b)
    ev = sink.of(CongestionEvent)
    assert [e.why for e in ev if e.why != "ack"] == ["loss", "recovery_exit"]
    exit_ = next(e for e in ev if e.why == "recovery_exit")
    answers: list[int] = []  # cwnd at the end of each answer after the loss episode's
    for prev, e in itertools.pairwise(ev):
        if e.time - prev.time > 1.0 and prev.time > exit_.time:
            answers.append(prev.cwnd)
    answers.append(ev[-1].cwnd)
    assert len(answers) == 7
    print(f"\ncwnd after each answer, segments: {[c // MSS for c in answers]}")
    assert all(0 <= b - a <= 8 * MSS for a, b in itertools.pairwise(answers))
