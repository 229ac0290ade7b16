"""What the closing states (RFC 9293 3.10.7.4) share, each behaviour checked in every state it
applies to: FIN_WAIT_1, CLOSING and LAST_ACK wait for the ACK of our FIN; a RST at RCV.NXT ends
the connection, any other in-window RST gets a challenge ACK (RFC 5961 3.2). What is particular
to one state stays in its own file (test_fin_wait_1.py, ... test_time_wait.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stack.tcp.state import State

from .harness import Peer, close_wait, closing, fin_wait_1, fin_wait_2, last_ack

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6

Builder = Callable[..., Peer]

# The states where our FIN (sequence number ISS+1) is out and not yet acknowledged.
FIN_UNACKED = pytest.mark.parametrize(
    ("build", "state"),
    [
        pytest.param(fin_wait_1, State.FIN_WAIT_1, id="fin_wait_1"),
        pytest.param(closing, State.CLOSING, id="closing"),
        pytest.param(last_ack, State.LAST_ACK, id="last_ack"),
    ],
)


@FIN_UNACKED
def test_ack_below_fin_stays(build: Builder, state: State) -> None:
    peer = build()
    peer.send(".", ack=peer.iss + 1)
    peer.expect_none()
    assert peer.state is state


@FIN_UNACKED
def test_our_fin_is_retransmitted(build: Builder, state: State) -> None:
    peer = build()
    peer.fire()
    peer.expect("F.", seq=peer.iss + 1)
    assert peer.state is state


@pytest.mark.parametrize(
    ("build", "state"),
    [
        pytest.param(closing, State.CLOSING, id="closing"),
        pytest.param(last_ack, State.LAST_ACK, id="last_ack"),
    ],
)
def test_retransmitted_fin_is_acked_again(build: Builder, state: State) -> None:
    peer = build()
    peer.send("F.", seq=peer.irs + 1, ack=peer.iss + 1)
    peer.expect(".", seq=peer.iss + 2, ack=peer.irs + 2)
    assert peer.state is state


@pytest.mark.parametrize(
    ("build", "state", "beyond"),
    [
        pytest.param(fin_wait_1, State.FIN_WAIT_1, 3, id="fin_wait_1"),
        pytest.param(last_ack, State.LAST_ACK, 5, id="last_ack"),
    ],
)
def test_ack_beyond_fin_is_dropped_with_ack(build: Builder, state: State, beyond: int) -> None:
    # RFC 9293 3.10.7.4 fifth check: an ACK of something not yet sent is ACKed and dropped.
    peer = build()
    peer.send(".", ack=peer.iss + beyond)
    peer.expect(".", seq=peer.iss + 2)
    assert peer.state is state
    assert peer.drops("ack_of_unsent_data") == 1


@pytest.mark.parametrize(
    "build",
    [pytest.param(fin_wait_1, id="fin_wait_1"), pytest.param(fin_wait_2, id="fin_wait_2")],
)
def test_exact_rst_resets(build: Builder) -> None:
    # Our side may still receive: the reset is reported to the application.
    peer = build()
    peer.send("R")
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert isinstance(peer.c().error, ConnectionResetError)


@pytest.mark.parametrize(
    "build",
    [pytest.param(closing, id="closing"), pytest.param(last_ack, id="last_ack")],
)
def test_exact_rst_closes_without_error(build: Builder) -> None:
    # Both sides have closed: a RST only ends it early (RFC 9293 3.10.7.4, CLOSING/LAST_ACK).
    peer = build()
    peer.send("R")
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert peer.c().error is None
    assert not peer.host.connections


@pytest.mark.parametrize(
    ("build", "state", "offset", "our_next"),
    [
        pytest.param(close_wait, State.CLOSE_WAIT, 1, 1, id="close_wait"),
        pytest.param(fin_wait_2, State.FIN_WAIT_2, 1, 2, id="fin_wait_2"),
        pytest.param(closing, State.CLOSING, 10, 2, id="closing"),
    ],
)
def test_inexact_rst_gets_challenge_ack(build: Builder, state: State, offset: int, our_next: int) -> None:
    # our_next: the host's next sequence number past its ISS (2 once its FIN is out).
    peer = build()
    peer.send("R", seq=peer.seq + offset)
    peer.expect(".", seq=peer.iss + our_next, ack=peer.seq)
    assert peer.state is state


@pytest.mark.parametrize(
    "build",
    [pytest.param(fin_wait_1, id="fin_wait_1"), pytest.param(fin_wait_2, id="fin_wait_2")],
)
def test_data_after_close_resets(build: Builder) -> None:
    # RFC 9293 3.10.4 / RFC 2525 2.17: the application closed: nobody will read it.
    peer = build(how="close")
    peer.send("P.", ack=peer.iss + 2, payload=b"too late")
    out = peer.expect_many(1)[0]
    assert out.flags == 0x14 and out.seq == peer.iss + 2
    assert peer.state is State.CLOSED
