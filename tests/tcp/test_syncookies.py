"""SYN cookies at a listener (RFC 4987 3.6): a SYN answered without state, the cookie ACK opening
the connection with the options the cookie remembers, every other ACK refused."""

from __future__ import annotations

import random

import pytest

from stack import seq
from stack.config import linux_profile
from stack.tcp.state import State
from stack.trace import StateChange, SynCookieEvent
from stack.wire.tcp import Mss, SackPermitted, TcpSegment, Timestamps, WindowScale

from . import harness
from .harness import PLAIN, REMOTE_PORT, Peer, listening, our_mss, send_mss

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6

COOKIES = PLAIN.with_(syncookies=2)  # always, like Linux's tcp_syncookies=2


def cookie_syn(peer: Peer, **kw: object) -> TcpSegment:
    """Send a SYN; return the SYN-ACK, checking the host kept no state for it."""
    peer.send("S", options=(Mss(1460),), **kw)  # type: ignore[arg-type]
    segs = peer.expect_many(1)
    peer.ack = seq.add(segs[0].seq, 1)  # the cookie is far from the harness's fixed ISS
    assert not peer.host.connections
    listener = peer.host.listeners[peer.local_port]
    assert not listener.half_open
    return segs[0]


def test_a_cookie_ack_opens_the_connection() -> None:
    peer = listening(config=COOKIES)
    synack = cookie_syn(peer)
    assert synack.ack == seq.add(peer.irs, 1) and synack.options == (Mss(our_mss()),)
    peer.send(".", payload=b"hello")  # the ACK may carry data
    peer.expect(".", ack=peer.seq, win=PLAIN.rcvbuf - 5)
    assert peer.listener is not None
    conn = peer.listener.accept()
    assert conn is not None and conn.state is State.ESTABLISHED
    peer.conn = conn
    assert peer.app_recv() == b"hello"
    assert conn.iss == synack.seq
    assert peer.host.counters["syncookies_sent"] == 1 and peer.host.counters["syncookies_recv"] == 1
    assert [e.action for e in peer.sink.of(SynCookieEvent)] == ["sent", "accepted"]
    # The handshake as the trace tells it: no SYN-ACK was ever sent by the new connection.
    assert peer.transitions() == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED"]
    assert [s.flags for s in peer.sink.segments("out")] == ["S.", "."]
    # The connection sends with the MSS the cookie carried.
    peer.app_send(b"x" * 3000)
    sizes = [len(s.payload) for s in peer.expect_many(2)]
    assert sizes == [send_mss()] * 2  # (the rest waits for an ACK: Nagle)


def test_options_come_back_from_the_timestamp_bits() -> None:
    config = COOKIES.with_(window_scaling=True, sack=True, timestamps=True, rcvbuf=1 << 20)
    peer = listening(config=config)
    peer.send("S", options=(Mss(1400), SackPermitted(), Timestamps(1000, 0), WindowScale(5)))
    synack = peer.expect_many(1)[0]
    peer.ack = seq.add(synack.seq, 1)
    ts = synack.timestamps
    assert ts is not None and ts.tsecr == 1000 and synack.wscale == 5  # 1 MB: shift 5
    peer.send(".", options=(Timestamps(1001, ts.tsval),), win=100)
    assert peer.listener is not None
    conn = peer.listener.accept()
    assert conn is not None
    info = conn.info()
    assert info["options"] == "ws,sack,ts"
    # The family's table entry for a 1400 MSS (IPv4: 1300; IPv6: 1220), less the timestamps.
    assert info["mss"] == (1220 if harness.FAMILY is harness.IPV6 else 1300) - 12
    assert info["snd_wnd"] == 100 << 5  # the peer's window scale, from the cookie


def test_without_timestamps_no_sack_or_window_scale() -> None:
    config = COOKIES.with_(window_scaling=True, sack=True, timestamps=True)
    peer = listening(config=config)
    peer.send("S", options=(Mss(1460), SackPermitted(), WindowScale(5)))
    synack = peer.expect_many(1)[0]
    assert synack.options == (Mss(our_mss()),)
    peer.ack = seq.add(synack.seq, 1)
    peer.send(".")
    assert peer.listener is not None
    conn = peer.listener.accept()
    assert conn is not None and conn.info()["options"] == ""


def test_a_wrong_cookie_gets_a_rst_and_no_connection() -> None:
    peer = listening(config=COOKIES)
    synack = cookie_syn(peer)
    wrong = seq.add(synack.seq, 1 + 4096)  # (cookie + 1 is the next MSS index: a valid cookie)
    peer.send(".", ack=wrong)
    peer.expect("R", seq=wrong, ack=0, win=0)
    assert not peer.host.connections
    assert peer.host.counters["syncookies_failed"] == 1
    assert [e.action for e in peer.sink.of(SynCookieEvent)] == ["sent", "failed"]


def test_blind_acks_create_no_connection() -> None:
    """An off-path attacker guessing cookies: 20,000 random ACKs to a cookie-sending listener."""
    peer = listening(config=COOKIES.with_(rst_per_second=0))
    cookie_syn(peer)
    rng = random.Random(3)
    for _ in range(20_000):
        peer.port = 1024 + rng.randrange(60000)
        peer.send(".", seq=rng.randrange(1 << 32), ack=rng.randrange(1 << 32))
    assert not peer.host.connections
    assert peer.host.counters["syncookies_recv"] == 0
    assert peer.host.counters["syncookies_failed"] == 20_000


def test_a_cookie_expires_after_two_minutes() -> None:
    peer = listening(config=COOKIES)
    cookie_syn(peer)
    peer.now = 120.0
    peer.send(".")
    assert peer.expect_many(1)[0].flags == 0x04  # RST
    assert not peer.host.connections


def test_cookies_only_once_the_syn_queue_is_full_by_default() -> None:
    peer = listening(config=PLAIN.with_(syn_backlog=2))
    others = [Peer(peer.host, peer.sink, iss=peer.iss, irs=100 * i, remote_port=5000 + i) for i in range(3)]
    for p in others:
        p.send("S")
    assert len(peer.host.connections) == 2  # two half-open, the third SYN got a cookie
    assert peer.host.counters["syncookies_sent"] == 1
    (synack,) = others[2].segments()
    others[2].ack = seq.add(synack.seq, 1)  # the cookie may lie "below" the harness's ISS
    others[2].send(".")
    assert len(peer.host.connections) == 3 and peer.host.counters["syncookies_recv"] == 1


def test_an_ack_to_a_listener_that_sent_no_cookie_is_reset_without_checking() -> None:
    peer = listening(config=PLAIN)  # syncookies=1 and the queue never filled
    peer.send(".", ack=12345)
    peer.expect("R", seq=12345, ack=0, win=0)
    assert peer.host.counters["syncookies_failed"] == 0


def test_a_full_accept_queue_drops_the_cookie_ack_without_reset() -> None:
    peer = listening(config=COOKIES, backlog=1)
    cookie_syn(peer)
    first = Peer(peer.host, peer.sink, iss=peer.iss, irs=7, remote_port=REMOTE_PORT + 1)
    cookie_syn(first)
    first.send(".")  # established, in the accept queue, which is now full
    peer.send(".")  # a valid cookie ACK finds no room: dropped, the peer will retransmit
    peer.expect_none()
    assert peer.listener is not None and peer.listener.overflows == 1
    assert len(peer.host.connections) == 1
    assert peer.listener.accept() is not None
    peer.send(".", seq=peer.irs + 1)  # the retransmitted ACK now gets in
    assert peer.listener.accept() is not None
    assert len([e for e in peer.sink.of(StateChange) if e.new == "ESTABLISHED"]) == 2


@pytest.mark.parametrize(("peer_mss", "v4", "v6"), [(1220, 536, 1220), (1400, 1300, 1220),
                                                     (1460, 1460, 1440), (8960, 1460, 8940)])
def test_the_cookie_carries_the_mss_from_the_familys_table(peer_mss: int, v4: int, v6: int) -> None:
    """Linux's msstab per family: IPv4 536, 1300, 1440, 1460; IPv6 1220 (the 1280 minimum MTU),
    1420, 1440, 8940: an IPv6 peer at the minimum MTU is not cut to 536."""
    peer = listening(config=COOKIES.with_(mtu=9000))
    peer.send("S", options=(Mss(peer_mss),))
    synack = peer.expect_many(1)[0]
    peer.ack = seq.add(synack.seq, 1)
    peer.send(".")
    assert peer.listener is not None
    conn = peer.listener.accept()
    assert conn is not None and conn.info()["mss"] == (v6 if harness.FAMILY is harness.IPV6 else v4)


def test_a_cookie_synack_announces_the_window_scale_the_connection_uses() -> None:
    """The linux profile scales for 6 MB (shift 7), not for the buffer: the SYN-ACK of a cookie
    must announce the shift the connection then applies to its window field, as a SYN-ACK from
    the SYN queue does."""
    config = linux_profile().with_(syncookies=2, rcvbuf=PLAIN.rcvbuf)
    peer = listening(config=config)
    peer.send("S", options=(Mss(1460), SackPermitted(), Timestamps(1000, 0), WindowScale(7)))
    synack = peer.expect_many(1)[0]
    peer.ack = seq.add(synack.seq, 1)
    assert synack.wscale == 7
    ts = synack.timestamps
    assert ts is not None
    peer.send(".", options=(Timestamps(1001, ts.tsval),), payload=b"x" * 100)
    ack = peer.expect_many(1)[0]
    assert ack.window == -(-(PLAIN.rcvbuf - 100) // (1 << 7))  # the field at the announced scale
