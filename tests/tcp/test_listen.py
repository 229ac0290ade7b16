"""LISTEN (RFC 9293 3.10.7.2): SYN opens a half-open connection; RST is ignored; an ACK is reset;
anything else is dropped. Backlog bounds (listen(2)): overflow is dropped and counted."""

from __future__ import annotations

import pytest

from stack import seq
from stack.config import TcpConfig, freebsd_profile
from stack.inet import tcp_overhead
from stack.tcp.state import State
from stack.wire.tcp import Flags, Mss

from .harness import (
    LOCAL_PORT,
    PLAIN,
    REMOTE_PORT,
    Peer,
    established_passive,
    isns,
    listening,
    remote_ip,
    syn_opts,
    syn_received,
)

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


@isns
def test_syn_gets_syn_ack(isn: tuple[int, int]) -> None:
    peer = listening(isn)
    peer.send("S", options=(Mss(1460),))
    peer.expect("S.", seq=peer.iss, ack=seq.add(peer.irs, 1), win=8192, options=syn_opts())
    peer.conn = peer.host.find(LOCAL_PORT, remote_ip(), REMOTE_PORT)
    assert peer.state is State.SYN_RECEIVED
    assert peer.transitions() == ["LISTEN", "SYN_RECEIVED"]


def test_syn_without_mss_still_gets_our_mss() -> None:
    peer = listening()
    peer.send("S")
    peer.expect("S.", seq=peer.iss, options=syn_opts())


def test_syn_ack_window_is_free_buffer_space() -> None:
    peer = listening(config=PLAIN.with_(rcvbuf=3000))
    peer.send("S")
    peer.expect("S.", seq=peer.iss, win=3000, options=syn_opts())


def test_syn_ack_window_capped_at_65535_without_scaling() -> None:
    peer = listening(config=PLAIN.with_(rcvbuf=200_000))
    peer.send("S")
    peer.expect("S.", seq=peer.iss, win=65535, options=syn_opts())


def test_rst_is_ignored() -> None:
    peer = listening()
    peer.send("R")
    peer.expect_none()
    assert peer.host.counters["listen_rst"] == 1
    assert not peer.host.connections


def test_rst_ack_is_ignored() -> None:
    peer = listening()
    peer.send("R.", ack=12345)
    peer.expect_none()
    assert not peer.host.connections


@isns
def test_ack_gets_rst_from_its_ack(isn: tuple[int, int]) -> None:
    peer = listening(isn)
    peer.send(".", ack=seq.add(peer.iss, 77))
    peer.expect("R", seq=seq.add(peer.iss, 77), ack=0, win=0)
    assert not peer.host.connections
    assert peer.host.counters["listen_ack"] == 1


def test_ack_with_data_gets_rst() -> None:
    peer = listening()
    peer.send("P.", ack=999, payload=b"hello")
    peer.expect("R", seq=999, ack=0, win=0)


@pytest.mark.parametrize("payload", [b"", b"abc"])
def test_syn_ack_to_listener_gets_rst(payload: bytes) -> None:
    peer = listening()
    peer.send("S.", ack=4242, payload=payload)
    peer.expect("R", seq=4242, ack=0, win=0)
    assert not peer.host.connections


@pytest.mark.parametrize("payload", [b"", b"abc"])
def test_syn_ack_to_listener_is_dropped_under_the_freebsd_profile(payload: bytes) -> None:
    """listen_drop_syn_ack, as current FreeBSD: no RST, no state; the listener goes on serving."""
    peer = listening(config=freebsd_profile())
    peer.send("S.", seq=17, ack=34, payload=payload)
    peer.expect_none()
    assert peer.host.counters["listen_syn_ack"] == 1
    assert not peer.host.connections
    peer.send("S", seq=0)
    [synack] = peer.segments()
    assert (synack.flags, synack.ack) == (Flags.SYN | Flags.ACK, 1)


def test_listen_drop_syn_ack_leaves_an_ack_to_be_reset() -> None:
    peer = listening(config=PLAIN.with_(listen_drop_syn_ack=True))
    peer.send(".", ack=4242)
    peer.expect("R", seq=4242, ack=0, win=0)


def test_syn_rst_is_dropped() -> None:
    peer = listening()
    peer.send("SR")
    peer.expect_none()
    assert not peer.host.connections


def test_fin_without_ack_is_dropped() -> None:
    peer = listening()
    peer.send("F")
    peer.expect_none()
    assert peer.host.counters["listen_no_syn"] == 1


def test_data_without_ack_is_dropped() -> None:
    peer = listening()
    peer.send("P", payload=b"abc")
    peer.expect_none()
    assert not peer.host.connections


def test_two_peers_get_two_half_open_connections() -> None:
    peer = listening()
    other = Peer(peer.host, peer.sink, iss=peer.iss, irs=7, remote_port=REMOTE_PORT + 1)
    peer.send("S")
    other.send("S")
    peer.expect("S.", seq=peer.iss, options=syn_opts())
    assert peer.host.find(LOCAL_PORT, remote_ip(), REMOTE_PORT) is not None
    assert peer.host.find(LOCAL_PORT, remote_ip(), REMOTE_PORT + 1) is not None
    assert len(peer.host.connections) == 2


def test_listener_keeps_listening_after_accept() -> None:
    peer = established_passive()
    other = Peer(peer.host, peer.sink, iss=peer.iss, irs=9, remote_port=REMOTE_PORT + 1)
    other.send("S")
    assert len(peer.host.take_packets()) == 1  # a SYN-ACK for the second peer
    other.seq = 10
    other.ack = peer.iss + 1
    other.send(".")
    assert peer.listener is not None
    second = peer.listener.accept()
    assert second is not None and second.remote_port == REMOTE_PORT + 1


def test_syn_backlog_overflow_dropped_and_counted_without_cookies() -> None:
    peer = listening(config=PLAIN.with_(syn_backlog=2, syncookies=0))
    peers = [Peer(peer.host, peer.sink, iss=peer.iss, irs=100 * i, remote_port=5000 + i) for i in range(3)]
    for p in peers:
        p.send("S")
    assert len(peer.host.take_packets()) == 2  # the third SYN got nothing
    assert peer.host.counters["listen_overflow"] == 1
    assert peer.listener is not None and peer.listener.overflows == 1
    assert len(peer.host.connections) == 2


def test_accept_queue_full_drops_new_syn() -> None:
    peer = listening(backlog=1)
    peer.send("S")
    peer.expect("S.", seq=peer.iss, options=syn_opts())
    peer.send(".")  # established, waiting in the accept queue: the queue is full
    other = Peer(peer.host, peer.sink, iss=peer.iss, irs=5, remote_port=REMOTE_PORT + 1)
    other.send("S")
    other.expect_none()
    assert peer.host.counters["listen_overflow"] == 1
    assert peer.host.find(LOCAL_PORT, remote_ip(), REMOTE_PORT + 1) is None


def test_final_ack_with_full_accept_queue_is_dropped_and_retried() -> None:
    peer = listening(backlog=1)
    a = Peer(peer.host, peer.sink, iss=peer.iss, irs=10, remote_port=5001)
    b = Peer(peer.host, peer.sink, iss=peer.iss, irs=20, remote_port=5002)
    a.send("S")
    b.send("S")
    assert len(peer.host.take_packets()) == 2
    a.ack = b.ack = seq.add(peer.iss, 1)
    a.send(".")
    b.send(".")  # the accept queue holds a: b's ACK is dropped, b stays half-open
    b.expect_none()
    conn_b = peer.host.find(LOCAL_PORT, remote_ip(), 5002)
    assert conn_b is not None and conn_b.state is State.SYN_RECEIVED
    assert peer.sink.drops("accept_queue_full")
    assert peer.listener is not None and peer.listener.overflows == 1
    assert peer.listener.accept() is not None
    assert peer.listener.accept() is None
    b.send(".")  # b retries its ACK (it would after our SYN-ACK retransmission)
    assert conn_b.state is State.ESTABLISHED
    assert peer.listener.accept() is conn_b


def test_close_listener_resets_half_open_connections() -> None:
    peer = syn_received()
    assert peer.listener is not None
    peer.host.close_listener(peer.listener, peer.now)
    peer.expect("R.", seq=seq.add(peer.iss, 1))
    assert peer.state is State.CLOSED
    assert not peer.host.connections


def test_syn_ack_retransmitted_with_backoff() -> None:
    peer = syn_received()
    assert peer.deadline() == 1.0
    assert peer.fire() == 1.0
    peer.expect("S.", seq=peer.iss, options=syn_opts())
    assert peer.deadline() == 3.0
    peer.fire()
    peer.expect("S.", seq=peer.iss, options=syn_opts())


def test_half_open_gives_up_after_synack_retries() -> None:
    peer = syn_received(config=PLAIN.with_(synack_retries=2))
    for _ in range(2):
        peer.fire()
        peer.expect("S.", seq=peer.iss, options=syn_opts())
    peer.fire()
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert not peer.host.connections
    assert peer.listener is not None and not peer.listener.half_open
    assert peer.host.deadline() is None


def test_other_port_than_listener_is_reset() -> None:
    peer = listening()
    other = Peer(peer.host, peer.sink, iss=peer.iss, irs=1, local_port=LOCAL_PORT + 1)
    other.send("S")
    other.expect("R.", seq=0, ack=2, win=0)
    peer.expect_none()


def test_listen_twice_on_a_port_is_address_in_use() -> None:
    peer = listening()
    try:
        peer.host.listen(LOCAL_PORT, 1)
    except OSError as e:
        assert e.errno == 98
    else:
        raise AssertionError("second listen succeeded")


def test_config_is_inherited() -> None:
    peer = listening(config=TcpConfig(window_scaling=False, sack=False, timestamps=False, mtu=1000,
                                      rcvbuf=8192, delack_timeout=0.0))
    peer.send("S")
    mss = 1000 - tcp_overhead(remote_ip())  # the listener's MTU: 960 over IPv4, 940 over IPv6
    peer.expect("S.", seq=peer.iss, options=(Mss(mss),))
