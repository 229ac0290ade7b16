"""Segments for no connection and no listener (RFC 9293 3.10.7.1): every segment but a RST gets a
RST; with an ACK the RST is <SEQ=SEG.ACK><CTL=RST>, without one <SEQ=0><ACK=SEG.SEQ+SEG.LEN>
<CTL=RST,ACK>."""

from __future__ import annotations

import pytest

from stack import seq
from stack.tcp.state import State

from .harness import DEFAULT_ISN, LOCAL_PORT, Peer, make_host, time_wait

WRAPPING = [0, 1_000, 2**31, 2**32 - 1, 2**32 - 3]

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


def closed_peer(irs: int = 5_000) -> Peer:
    host, sink = make_host()
    return Peer(host, sink, iss=DEFAULT_ISN[0], irs=irs)


@pytest.mark.parametrize("isn", WRAPPING)
def test_syn_gets_rst_ack(isn: int) -> None:
    peer = closed_peer(isn)
    peer.send("S", seq=isn)
    peer.expect("R.", seq=0, ack=seq.add(isn, 1), win=0)
    assert peer.host.counters["closed_port"] == 1
    assert peer.host.counters["rst_sent"] == 1
    assert not peer.host.connections


def test_syn_with_data_acks_the_data_too() -> None:
    peer = closed_peer()
    peer.send("S", seq=100, payload=b"x" * 10)
    peer.expect("R.", seq=0, ack=111, win=0)


@pytest.mark.parametrize("ack", WRAPPING)
def test_ack_gets_rst_at_its_ack(ack: int) -> None:
    peer = closed_peer()
    peer.send(".", ack=ack)
    peer.expect("R", seq=ack, ack=0, win=0)


def test_ack_with_data_gets_rst_at_its_ack() -> None:
    peer = closed_peer()
    peer.send("P.", ack=777, payload=b"data")
    peer.expect("R", seq=777, ack=0, win=0)


def test_fin_ack_gets_rst_at_its_ack() -> None:
    peer = closed_peer()
    peer.send("F.", ack=31337)
    peer.expect("R", seq=31337, ack=0, win=0)


def test_fin_without_ack_gets_rst_ack_past_the_fin() -> None:
    peer = closed_peer()
    peer.send("F", seq=2**32 - 1)
    peer.expect("R.", seq=0, ack=0, win=0)


def test_data_without_ack_gets_rst_ack_past_the_data() -> None:
    peer = closed_peer()
    peer.send("P", seq=2**32 - 2, payload=b"abcd")
    peer.expect("R.", seq=0, ack=2, win=0)


def test_syn_fin_counts_both() -> None:
    peer = closed_peer()
    peer.send("SF", seq=10)
    peer.expect("R.", seq=0, ack=12, win=0)


@pytest.mark.parametrize("flags", ["R", "R.", "RP.", "RS"])
def test_rst_never_answered(flags: str) -> None:
    peer = closed_peer()
    peer.send(flags, ack=5)
    peer.expect_none()
    assert peer.host.counters["rst_sent"] == 0


def test_rst_goes_back_to_the_sender_ports() -> None:
    peer = closed_peer()
    other = Peer(peer.host, peer.sink, iss=1, irs=1, remote_port=1234, local_port=4321)
    other.send("S", seq=50)
    other.expect("R.", seq=0, ack=51, win=0)
    peer.expect_none()


def test_after_time_wait_expires_the_port_is_closed_again() -> None:
    peer = time_wait(active=True)  # active open: no listener on the port
    peer.advance(60.0)
    assert peer.state is State.CLOSED
    assert not peer.host.connections
    peer.send(".", ack=peer.ack)
    peer.expect("R", seq=peer.ack, ack=0, win=0)


def test_no_connection_is_created() -> None:
    peer = closed_peer()
    for flags in ("S", ".", "F", "P."):
        peer.send(flags, payload=b"z" if "P" in flags else b"")
    assert not peer.host.connections
    assert len(peer.segments()) == 4
    assert peer.host.find(LOCAL_PORT, peer.ip, peer.port) is None
