"""CLOSING (RFC 9293 3.10.7.4): both FINs crossed; the ACK of ours leads to TIME_WAIT."""

from __future__ import annotations

import pytest

from stack import seq
from stack.tcp.state import State

from .harness import closing, isns

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


@isns
def test_ack_of_fin_goes_to_time_wait(isn: tuple[int, int]) -> None:
    peer = closing(isn)
    peer.send(".", ack=seq.add(peer.iss, 2))
    peer.expect_none()
    assert peer.transitions()[-3:] == ["FIN_WAIT_1", "CLOSING", "TIME_WAIT"]
    assert peer.deadline() == 60.0


def test_ack_below_fin_stays() -> None:
    peer = closing()
    peer.send(".", ack=peer.iss + 1)
    peer.expect_none()
    assert peer.state is State.CLOSING


def test_retransmitted_fin_is_acked_again() -> None:
    peer = closing()
    peer.send("F.", seq=peer.irs + 1, ack=peer.iss + 1)
    peer.expect(".", seq=peer.iss + 2, ack=peer.irs + 2)
    assert peer.state is State.CLOSING


def test_old_fin_acking_ours_is_acked_but_not_processed() -> None:
    # RFC 9293 3.10.7.4 first check: the retransmitted FIN lies wholly before RCV.NXT, so the
    # segment is unacceptable: ACK it and drop it, its ACK field included.
    peer = closing()
    peer.send("F.", seq=peer.irs + 1, ack=peer.iss + 2)
    peer.expect(".", seq=peer.iss + 2, ack=peer.irs + 2)
    assert peer.state is State.CLOSING
    peer.send(".", ack=peer.iss + 2)
    assert peer.state is State.TIME_WAIT


def test_our_fin_is_retransmitted() -> None:
    peer = closing()
    peer.fire()
    peer.expect("F.", seq=peer.iss + 1)
    assert peer.state is State.CLOSING


def test_exact_rst_closes_without_error() -> None:
    peer = closing()
    peer.send("R")
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert peer.c().error is None
    assert not peer.host.connections


def test_inexact_rst_gets_challenge_ack() -> None:
    peer = closing()
    peer.send("R", seq=peer.seq + 10)
    peer.expect(".", seq=peer.iss + 2)
    assert peer.state is State.CLOSING


def test_syn_gets_challenge_ack() -> None:
    peer = closing()
    peer.send("S", seq=peer.seq)
    peer.expect(".", seq=peer.iss + 2)
    assert peer.state is State.CLOSING
