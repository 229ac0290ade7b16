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


def test_after_close_the_listener_answers_a_stray_ack_with_rst() -> None:
    peer = last_ack()
    peer.send(".", ack=peer.iss + 2)
    assert peer.state is State.CLOSED
    peer.send(".", ack=peer.iss + 2)  # a duplicate: no connection now, only the listener
    peer.expect("R", seq=peer.iss + 2, ack=0, win=0)
