"""FIN_WAIT_2 (RFC 9293 3.10.7.4): our FIN is acknowledged; the peer may still send; its FIN
leads to TIME_WAIT."""

from __future__ import annotations

import pytest

from stack import seq
from stack.config import TcpConfig
from stack.tcp.state import State

from .harness import RCVBUF, fin_wait_2, isns

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


@isns
def test_fin_goes_to_time_wait(isn: tuple[int, int]) -> None:
    peer = fin_wait_2(isn)
    peer.send("F.")
    peer.expect(".", seq=seq.add(peer.iss, 2), ack=seq.add(peer.irs, 2), win=RCVBUF - 1)
    assert peer.transitions()[-3:] == ["FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT"]


def test_data_is_received_after_shutdown() -> None:
    peer = fin_wait_2()
    peer.send("P.", payload=b"more")
    peer.expect(".", win=RCVBUF - 4)
    assert peer.app_recv() == b"more"
    assert peer.state is State.FIN_WAIT_2


def test_data_then_fin() -> None:
    peer = fin_wait_2()
    peer.send("FP.", payload=b"end")
    peer.expect(".", win=RCVBUF - 4)
    assert peer.state is State.TIME_WAIT
    assert peer.app_recv() == b"end"
    assert peer.c().at_eof


def test_data_after_close_resets() -> None:
    peer = fin_wait_2(how="close")
    peer.send("P.", payload=b"orphan")
    out = peer.expect_many(1)[0]
    assert out.flags == 0x14 and out.seq == peer.iss + 2
    assert peer.state is State.CLOSED


def test_orphaned_fin_wait_2_times_out() -> None:
    peer = fin_wait_2(how="close")
    assert peer.deadline() == TcpConfig().fin_wait_2_timeout
    peer.fire()
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert not peer.host.connections


def test_out_of_window_segment_gets_ack() -> None:
    peer = fin_wait_2()
    peer.send(".", seq=peer.seq + 50_000, payload=b"x")
    peer.expect(".", seq=peer.iss + 2, ack=peer.seq)
    assert peer.state is State.FIN_WAIT_2


def test_out_of_order_fin_waits() -> None:
    peer = fin_wait_2()
    start = peer.seq
    peer.send("F.", seq=start + 3)
    peer.expect(".", ack=start)
    assert peer.state is State.FIN_WAIT_2
    peer.send(".", seq=start, payload=b"abc")
    peer.expect(".", ack=start + 4, win=RCVBUF - 4)
    assert peer.state is State.TIME_WAIT


def test_exact_rst_resets() -> None:
    peer = fin_wait_2()
    peer.send("R")
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert isinstance(peer.c().error, ConnectionResetError)


def test_inexact_rst_gets_challenge_ack() -> None:
    peer = fin_wait_2()
    peer.send("R", seq=peer.seq + 1)
    peer.expect(".", seq=peer.iss + 2)
    assert peer.state is State.FIN_WAIT_2
