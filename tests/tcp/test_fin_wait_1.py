"""FIN_WAIT_1 (RFC 9293 3.10.7.4): our FIN is out. Its ACK leads to FIN_WAIT_2, the peer's FIN
alone to CLOSING, FIN+ACK of ours straight to TIME_WAIT."""

from __future__ import annotations

import pytest

from stack import seq
from stack.tcp.state import State

from .harness import RCVBUF, fin_wait_1, isns

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


@isns
def test_ack_of_fin_goes_to_fin_wait_2(isn: tuple[int, int]) -> None:
    peer = fin_wait_1(isn)
    peer.send(".", ack=seq.add(peer.iss, 2))
    peer.expect_none()
    assert peer.state is State.FIN_WAIT_2
    assert peer.deadline() is None  # half-closed by shutdown: no FIN_WAIT_2 timer


@isns
def test_fin_ack_of_our_fin_goes_straight_to_time_wait(isn: tuple[int, int]) -> None:
    peer = fin_wait_1(isn)
    peer.send("F.", ack=seq.add(peer.iss, 2))
    peer.expect(".", seq=seq.add(peer.iss, 2), ack=seq.add(peer.irs, 2), win=RCVBUF - 1)
    assert peer.transitions()[-2:] == ["FIN_WAIT_1", "TIME_WAIT"]
    assert peer.deadline() == 60.0


@isns
def test_fin_without_ack_of_ours_goes_to_closing(isn: tuple[int, int]) -> None:
    peer = fin_wait_1(isn)
    peer.send("F.", ack=seq.add(peer.iss, 1))
    peer.expect(".", seq=seq.add(peer.iss, 2), ack=seq.add(peer.irs, 2), win=RCVBUF - 1)
    assert peer.transitions()[-2:] == ["FIN_WAIT_1", "CLOSING"]


def test_ack_below_fin_stays() -> None:
    peer = fin_wait_1()
    peer.send(".", ack=peer.iss + 1)
    peer.expect_none()
    assert peer.state is State.FIN_WAIT_1


def test_data_after_shutdown_is_still_received() -> None:
    peer = fin_wait_1(how="shutdown")
    peer.send("P.", ack=peer.iss + 1, payload=b"reply")
    peer.expect(".", win=RCVBUF - 5)
    assert peer.state is State.FIN_WAIT_1
    assert peer.app_recv() == b"reply"


def test_data_after_close_resets() -> None:
    # RFC 9293 3.10.4 / RFC 2525 2.17: the application closed: nobody will read it.
    peer = fin_wait_1(how="close")
    peer.send("P.", ack=peer.iss + 2, payload=b"too late")
    out = peer.expect_many(1)[0]
    assert out.flags == 0x14 and out.seq == peer.iss + 2
    assert peer.state is State.CLOSED


def test_fin_ack_with_data_delivers_then_time_wait() -> None:
    peer = fin_wait_1(how="shutdown")
    peer.send("FP.", ack=peer.iss + 2, payload=b"bye")
    peer.expect(".", seq=peer.iss + 2, win=RCVBUF - 4)
    assert peer.state is State.TIME_WAIT
    assert peer.app_recv() == b"bye"


def test_fin_is_retransmitted_on_timeout() -> None:
    peer = fin_wait_1()
    peer.fire()
    peer.expect("F.", seq=peer.iss + 1)
    assert peer.state is State.FIN_WAIT_1


def test_exact_rst_resets() -> None:
    peer = fin_wait_1()
    peer.send("R", seq=peer.irs + 1)
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert isinstance(peer.c().error, ConnectionResetError)


def test_ack_beyond_fin_is_dropped_with_ack() -> None:
    peer = fin_wait_1()
    peer.send(".", ack=peer.iss + 3)
    peer.expect(".", seq=peer.iss + 2)
    assert peer.state is State.FIN_WAIT_1
    assert peer.drops("ack_of_unsent_data") == 1


def test_send_after_shutdown_is_broken_pipe() -> None:
    peer = fin_wait_1()
    try:
        peer.c().send(b"x", peer.now)
    except BrokenPipeError:
        pass
    else:
        raise AssertionError("send after shutdown succeeded")


@isns
def test_active_opener_fin_ack_to_time_wait(isn: tuple[int, int]) -> None:
    peer = fin_wait_1(isn, active=True)
    peer.send("F.", ack=seq.add(peer.iss, 2))
    peer.expect(".", win=RCVBUF - 1)
    assert peer.transitions() == ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "TIME_WAIT"]
