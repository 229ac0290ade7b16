"""SYN_SENT (RFC 9293 3.10.7.3): the ACK must cover our SYN exactly, else RST <SEQ=SEG.ACK>; a RST
with an acceptable ACK refuses the connection; SYN-ACK completes it; a bare SYN is a simultaneous
open (SYN_RECEIVED)."""

from __future__ import annotations

import pytest

from stack import seq
from stack.tcp.state import State
from stack.wire.tcp import Mss

from .harness import PLAIN, established_active, isns, syn_opts, syn_sent

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


@isns
def test_connect_sends_syn(isn: tuple[int, int]) -> None:
    peer = syn_sent(isn)  # the builder checked the SYN: seq ISS, our MSS, window 8192
    assert peer.transitions() == ["CLOSED", "SYN_SENT"]
    assert peer.deadline() == 1.0


@isns
def test_syn_ack_establishes(isn: tuple[int, int]) -> None:
    peer = syn_sent(isn)
    peer.send("S.", options=(Mss(1460),))
    peer.expect(".", seq=seq.add(peer.iss, 1), ack=seq.add(peer.irs, 1))
    assert peer.state is State.ESTABLISHED
    assert peer.transitions() == ["CLOSED", "SYN_SENT", "ESTABLISHED"]
    assert peer.deadline() is None


@isns
@pytest.mark.parametrize("delta", [0, 2, -1, 1000])
def test_syn_ack_with_wrong_ack_gets_rst(isn: tuple[int, int], delta: int) -> None:
    peer = syn_sent(isn)
    bad = seq.add(peer.iss, delta)
    peer.send("S.", ack=bad)
    peer.expect("R", seq=bad, ack=0, win=8192)
    assert peer.state is State.SYN_SENT
    assert peer.drops("syn_sent_bad_ack") == 1


def test_bare_ack_with_wrong_ack_gets_rst() -> None:
    peer = syn_sent()
    peer.send(".", ack=peer.iss)
    peer.expect("R", seq=peer.iss, ack=0, win=8192)
    assert peer.state is State.SYN_SENT


def test_bare_ack_with_right_ack_is_dropped() -> None:
    peer = syn_sent()
    peer.send(".", ack=peer.iss + 1)
    peer.expect_none()
    assert peer.state is State.SYN_SENT
    assert peer.drops("syn_sent_no_syn") == 1


@isns
def test_rst_with_acceptable_ack_refuses(isn: tuple[int, int]) -> None:
    peer = syn_sent(isn)
    peer.send("R.", ack=seq.add(peer.iss, 1))
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert isinstance(peer.c().error, ConnectionRefusedError)
    with pytest.raises(ConnectionRefusedError):
        peer.c().send(b"x", peer.now)
    with pytest.raises(ConnectionRefusedError):
        peer.c().recv(10, peer.now)
    assert peer.transitions() == ["CLOSED", "SYN_SENT", "CLOSED"]
    assert not peer.host.connections
    assert peer.host.deadline() is None


def test_rst_with_bad_ack_is_ignored() -> None:
    peer = syn_sent()
    peer.send("R.", ack=peer.iss + 5)
    peer.expect_none()
    assert peer.state is State.SYN_SENT


def test_rst_without_ack_is_ignored() -> None:
    peer = syn_sent()
    peer.send("R", seq=123)
    peer.expect_none()
    assert peer.state is State.SYN_SENT
    assert peer.drops("syn_sent_rst_without_ack") == 1


@isns
def test_simultaneous_open_syn_gets_syn_ack(isn: tuple[int, int]) -> None:
    peer = syn_sent(isn)
    peer.send("S", options=(Mss(1460),))
    peer.expect("S.", seq=peer.iss, ack=seq.add(peer.irs, 1), options=syn_opts())
    assert peer.state is State.SYN_RECEIVED
    peer.send(".", ack=seq.add(peer.iss, 1))
    peer.expect_none()
    assert peer.state is State.ESTABLISHED
    assert peer.transitions() == ["CLOSED", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED"]


def test_simultaneous_open_rst_refuses() -> None:
    peer = syn_sent()
    peer.send("S")
    peer.expect("S.", seq=peer.iss, options=syn_opts())
    peer.send("R", seq=peer.irs + 1)
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert isinstance(peer.c().error, ConnectionRefusedError)


@isns
def test_syn_ack_with_data_delivers_and_acks_it(isn: tuple[int, int]) -> None:
    peer = syn_sent(isn)
    peer.send("S.", payload=b"early")
    peer.expect(".", ack=seq.add(peer.irs, 6), win=8192 - 5)
    assert peer.state is State.ESTABLISHED
    assert peer.app_recv() == b"early"


def test_syn_ack_with_fin_goes_to_close_wait() -> None:
    peer = syn_sent()
    peer.send("SF.")
    peer.expect(".", ack=peer.irs + 2, win=8191)
    assert peer.state is State.CLOSE_WAIT
    assert peer.c().at_eof


def test_fin_alone_is_dropped() -> None:
    peer = syn_sent()
    peer.send("F")
    peer.expect_none()
    assert peer.state is State.SYN_SENT


def test_syn_retransmitted_with_backoff() -> None:
    peer = syn_sent()
    assert peer.fire() == 1.0
    peer.expect("S", seq=peer.iss, options=syn_opts())
    assert peer.deadline() == 3.0
    assert peer.fire() == 3.0
    peer.expect("S", seq=peer.iss, options=syn_opts())
    assert peer.deadline() == 7.0


def test_syn_retries_exhausted_times_out() -> None:
    peer = syn_sent(config=PLAIN.with_(syn_retries=1))
    peer.fire()
    peer.expect("S", seq=peer.iss, options=syn_opts())
    peer.fire()
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert isinstance(peer.c().error, TimeoutError)
    assert not peer.host.connections


def test_close_in_syn_sent_sends_nothing() -> None:
    peer = syn_sent()
    peer.app_close()
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert not peer.host.connections


def test_data_queued_in_syn_sent_goes_after_handshake() -> None:
    peer = syn_sent()
    assert peer.app_send(b"hello") == 5
    peer.expect_none()
    peer.send("S.")
    ack, data = peer.expect_many(2)
    assert (ack.flags, ack.seq, ack.payload) == (0x10, peer.iss + 1, b"")
    assert (data.flags, data.seq, data.ack, data.payload) == (0x18, peer.iss + 1, peer.irs + 1, b"hello")


def test_shutdown_in_syn_sent_closes() -> None:
    # RFC 9293 3.10.4, CLOSE in SYN-SENT: delete the TCB; nothing goes out.
    peer = syn_sent()
    peer.app_shutdown()
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert peer.transitions() == ["CLOSED", "SYN_SENT", "CLOSED"]


def test_syn_ack_with_zero_window_holds_data() -> None:
    peer = syn_sent()
    peer.send("S.", win=0)
    peer.expect(".")
    peer.app_send(b"data")
    peer.expect_none()
    assert peer.deadline() is not None  # the persist timer


def test_established_active_handshake_numbers() -> None:
    peer = established_active((2**32 - 1, 2**32 - 1))
    assert peer.ack == 0 and peer.seq == 0
