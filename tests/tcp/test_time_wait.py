"""TIME_WAIT (RFC 9293 3.10.7.4, 3.6.1): 2*MSL, re-ACK a retransmitted FIN and restart the timer."""

from __future__ import annotations

import pytest

from stack import seq
from stack.config import TcpConfig
from stack.tcp.state import State

from .harness import (
    LOCAL_PORT,
    PLAIN,
    RCVBUF,
    REMOTE_PORT,
    fin_wait_2,
    isns,
    remote_ip,
    syn_opts,
    time_wait,
)

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


@isns
def test_retransmitted_fin_is_reacked_and_restarts_2msl(isn: tuple[int, int]) -> None:
    peer = time_wait(isn)
    assert peer.deadline() == 60.0
    peer.now = 25.0
    peer.send("F.", seq=seq.add(peer.irs, 1))
    peer.expect(".", seq=seq.add(peer.iss, 2), ack=seq.add(peer.irs, 2), win=RCVBUF - 1)
    assert peer.deadline() == 85.0
    assert peer.state is State.TIME_WAIT


@isns
def test_expires_exactly_at_2msl(isn: tuple[int, int]) -> None:
    peer = time_wait(isn)
    peer.advance(59.999)
    assert peer.state is State.TIME_WAIT
    peer.advance(60.0)
    assert peer.state is State.CLOSED
    assert peer.transitions()[-2:] == ["TIME_WAIT", "CLOSED"]
    assert not peer.host.connections
    assert peer.host.deadline() is None
    peer.expect_none()


def test_msl_is_configurable() -> None:
    peer = fin_wait_2()
    peer.c().config = PLAIN.with_(msl=1.5)
    peer.send("F.")
    peer.expect(".", win=RCVBUF - 1)
    assert peer.deadline() == 3.0


def test_default_is_sixty_seconds() -> None:
    assert 2 * TcpConfig().msl == 60.0


def test_duplicate_ack_is_ignored() -> None:
    peer = time_wait()
    peer.send(".", ack=peer.iss + 2)
    peer.expect_none()
    assert peer.state is State.TIME_WAIT
    assert peer.deadline() == 60.0


def test_exact_rst_closes() -> None:
    peer = time_wait()
    peer.send("R")
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert not peer.host.connections


def test_inexact_rst_gets_challenge_ack() -> None:
    peer = time_wait()
    peer.send("R", seq=peer.seq + 1)
    peer.expect(".", seq=peer.iss + 2, win=RCVBUF - 1)
    assert peer.state is State.TIME_WAIT


def test_syn_without_listener_gets_challenge_ack() -> None:
    peer = time_wait(active=True)
    peer.send("S", seq=peer.seq)
    peer.expect(".", seq=peer.iss + 2, win=RCVBUF - 1)
    assert peer.state is State.TIME_WAIT


def test_new_syn_above_old_sequence_reuses_the_four_tuple() -> None:
    # RFC 6191 / RFC 9293 3.10.7.4 note: with a listener, a SYN above RCV.NXT opens anew.
    peer = time_wait()
    old = peer.c()
    peer.send("S", seq=peer.seq + 100_000)
    peer.expect("S.", seq=peer.iss, ack=peer.seq + 100_001, win=RCVBUF, options=syn_opts())
    assert old.state is State.CLOSED
    new = peer.host.find(LOCAL_PORT, remote_ip(), REMOTE_PORT)
    assert new is not None and new is not old and new.state is State.SYN_RECEIVED


def test_segments_go_to_the_time_wait_connection_not_the_listener() -> None:
    peer = time_wait()
    peer.send(".", ack=peer.iss + 2, payload=b"late")
    peer.expect_none()  # neither a RST from the listener nor a SYN-ACK
    assert peer.state is State.TIME_WAIT
