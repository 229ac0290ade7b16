"""SACK (RFC 2018, RFC 2883) and the FIN corner cases, by injection; SACK scoreboard recovery
(RFC 6675) against NewReno (RFC 6582) on the simulated network with chosen segments dropped."""

from __future__ import annotations

import asyncio

import pytest

from stack.config import TcpConfig
from stack.sim import LinkProfile
from stack.tcp.connection import TcpConnection
from stack.tcp.state import State
from stack.trace import CongestionEvent, Retransmit, TimerEvent
from stack.wire.tcp import Flags

from .helpers import (
    Rig,
    drop_data_packets,
    drop_segment_repeatedly,
    make_pair,
    peer_addr,
    run_transfer,
    smss,
    sock_family,
)

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


def state_of(conn: TcpConnection) -> State:
    return conn.state  # (a call, so that mypy does not narrow conn.state across events)


NO_TS = TcpConfig(timestamps=False, window_scaling=False)
M = 2**32


def sack_of(rig: Rig, conn: TcpConnection, at: float, off: int, n: int = 1000,
            flags: int = Flags.ACK) -> list[tuple[int, int]]:
    """Inject n octets at rcv_nxt+off (sequence relative to the peer's data start); return the
    SACK blocks of the host's immediate answer, relative to the same origin."""
    base = (conn.irs + 1) % M
    out = rig.inject(rig.seg(conn, Flags(flags), seq=(base + off) % M, payload=b"s" * n), at=at)
    assert len(out) == 1, out  # answered at once, with exactly one ACK
    return [((a - base) % M, (b - base) % M) for a, b in out[0].seg.sack_blocks]


def test_out_of_order_gets_an_immediate_dupack_with_sack_blocks_most_recent_first() -> None:
    rig = Rig(NO_TS)
    conn = rig.open(mss=1000, sack=True)
    assert conn.sack_ok
    assert sack_of(rig, conn, 1.0, 1000) == [(1000, 2000)]
    assert sack_of(rig, conn, 1.01, 3000) == [(3000, 4000), (1000, 2000)]
    assert sack_of(rig, conn, 1.02, 5000) == [(5000, 6000), (3000, 4000), (1000, 2000)]
    # A segment joining two blocks: the merged block is the most recent (RFC 2018 section 4).
    assert sack_of(rig, conn, 1.03, 2000) == [(1000, 4000), (5000, 6000)]
    assert conn.rcv_nxt == (conn.irs + 1) % M  # still the hole at 0
    # Filling the hole: a cumulative ACK of everything contiguous, SACK of what is left.
    assert sack_of(rig, conn, 1.04, 0) == [(5000, 6000)]
    assert conn.rcv_nxt == (conn.irs + 1 + 4000) % M


def test_dsack_for_a_duplicate_below_the_ack_and_for_a_duplicate_ooo_block() -> None:
    rig = Rig(NO_TS)
    conn = rig.open(mss=1000, sack=True)
    rig.inject(rig.seg(conn, payload=b"a" * 1000), at=1.0)
    rig.inject(rig.seg(conn, payload=b"a" * 1000), at=1.001)  # 2 segments: ACKed at once
    # The first segment again: RFC 2883 D-SACK, the duplicate range as the first block.
    assert sack_of(rig, conn, 1.1, 0) == [(0, 1000)]
    assert conn.stats.dsacks_out == 1
    sack_of(rig, conn, 1.2, 3000)
    # A duplicate of out-of-order data: D-SACK first, then the SACK block containing it.
    assert sack_of(rig, conn, 1.3, 3000) == [(3000, 4000), (3000, 4000)]
    assert sack_of(rig, conn, 1.4, 5000) == [(5000, 6000), (3000, 4000)]  # D-SACK reported once


def test_no_sack_blocks_when_sack_was_not_negotiated() -> None:
    rig = Rig(NO_TS)
    conn = rig.open(mss=1000, sack=False)
    assert sack_of(rig, conn, 1.0, 1000) == []


# ---------------------------------------------------------------- FIN corner cases


def test_fin_behind_a_hole_is_held_until_the_hole_fills() -> None:
    rig = Rig(NO_TS)
    conn = rig.open(mss=1000, sack=True)
    base = (conn.irs + 1) % M
    assert sack_of(rig, conn, 1.0, 1000, flags=Flags.FIN | Flags.ACK) == [(1000, 2000)]
    assert state_of(conn) is State.ESTABLISHED and not conn.fin_received
    out = rig.inject(rig.seg(conn, seq=base, payload=b"h" * 1000), at=1.1)
    assert conn.state is State.CLOSE_WAIT
    assert [o.seg.ack for o in out] == [(base + 2001) % M]  # data and FIN acknowledged at once
    assert conn.recv(10_000, rig.now) == b"h" * 1000 + b"s" * 1000
    assert conn.at_eof


def test_fin_with_data() -> None:
    rig = Rig(NO_TS)
    conn = rig.open(mss=1000)
    out = rig.inject(rig.seg(conn, Flags.FIN | Flags.ACK | Flags.PSH, payload=b"last words"), at=1.0)
    assert conn.state is State.CLOSE_WAIT
    assert [o.seg.ack for o in out] == [(conn.irs + 1 + 10 + 1) % M]
    assert conn.recv(100, rig.now) == b"last words" and conn.at_eof


def test_duplicated_fin_is_acked_again_and_changes_nothing() -> None:
    rig = Rig(NO_TS)
    conn = rig.open(mss=1000)
    fin = rig.seg(conn, Flags.FIN | Flags.ACK, payload=b"bye")
    rig.inject(fin, at=1.0)
    ack = conn.rcv_nxt
    out = rig.inject(fin, at=1.1)
    assert [o.seg.ack for o in out] == [ack] and state_of(conn) is State.CLOSE_WAIT
    assert conn.recv(100, rig.now) == b"bye"
    conn.close(1.2)
    rig.app(conn)
    assert conn.state is State.LAST_ACK
    rig.inject(fin, at=1.3)  # yet another copy, in LAST_ACK
    rig.inject(rig.seg(conn), at=1.4)
    assert state_of(conn) is State.CLOSED and conn.error is None


def test_data_after_a_fin_is_ignored() -> None:
    rig = Rig(NO_TS)
    conn = rig.open(mss=1000)
    rig.inject(rig.seg(conn, Flags.FIN | Flags.ACK, payload=b"end"), at=1.0)
    ack = conn.rcv_nxt
    out = rig.inject(rig.seg(conn, seq=ack, payload=b"ghost data"), at=1.1)
    assert all(o.seg.ack == ack for o in out)
    assert conn.recv(100, rig.now) == b"end" and conn.at_eof
    assert conn.rcv_nxt == ack and conn.state is State.CLOSE_WAIT


# ---------------------------------------------------------------- SACK vs NewReno recovery

LOST = {30, 32, 34, 36}  # four segments of one window, first transmissions


def _recovery(sack: bool) -> tuple[int, float, list[str], int]:
    """Bulk 300 kB a->b over a clean 40 ms RTT link with LOST dropped; returns (retransmits,
    time from the first retransmission to the end of recovery, why of each, lost count)."""
    cfg = TcpConfig(sack=sack, congestion_control="newreno", msl=0.5)
    pair = make_pair(11, LinkProfile(delay=0.02, rate=50e6), config=cfg)
    dropped = drop_data_packets(pair.net.duplex("a", "b").forward, LOST)
    res = run_transfer(pair, 300_000, 0, seed=11)
    assert res.got_ab == res.sent_ab
    rtx = pair.sink_a.of(Retransmit)
    exits = [e for e in pair.sink_a.of(CongestionEvent) if e.why == "recovery_exit"]
    assert rtx and exits
    return len(rtx), exits[0].time - rtx[0].time, [e.why for e in rtx], len(dropped)


def test_sack_recovery_resends_only_the_lost_segments_newreno_takes_longer() -> None:
    n_sack, t_sack, why_sack, lost = _recovery(sack=True)
    n_reno, t_reno, why_reno, _ = _recovery(sack=False)
    print(f"\nmulti-loss window ({lost} lost): SACK {n_sack} retransmissions, "
          f"recovery {t_sack * 1000:.0f} ms; NewReno {n_reno} retransmissions, "
          f"recovery {t_reno * 1000:.0f} ms")
    assert lost == 4
    assert n_sack == lost and "rto" not in why_sack  # the scoreboard resends exactly the holes
    assert n_reno >= lost and "rto" not in why_reno  # partial ACKs: one hole per RTT
    assert t_reno >= 3 * 0.04 > t_sack  # NewReno: about one RTT per hole; SACK: about one RTT


def test_rto_during_sack_recovery_still_delivers_everything() -> None:
    """The fast retransmission is lost too: the RTO fires with SACK state on the scoreboard,
    go-back-N resends, and the transfer completes intact."""
    cfg = TcpConfig(sack=True, msl=0.5)
    pair = make_pair(12, LinkProfile(delay=0.02, rate=50e6), config=cfg)
    link = pair.net.duplex("a", "b").forward
    drops = drop_segment_repeatedly(link, 30, times=3)  # first copy, fast retransmit, first RTO
    drop_data_packets(link, {33, 35})  # more holes in the same window, SACKed around
    res = run_transfer(pair, 400_000, 50_000, seed=12)
    assert res.got_ab == res.sent_ab and res.got_ba == res.sent_ba
    whys = [e.why for e in pair.sink_a.of(Retransmit)]
    assert len(drops) == 3 and whys.count("rto") >= 2 and "fast" in whys, whys
    rtos = [e for e in pair.sink_a.of(CongestionEvent) if e.why == "rto"]
    assert rtos and all(e.cwnd == smss() for e in rtos)  # one segment (the MSS less 12 of timestamps)


def test_newreno_partial_ack_resends_the_next_hole_at_once() -> None:
    """RFC 6582 3.2: two segments of one window lost, no SACK. The third dupack retransmits the
    first; the ACK of that retransmission is partial (below `recover`) and retransmits the next
    hole at once, without waiting for more dupacks or the RTO; the full ACK ends recovery with
    cwnd = ssthresh = FlightSize/2."""
    rig = Rig(NO_TS.with_(sack=False, congestion_control="newreno"))
    conn = rig.open(mss=1000, window=65535)
    conn.send(b"n" * 14000, rig.now)
    rig.app(conn)
    una = conn.snd_una

    def ack(rel_ack: int, at: float) -> None:
        rig.inject(rig.seg(conn, ack=(una + rel_ack) % M), at=at)

    for i in range(3):  # segments 2, 3, 4 arrive; 1 and 5 were lost
        ack(0, 0.2 + i / 1000)
    assert conn.in_recovery
    for i in range(7):  # 6..10 and the two limited-transmit segments
        ack(0, 0.21 + i / 1000)
    ack(4000, 0.3)  # the retransmitted segment 1 arrives: partial ACK
    rtx = [((e.seq - una) % M, e.why, round(e.time, 6)) for e in rig.sink.of(Retransmit)]
    assert rtx == [(0, "fast", 0.202), (4000, "fast", 0.3)]
    ack(12000, 0.4)  # everything, with the limited-transmit segments
    ev = rig.sink.of(CongestionEvent)
    loss = [e for e in ev if e.why == "loss"]
    exits = [e for e in ev if e.why == "recovery_exit"]
    assert [(e.flight, e.ssthresh) for e in loss] == [(12000, 6000)]
    assert [e.cwnd for e in exits] == [6000] and not conn.in_recovery
    assert conn.stats.rto_expiries == 0


def test_zero_window_end_to_end_nothing_lost() -> None:
    """The receiving application does not read for 30 s: the window closes, the sender probes
    (persist timer), then reading resumes and every octet and the FIN arrive."""
    cfg = TcpConfig(rcvbuf=16 * 1024, ooo_limit=16 * 1024, msl=0.5)
    pair = make_pair(13, LinkProfile(delay=0.02), config=cfg)
    data = b"".join(i.to_bytes(4, "big") for i in range(50_000))  # 200 kB

    async def main() -> bytes:
        listener = pair.stack_b.socket()
        listener.bind(("", 5001))
        listener.listen()
        client = pair.stack_a.socket(sock_family())
        await client.aconnect((peer_addr(), 5001))
        server, _ = await listener.aaccept()
        await client.asendall(data)
        client.close()  # the FIN waits behind 200 kB and a zero window
        await asyncio.sleep(30.0)
        got = bytearray()
        while chunk := await server.arecv(65536):
            got += chunk
        server.close()
        return bytes(got)

    got = pair.net.run(main(), timeout=600)
    assert got == data
    persist = [e for e in pair.sink_a.of(TimerEvent) if e.timer == "persist"]
    zero_wins = [s for s in pair.sink_b.segments("out") if s.win == 0]
    print(f"\nzero window: {len(zero_wins)} zero-window ACKs, {len(persist)} persist timer firings")
    assert zero_wins and len(persist) >= 5
    pair.net.run_for(10.0)
    assert not pair.a.host.connections and not pair.b.host.connections


def test_go_back_n_after_rto_skips_what_the_receiver_sacked() -> None:
    """Two holes, each losing its fast/SACK retransmission too: the RTO resends the first, and
    go-back-N (snd_nxt pulled back to SND.UNA) then jumps over the SACKed octets straight to the
    second hole: exactly the two lost segments are resent, nothing the receiver holds."""
    pair = make_pair(12, LinkProfile(delay=0.02, rate=50e6), config=TcpConfig(sack=True, msl=0.5))
    link = pair.net.duplex("a", "b").forward
    first = drop_segment_repeatedly(link, 30, times=2)
    second = drop_segment_repeatedly(link, 36, times=2)
    res = run_transfer(pair, 400_000, 50_000, seed=12)
    assert res.got_ab == res.sent_ab and res.got_ba == res.sent_ba
    assert len(first) == len(second) == 2
    rtx = pair.sink_a.of(Retransmit)
    holes = sorted({e.seq for e in rtx})
    assert len(holes) == 2
    assert [(e.seq, e.why) for e in rtx if e.why == "rto"] == [(holes[0], "rto"), (holes[1], "rto")]
    assert len([e for e in pair.sink_a.of(CongestionEvent) if e.why == "rto"]) == 1
