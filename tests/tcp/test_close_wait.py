"""CLOSE_WAIT (RFC 9293 3.10.7.4): the peer has closed; we may still send; close() sends our FIN
and enters LAST_ACK."""

from __future__ import annotations

import pytest

from stack import seq
from stack.tcp.state import State

from .harness import PLAIN, RCVBUF, close_wait, established_passive, isns, send_mss

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


@isns
def test_close_sends_fin_and_enters_last_ack(isn: tuple[int, int]) -> None:
    peer = close_wait(isn)
    peer.app_close()
    peer.expect("F.", seq=seq.add(peer.iss, 1), ack=seq.add(peer.irs, 2))
    assert peer.transitions()[-3:] == ["ESTABLISHED", "CLOSE_WAIT", "LAST_ACK"]


def test_shutdown_also_enters_last_ack() -> None:
    peer = close_wait()
    peer.app_shutdown()
    peer.expect("F.")
    assert peer.state is State.LAST_ACK


@isns
def test_data_can_still_be_sent(isn: tuple[int, int]) -> None:
    peer = close_wait(isn)
    peer.app_send(b"answer")
    peer.expect("P.", seq=seq.add(peer.iss, 1), payload=b"answer")
    peer.send(".")
    peer.expect_none()
    assert peer.state is State.CLOSE_WAIT


def test_retransmitted_fin_is_acked_again() -> None:
    peer = close_wait()
    peer.send("F.", seq=peer.irs + 1)
    peer.expect(".", ack=peer.irs + 2)
    assert peer.state is State.CLOSE_WAIT


def test_recv_drains_then_eof() -> None:
    peer = established_passive()
    peer.send("FP.", payload=b"tail")
    peer.expect(".", win=RCVBUF - 5)
    assert peer.state is State.CLOSE_WAIT
    assert peer.app_recv(2) == b"ta"
    assert not peer.c().at_eof
    assert peer.app_recv() == b"il"
    assert peer.c().at_eof
    assert peer.app_recv() == b""


def test_exact_rst_resets() -> None:
    peer = close_wait()
    peer.send("R")
    peer.expect_none()
    assert peer.state is State.CLOSED
    with pytest.raises(ConnectionResetError):
        peer.c().send(b"x", peer.now)


def test_inexact_rst_gets_challenge_ack() -> None:
    peer = close_wait()
    peer.send("R", seq=peer.seq + 1)
    peer.expect(".", ack=peer.seq)
    assert peer.state is State.CLOSE_WAIT


def test_fin_rides_on_the_last_data_segment() -> None:
    peer = established_passive(config=PLAIN.with_(nagle=False))
    peer.send("F.")
    peer.expect(".", win=RCVBUF - 1)
    peer.send(".", win=0)
    peer.app_send(b"x" * 2000)
    peer.app_close()
    peer.expect_none()
    peer.send(".", win=65535)
    first, last = peer.expect_many(2)
    assert (len(first.payload), first.flags) == (send_mss(), 0x10)
    assert (len(last.payload), last.flags) == (2000 - send_mss(), 0x19)  # FIN, PSH, ACK
    assert peer.state is State.LAST_ACK
