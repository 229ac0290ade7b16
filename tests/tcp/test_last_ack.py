"""LAST_ACK (RFC 9293 3.10.7.4): waiting for the ACK of our FIN, then CLOSED."""

from __future__ import annotations

import pytest

from stack import seq
from stack.tcp.state import State

from .harness import isns, last_ack

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


@isns
def test_ack_of_fin_closes(isn: tuple[int, int]) -> None:
    peer = last_ack(isn)
    peer.send(".", ack=seq.add(peer.iss, 2))
    peer.expect_none()
    assert peer.transitions()[-3:] == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    assert not peer.host.connections
    assert peer.host.deadline() is None
    assert peer.c().error is None


def test_ack_below_fin_stays() -> None:
    peer = last_ack()
    peer.send(".", ack=peer.iss + 1)
    peer.expect_none()
    assert peer.state is State.LAST_ACK


def test_retransmitted_fin_is_acked_again() -> None:
    peer = last_ack()
    peer.send("F.", seq=peer.irs + 1, ack=peer.iss + 1)
    peer.expect(".", seq=peer.iss + 2, ack=peer.irs + 2)
    assert peer.state is State.LAST_ACK


def test_our_fin_is_retransmitted() -> None:
    peer = last_ack()
    peer.fire()
    peer.expect("F.", seq=peer.iss + 1)


def test_exact_rst_closes_without_error() -> None:
    peer = last_ack()
    peer.send("R")
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert peer.c().error is None


def test_after_close_the_listener_answers_a_stray_ack_with_rst() -> None:
    peer = last_ack()
    peer.send(".", ack=peer.iss + 2)
    assert peer.state is State.CLOSED
    peer.send(".", ack=peer.iss + 2)  # a duplicate: no connection now, only the listener
    peer.expect("R", seq=peer.iss + 2, ack=0, win=0)


def test_ack_beyond_fin_is_dropped_with_ack() -> None:
    peer = last_ack()
    peer.send(".", ack=peer.iss + 5)
    peer.expect(".", seq=peer.iss + 2)
    assert peer.state is State.LAST_ACK
