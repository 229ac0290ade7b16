"""Exact schedules in virtual time, by single-segment injection into one Host (tests speak for
the peer): RTO backoff for SYN and data (RFC 6298), fast retransmit and limited transmit
(RFC 5681, RFC 3042), persist timer (RFC 9293 3.8.6.1), keepalive (RFC 9293 3.8.4), delayed ACK
(RFC 9293 3.8.6.3), Nagle (RFC 896), TIME_WAIT (2*MSL)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from stack.config import TcpConfig
from stack.sim import LinkProfile
from stack.tcp.connection import TcpConnection
from stack.tcp.state import State
from stack.trace import Retransmit, StateChange, TimerEvent
from stack.wire.tcp import Flags
from tests.two_hosts import two_hosts

from .helpers import PORT, Out, Rig, data_segments, peer_addr, pure_acks

# With Linux's 200 ms RTO floor, which the timelines below were written for: the default's is
# RFC 6298's 1 s (test_the_default_rto_floor_outlasts_a_delayed_ack).
NO_OPTS = TcpConfig(timestamps=False, sack=False, window_scaling=False, rto_min=0.2)

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


def rel(conn_iss: int, outs: list[Out]) -> list[tuple[float, int, int, str]]:
    """(time, relative seq, payload length, flags) of each segment, for readable assertions."""
    from stack.wire.tcp import flags_str

    return [(round(o.time, 6), (o.seg.seq - conn_iss) % 2**32, len(o.seg.payload), flags_str(o.seg.flags))
            for o in outs]


# ---------------------------------------------------------------- retransmission timer


def test_syn_backoff_1_2_4_8_then_timeout_error() -> None:
    rig = Rig(NO_OPTS.with_(syn_retries=6))
    conn = rig.host.connect(peer_addr(), 80, 0.0)
    out = rig.app(conn) + rig.advance(1000.0)
    syns = [o.time for o in rig.sent if o.seg.flags == Flags.SYN]
    # RFC 6298 2.1 and 5.5: initial RTO 1 s, doubled on each expiry; 1 + 6 retries.
    assert syns == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0], syns
    closed = [e for e in rig.sink.of(StateChange) if e.new == "CLOSED"]
    assert [(e.time, e.cause) for e in closed] == [(127.0, "timer:syn_retries")]
    assert isinstance(conn.error, TimeoutError)
    assert not out or all(o.seg.flags == Flags.SYN for o in out)


def test_syn_retries_setting_changes_the_give_up_time() -> None:
    rig = Rig(NO_OPTS.with_(syn_retries=2))
    conn = rig.host.connect(peer_addr(), 80, 0.0)
    rig.app(conn)
    rig.advance(100.0)
    assert [o.time for o in rig.sent] == [0.0, 1.0, 3.0]
    assert conn.state is State.CLOSED and isinstance(conn.error, TimeoutError)
    assert [e.time for e in rig.sink.of(StateChange) if e.new == "CLOSED"] == [7.0]


def expected_rto_times(start: float, rto: float, rto_max: float, n: int) -> list[float]:
    times, t = [], start
    for k in range(n):
        t += min(rto * 2**k, rto_max)
        times.append(round(t, 6))
    return times


def test_data_rto_from_srtt_rttvar_doubling_capped_then_abort() -> None:
    cfg = NO_OPTS.with_(rto_max=10.0, data_retries=8)
    rig = Rig(cfg)
    conn = rig.open(at=0.1)  # one sample R = 0.1: SRTT 0.1, RTTVAR 0.05, RTO = 0.1 + 4*0.05
    assert conn.info()["rto"] == pytest.approx(0.3)
    rig.advance(1.0)
    conn.send(b"a" * 500, rig.now)
    first = rig.app(conn)
    assert rel(conn.iss, first) == [(1.0, 1, 500, "P.")]
    rig.advance(1000.0)
    rtx = [round(e.time, 6) for e in rig.sink.of(Retransmit)]
    # 0.3, 0.6, 1.2, 2.4, 4.8, then the 10 s cap; 8 retries, the 9th expiry aborts.
    sched = expected_rto_times(1.0, 0.3, 10.0, 9)
    assert rtx == sched[:8], rtx
    assert all(e.why == "rto" for e in rig.sink.of(Retransmit))
    closed = [e for e in rig.sink.of(StateChange) if e.new == "CLOSED"]
    assert [(round(e.time, 6), e.cause) for e in closed] == [(sched[8], "timer:retries")]
    assert isinstance(conn.error, TimeoutError)
    with pytest.raises(TimeoutError):
        conn.recv(10, rig.now)


@pytest.mark.parametrize(("rtt", "rto_min", "first"), [
    (0.01, 0.2, 0.2),  # 0.01 + 4*0.005 = 0.03: raised to the 200 ms minimum (Linux)
    (0.01, 0.5, 0.5),  # the minimum is configurable
    (0.5, 0.2, 1.5),  # 0.5 + 4*0.25
])
def test_first_data_rto_is_srtt_plus_4_rttvar_at_least_rto_min(
    rtt: float, rto_min: float, first: float
) -> None:
    rig = Rig(NO_OPTS.with_(rto_min=rto_min))
    conn = rig.open(at=rtt)
    rig.advance(2.0)
    conn.send(b"a" * 100, rig.now)
    rig.app(conn)
    rig.advance(2.0 + first + 1e-3)
    rtx = rig.sink.of(Retransmit)
    assert [round(e.time - 2.0, 6) for e in rtx] == [first]


def test_rto_max_default_is_120s() -> None:
    rig = Rig(NO_OPTS)
    conn = rig.open(at=0.1)
    conn.send(b"a" * 100, rig.now)
    rig.app(conn)
    rig.advance(2000.0)
    times = [e.time for e in rig.sink.of(Retransmit)]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert max(gaps) == 120.0 and gaps.count(120.0) >= 3, gaps
    assert gaps[:8] == [0.6, 1.2, 2.4, 4.8, 9.6, 19.2, 38.4, 76.8]


def test_karn_no_rtt_sample_from_a_retransmitted_segment() -> None:
    rig = Rig(NO_OPTS)
    conn = rig.open(at=0.1)
    conn.send(b"a" * 100, rig.now)
    rig.app(conn)
    rig.advance(0.45)  # RTO at 0.4: retransmitted
    srtt = conn.rtt.srtt
    rig.inject(rig.seg(conn), at=2.0)  # an ACK 1.9 s after the first send: ambiguous
    assert conn.rtt.srtt == srtt  # no sample taken (RFC 6298 section 3)


# ---------------------------------------------------------------- fast retransmit, limited transmit


def _sender_with_ten_in_flight(limited_transmit: bool = True) -> tuple[Rig, TcpConnection]:
    rig = Rig(NO_OPTS.with_(limited_transmit=limited_transmit))
    conn = rig.open(mss=1000, window=65535)
    conn.send(b"d" * 14000, rig.now)
    out = rig.app(conn)
    assert len(data_segments(out)) == 10  # initial window: 10 segments (RFC 6928)
    return rig, conn


def test_fast_retransmit_after_exactly_three_dupacks_with_limited_transmit() -> None:
    rig, conn = _sender_with_ten_in_flight()
    c = conn
    una = c.snd_una
    dup = rig.seg(c, ack=una)
    out1 = rig.inject(dup, at=0.2)
    # RFC 3042: the first two dupacks each send one new segment...
    assert rel(c.iss, out1) == [(0.2, 10001, 1000, ".")]
    out2 = rig.inject(dup, at=0.21)
    assert rel(c.iss, out2) == [(0.21, 11001, 1000, ".")]
    assert rig.sink.of(Retransmit) == []  # ...and two are not enough to retransmit
    out3 = rig.inject(dup, at=0.22)
    # RFC 5681 3.2: the third dupack retransmits the first unacknowledged segment.
    assert rel(c.iss, out3)[0] == (0.22, 1, 1000, ".")
    rtx = rig.sink.of(Retransmit)
    assert [(e.seq - c.iss, e.why) for e in rtx] == [(1, "fast")]
    assert c.stats.fast_retransmits == 1


def test_two_dupacks_alone_do_not_retransmit_before_the_rto() -> None:
    rig, conn = _sender_with_ten_in_flight(limited_transmit=False)
    dup = rig.seg(conn, ack=conn.snd_una)
    assert rig.inject(dup, at=0.2) == []  # limited transmit off: nothing at all
    assert rig.inject(dup, at=0.21) == []
    rig.advance(0.39)
    assert rig.sink.of(Retransmit) == []
    rig.advance(0.41)  # RTO 0.3 after the send at 0.1
    assert [(round(e.time, 6), e.why) for e in rig.sink.of(Retransmit)] == [(0.4, "rto")]


def test_window_change_is_not_a_dupack() -> None:
    rig, conn = _sender_with_ten_in_flight(limited_transmit=False)
    una = conn.snd_una
    for i, w in enumerate((65000, 64000, 63000)):
        rig.inject(rig.seg(conn, ack=una, window=w), at=0.2 + i / 100)
    assert rig.sink.of(Retransmit) == []


# ---------------------------------------------------------------- persist timer


def _zero_window(rig: Rig, data: int = 5000, close: bool = False) -> TcpConnection:
    conn = rig.open(mss=1000, window=3000)
    conn.send(b"p" * data, rig.now)
    rig.app(conn)
    if close:
        conn.close(rig.now)
        rig.app(conn)
    rig.inject(rig.seg(conn, window=0), at=0.2)  # everything ACKed, window closed
    return conn


def test_persist_probes_back_off_to_the_cap_and_answered_probes_keep_the_connection() -> None:
    rig = Rig(NO_OPTS.with_(persist_max=5.0, data_retries=3))
    conn = _zero_window(rig)
    c = conn
    probes: list[Out] = []
    for _ in range(10):  # the peer answers every probe, still with a zero window
        d = rig.host.deadline()
        assert d is not None
        out = rig.advance(d)
        probes += out
        rig.inject(rig.seg(c, ack=c.snd_una, window=0), at=d + 0.05)
    # Base max(RTO, persist_min): two RTT samples of 0.1 s give RTO 0.1 + 4*0.0375 = 0.25 s;
    # doubled per probe, capped at persist_max.
    assert [round(o.time, 6) for o in probes] == expected_rto_times(0.2, 0.25, 5.0, 10)
    # Each probe is one octet at SND.UNA (the same octet each time: it was not accepted).
    assert {(o.seg.seq - c.iss, len(o.seg.payload)) for o in probes} == {(3001, 1)}
    assert c.state is State.ESTABLISHED and c.error is None
    assert rig.sink.of(Retransmit) == []  # answers to probes are not duplicate ACKs
    # The window opens: sending resumes from SND.UNA, the probe octet included.
    rig.advance(40.0)
    out = rig.inject(rig.seg(c, ack=c.snd_una, window=3000), at=40.0)
    assert rel(c.iss, data_segments(out))[0][1] == 3001
    assert sum(len(o.seg.payload) for o in data_segments(out)) == 2000


def test_persist_unanswered_probes_abort_with_timeout_error() -> None:
    rig = Rig(NO_OPTS.with_(persist_max=5.0, data_retries=3))
    conn = _zero_window(rig)
    rig.advance(100.0)
    assert [e.cause for e in rig.sink.of(StateChange) if e.new == "CLOSED"] == ["timer:persist_retries"]
    assert isinstance(conn.error, TimeoutError)


def test_fin_pending_across_a_zero_window_is_not_lost() -> None:
    rig = Rig(NO_OPTS)
    conn = _zero_window(rig, data=3000, close=True)  # all data ACKed; only the FIN waits
    c = conn
    probes = rig.advance(2.0)
    assert probes and all(o.seg.flags & Flags.FIN for o in probes)
    # The window opens without the FIN having been taken: the FIN goes again at once.
    out = rig.inject(rig.seg(c, ack=c.snd_una, window=3000), at=2.5)
    assert [o.seg.flags & Flags.FIN for o in out] == [Flags.FIN]
    rig.inject(rig.seg(c, ack=c.snd_max), at=2.6)
    assert c.state is State.FIN_WAIT_2


def test_data_pending_across_a_zero_window_resumes_at_snd_una() -> None:
    rig = Rig(NO_OPTS)
    conn = _zero_window(rig, data=6000, close=True)
    c = conn
    rig.advance(1.0)
    out = rig.inject(rig.seg(c, ack=c.snd_una, window=4000), at=1.5)
    segs = rel(c.iss, out)
    assert segs[0][1] == 3001 and sum(s[2] for s in segs) == 3000
    assert "F" in segs[-1][3]  # the FIN rides on the last segment


def test_window_too_small_for_sws_and_lost_update_does_not_stall() -> None:
    """A window smaller than SWS avoidance will use, and no data in flight: the persist
    (override) timer sends what fits, so a lost window update cannot stall the sender."""
    rig = Rig(NO_OPTS)
    conn = rig.open(mss=1000, window=3000)
    conn.send(b"s" * 5000, rig.now)
    rig.app(conn)
    rig.inject(rig.seg(conn, window=300), at=0.2)  # 300 < MSS and < max window / 2: SWS holds
    out = rig.advance(5.0)
    assert data_segments(out) and len(data_segments(out)[0].seg.payload) == 300


# ---------------------------------------------------------------- receiver: window update


def test_window_update_after_the_app_reads() -> None:
    rig = Rig(NO_OPTS.with_(rcvbuf=4000))
    conn = rig.open(mss=1000)
    outs: list[Out] = []
    for i in range(4):
        outs += rig.inject(rig.seg(conn, payload=b"r" * 1000), at=1.0 + i / 1000)
    assert outs[-1].seg.window == 0 and outs[-1].seg.ack == conn.rcv_nxt
    conn.recv(500, rig.now)  # less than one MSS freed: no update (receiver SWS avoidance)
    assert rig.app(conn) == []
    conn.recv(4000, 2.0)
    out = rig.app(conn)
    assert [(o.seg.window, len(o.seg.payload)) for o in out] == [(4000, 0)]


# ---------------------------------------------------------------- keepalive


def test_keepalive_dead_peer_probe_times_then_timeout_error() -> None:
    rig = Rig(NO_OPTS.with_(keepalive_idle=10.0, keepalive_interval=2.0, keepalive_count=3))
    conn = rig.open(at=0.1)
    conn.set_keepalive(True, rig.now)
    rig.app(conn)
    out = rig.advance(100.0)
    probes = [o for o in out if not o.seg.payload and o.seg.flags == Flags.ACK]
    assert [round(o.time, 6) for o in probes] == [10.1, 12.1, 14.1]
    # RFC 9293 3.8.4: SEG.SEQ = SND.NXT - 1, no data.
    assert {(o.seg.seq - conn.iss) % 2**32 for o in probes} == {0}
    closed = [e for e in rig.sink.of(StateChange) if e.new == "CLOSED"]
    assert [(round(e.time, 6), e.cause) for e in closed] == [(16.1, "timer:keepalive")]
    assert isinstance(conn.error, TimeoutError)


def test_keepalive_live_peer_answers_and_the_connection_stays() -> None:
    rig = Rig(NO_OPTS.with_(keepalive_idle=10.0, keepalive_interval=2.0, keepalive_count=3))
    conn = rig.open(at=0.1)
    conn.set_keepalive(True, rig.now)
    rig.app(conn)
    times = []
    for _ in range(5):
        d = rig.host.deadline()
        assert d is not None
        rig.advance(d)
        times.append(round(d, 6))
        rig.inject(rig.seg(conn), at=d + 0.05)  # the peer's ACK answers the probe
    assert times == [10.1, 20.15, 30.2, 40.25, 50.3]
    assert conn.state is State.ESTABLISHED and conn.stats.keepalive_probes == 5


# ---------------------------------------------------------------- delayed ACK


def test_delayed_ack_single_segment_waits_the_timeout() -> None:
    rig = Rig(NO_OPTS)
    conn = rig.open(mss=1000)
    assert rig.inject(rig.seg(conn, payload=b"x" * 1000), at=1.0) == []
    out = rig.advance(2.0)
    assert [(round(o.time, 6), o.seg.ack == conn.rcv_nxt) for o in out] == [(1.2, True)]
    assert [e.timer for e in rig.sink.of(TimerEvent) if e.timer == "delack"] == ["delack"]


def test_delayed_ack_timeout_is_configurable() -> None:
    rig = Rig(NO_OPTS.with_(delack_timeout=0.05))
    conn = rig.open(mss=1000)
    rig.inject(rig.seg(conn, payload=b"x" * 100), at=1.0)
    assert [round(o.time, 6) for o in rig.advance(2.0)] == [1.05]


def test_every_second_full_sized_segment_is_acked_at_once() -> None:
    rig = Rig(NO_OPTS)
    conn = rig.open(mss=1000)
    acks = []
    for i in range(5):
        acks += [(i, (o.seg.ack - conn.irs) % 2**32) for o in rig.inject(rig.seg(conn, payload=b"y" * 1000),
                                                                          at=1.0 + i / 1000)]
    assert acks == [(1, 2001), (3, 4001)]
    out = rig.advance(3.0)
    assert [(round(o.time, 6), (o.seg.ack - conn.irs) % 2**32) for o in out] == [(1.204, 5001)]


def test_out_of_order_and_hole_filling_are_acked_at_once() -> None:
    rig = Rig(NO_OPTS)
    conn = rig.open(mss=1000)
    nxt = conn.rcv_nxt
    out = rig.inject(rig.seg(conn, seq=(nxt + 1000) % 2**32, payload=b"z" * 1000), at=1.0)
    assert [(o.time, o.seg.ack) for o in pure_acks(out)] == [(1.0, nxt)]  # duplicate ACK at once
    out = rig.inject(rig.seg(conn, seq=nxt, payload=b"z" * 1000), at=1.01)
    assert [(o.time, o.seg.ack) for o in pure_acks(out)] == [(1.01, (nxt + 2000) % 2**32)]


def test_ack_rides_on_data() -> None:
    rig = Rig(NO_OPTS)
    conn = rig.open(mss=1000)
    rig.inject(rig.seg(conn, payload=b"q" * 1000), at=1.0)
    rig.advance(1.05)
    conn.send(b"answer", rig.now)
    out = rig.app(conn)
    assert [(len(o.seg.payload), o.seg.ack == conn.rcv_nxt) for o in out] == [(6, True)]
    assert pure_acks(rig.advance(2.0)) == []  # no separate delayed ACK later


# ---------------------------------------------------------------- Nagle


def test_nagle_holds_small_segments_while_one_is_unacked() -> None:
    rig = Rig(NO_OPTS)
    conn = rig.open(mss=1000)
    sizes = []
    for _ in range(3):
        conn.send(b"n" * 100, rig.now)
        sizes += [len(o.seg.payload) for o in rig.app(conn)]
    assert sizes == [100]  # the 2nd and 3rd writes wait for the ACK
    out = rig.inject(rig.seg(conn), at=0.3)
    assert [len(o.seg.payload) for o in out] == [200]


def test_nodelay_sends_each_write_at_once() -> None:
    rig = Rig(NO_OPTS)
    conn = rig.open(mss=1000)
    conn.nodelay = True  # what setsockopt(TCP_NODELAY, 1) sets
    sizes = []
    for _ in range(3):
        conn.send(b"n" * 100, rig.now)
        sizes += [len(o.seg.payload) for o in rig.app(conn)]
    assert sizes == [100, 100, 100]


def test_nagle_is_on_by_default_and_config_can_turn_it_off() -> None:
    assert TcpConfig().nagle is True
    assert Rig(NO_OPTS.with_(nagle=False)).open().nodelay is True


# ---------------------------------------------------------------- TIME_WAIT


def test_time_wait_lasts_two_msl_and_a_retransmitted_fin_restarts_it() -> None:
    rig = Rig(NO_OPTS.with_(msl=2.0))
    conn = rig.open()
    conn.close(1.0)
    rig.advance(1.0)
    rig.app(conn)
    rig.inject(rig.seg(conn, Flags.FIN | Flags.ACK), at=1.1)
    assert conn.state is State.TIME_WAIT
    fin_seq = (conn.rcv_nxt - 1) % 2**32
    out = rig.inject(rig.seg(conn, Flags.FIN | Flags.ACK, seq=fin_seq), at=3.0)  # our ACK was lost
    assert [o.seg.ack for o in out] == [conn.rcv_nxt]
    rig.advance(100.0)
    closed = [(round(e.time, 6), e.cause) for e in rig.sink.of(StateChange) if e.new == "CLOSED"]
    assert closed == [(7.0, "timer:time_wait")]


def test_time_wait_expiry_exactly_two_msl() -> None:
    rig = Rig(NO_OPTS.with_(msl=0.5))
    conn = rig.open()
    conn.close(1.0)
    rig.advance(1.0)
    rig.app(conn)
    rig.inject(rig.seg(conn, Flags.FIN | Flags.ACK), at=1.25)
    rig.advance(10.0)
    closed = [(round(e.time, 6), e.old) for e in rig.sink.of(StateChange) if e.new == "CLOSED"]
    assert closed == [(2.25, "TIME_WAIT")]
    assert not rig.host.connections


# ---------------------------------------------------------------- the RTO floor and delayed ACKs


@pytest.mark.parametrize("reply", [100, 3 * 1448 + 100])
def test_the_default_rto_floor_outlasts_a_delayed_ack(reply: int) -> None:
    """A reply's lone last segment is ACKed only when the client's delayed-ACK timer fires (the
    client sends nothing back). The RTO must outlast that wait, or every such reply on a clean
    link is retransmitted: RFC 6298 2.4's 1 s floor, above our 200 ms delayed ACK. (The linux
    profile has Linux's 200 ms floor above its 40 ms delayed ACK and quick-ACK mode.)"""
    config = TcpConfig()
    pair = two_hosts(7, LinkProfile(delay=0.0005), config=config)

    async def exchange() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)
            writer.write(bytes(reply))
            await writer.drain()

        server = await pair.stack_b.start_server(serve, port=PORT)
        reader, writer = await pair.stack_a.open_connection(peer_addr(), PORT)
        writer.write(b"GET")
        got = 0
        while got < reply:
            got += len(await reader.read(65536))
        await asyncio.sleep(2.0)  # silent: the reply's last segment is ACKed by the timer alone
        writer.close()
        server.close()

    pair.run(exchange())
    assert pair.sink_b.of(Retransmit) == []
    delack = [e for e in pair.sink_a.of(TimerEvent) if e.timer == "delack"]
    assert delack, "the client's delayed ACK did not fire: nothing was tested"
