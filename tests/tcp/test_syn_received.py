"""SYN_RECEIVED (RFC 9293 3.10.7.4 for a passive open, RFC 5961): the final ACK establishes; a bad
ACK gets RST <SEQ=SEG.ACK>; an exact RST or a new SYN returns the connection to LISTEN."""

from __future__ import annotations

import pytest

from stack import seq
from stack.tcp.state import State

from .harness import (
    LOCAL_PORT,
    REMOTE_PORT,
    isns,
    remote_ip,
    syn_opts,
    syn_received,
    syn_sent,
)

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


@isns
def test_ack_establishes(isn: tuple[int, int]) -> None:
    peer = syn_received(isn)
    peer.send(".", ack=seq.add(peer.iss, 1))
    peer.expect_none()
    assert peer.state is State.ESTABLISHED
    assert peer.transitions() == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED"]
    assert peer.listener is not None and peer.listener.accept() is peer.conn
    assert peer.deadline() is None  # the SYN-ACK timer is off


@isns
def test_ack_with_data_establishes_and_delivers(isn: tuple[int, int]) -> None:
    peer = syn_received(isn)
    peer.send("P.", payload=b"GET /")
    peer.expect(".", ack=seq.add(peer.irs, 6), win=8192 - 5)
    assert peer.state is State.ESTABLISHED
    assert peer.app_recv() == b"GET /"


@isns
def test_ack_of_unsent_gets_rst(isn: tuple[int, int]) -> None:
    peer = syn_received(isn)
    bad = seq.add(peer.iss, 2)
    peer.send(".", ack=bad)
    peer.expect("R", seq=bad, ack=0)
    assert peer.state is State.SYN_RECEIVED
    assert peer.drops("syn_received_bad_ack") == 1


def test_ack_not_covering_syn_gets_rst() -> None:
    peer = syn_received()
    peer.send(".", ack=peer.iss)
    peer.expect("R", seq=peer.iss, ack=0)
    assert peer.state is State.SYN_RECEIVED


@isns
def test_exact_rst_returns_to_listen(isn: tuple[int, int]) -> None:
    peer = syn_received(isn)
    peer.send("R", seq=seq.add(peer.irs, 1))
    peer.expect_none()
    assert peer.transitions() == ["LISTEN", "SYN_RECEIVED", "LISTEN"]
    assert not peer.host.connections
    assert peer.listener is not None
    assert peer.listener.accept() is None
    assert not peer.listener.half_open
    assert peer.host.deadline() is None
    # The listener still listens: a new SYN gets a SYN-ACK.
    peer.send("S", seq=77)
    peer.expect("S.", seq=peer.iss, ack=78, options=syn_opts())


def test_exact_rst_ack_returns_to_listen() -> None:
    peer = syn_received()
    peer.send("R.", seq=peer.irs + 1, ack=peer.iss + 1)
    peer.expect_none()
    assert peer.state is State.LISTEN
    assert not peer.host.connections


@isns
def test_inexact_rst_in_window_gets_challenge_ack(isn: tuple[int, int]) -> None:
    peer = syn_received(isn)
    peer.send("R", seq=seq.add(peer.irs, 100))
    peer.expect(".", seq=seq.add(peer.iss, 1), ack=seq.add(peer.irs, 1))
    assert peer.state is State.SYN_RECEIVED


def test_rst_out_of_window_is_dropped() -> None:
    peer = syn_received()
    peer.send("R", seq=peer.irs + 1 + 8192)
    peer.expect_none()
    assert peer.state is State.SYN_RECEIVED
    assert peer.drops("rst_out_of_window") == 1


def test_retransmitted_syn_gets_syn_ack_again() -> None:
    peer = syn_received()
    peer.send("S", seq=peer.irs)
    peer.expect("S.", seq=peer.iss, ack=peer.irs + 1, options=syn_opts())
    assert peer.state is State.SYN_RECEIVED


def test_new_syn_in_window_returns_to_listen() -> None:
    # RFC 9293 3.10.7.4 fourth check, SYN-RECEIVED of a passive OPEN: back to LISTEN.
    peer = syn_received()
    peer.send("S", seq=peer.irs + 10)
    peer.expect_none()
    assert peer.transitions() == ["LISTEN", "SYN_RECEIVED", "LISTEN"]
    assert not peer.host.connections


def test_segment_out_of_window_gets_ack() -> None:
    peer = syn_received()
    peer.send(".", seq=peer.irs + 100_000, payload=b"x")
    peer.expect(".", seq=peer.iss + 1, ack=peer.irs + 1)
    assert peer.state is State.SYN_RECEIVED


def test_segment_without_ack_is_dropped() -> None:
    peer = syn_received()
    peer.send("P", payload=b"data")
    peer.expect_none()
    assert peer.state is State.SYN_RECEIVED
    assert peer.drops("no_ack") == 1


def test_fin_ack_establishes_then_close_wait() -> None:
    peer = syn_received()
    peer.send("F.")
    peer.expect(".", ack=peer.irs + 2, win=8191)
    assert peer.transitions() == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT"]
    assert peer.listener is not None
    conn = peer.listener.accept()
    assert conn is not None and conn.at_eof


def test_simultaneous_open_exact_rst_refuses() -> None:
    peer = syn_sent()
    peer.send("S")
    peer.expect("S.", seq=peer.iss, options=syn_opts())
    peer.send("R.", seq=peer.irs + 1, ack=peer.iss + 1)
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert isinstance(peer.c().error, ConnectionRefusedError)


def test_simultaneous_open_syn_in_window_gets_challenge_ack() -> None:
    peer = syn_sent()
    peer.send("S")
    peer.expect("S.", seq=peer.iss, options=syn_opts())
    peer.send("S", seq=peer.irs + 5)  # no listener: handled as in a synchronized state
    peer.expect(".", seq=peer.iss + 1, ack=peer.irs + 1)
    assert peer.state is State.SYN_RECEIVED


def test_half_open_is_found_by_its_four_tuple() -> None:
    peer = syn_received()
    assert peer.host.find(LOCAL_PORT, remote_ip(), REMOTE_PORT) is peer.conn
    assert peer.listener is not None and peer.listener.accept() is None
