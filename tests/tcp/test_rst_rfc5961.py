"""RST and SYN in synchronized states (RFC 5961 sections 3, 4, 7; RFC 9293 3.10.7.4): only an exact
RST resets; an in-window one gets a challenge ACK, rate limited host-wide; a SYN gets one too."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stack import seq
from stack.tcp.state import State

from .harness import (
    PLAIN,
    RCVBUF,
    REMOTE_PORT,
    Peer,
    close_wait,
    closing,
    established,
    established_passive,
    fin_wait_1,
    fin_wait_2,
    isns,
    last_ack,
    time_wait,
)

BUILDERS: dict[str, Callable[[], Peer]] = {
    "ESTABLISHED": lambda: established(),
    "FIN_WAIT_1": lambda: fin_wait_1(),
    "FIN_WAIT_2": lambda: fin_wait_2(),
    "CLOSE_WAIT": lambda: close_wait(),
    "CLOSING": lambda: closing(),
    "LAST_ACK": lambda: last_ack(),
    "TIME_WAIT": lambda: time_wait(active=True),
}
RESET_ERROR = {"ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSE_WAIT"}

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


@isns
@pytest.mark.parametrize("flags", ["R", "R."])
def test_exact_rst_resets(isn: tuple[int, int], flags: str) -> None:
    peer = established(isn)
    peer.send(flags)
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert peer.transitions()[-2:] == ["ESTABLISHED", "CLOSED"]
    with pytest.raises(ConnectionResetError):
        peer.c().recv(10, peer.now)
    with pytest.raises(ConnectionResetError):
        peer.c().send(b"x", peer.now)
    assert not peer.host.connections
    assert peer.host.deadline() is None


@isns
@pytest.mark.parametrize("offset", [1, 100, RCVBUF - 1])
def test_in_window_inexact_rst_gets_challenge_ack(isn: tuple[int, int], offset: int) -> None:
    peer = established(isn)
    peer.send("R", seq=seq.add(peer.seq, offset))
    peer.expect(".", seq=seq.add(peer.iss, 1), ack=peer.seq)
    assert peer.state is State.ESTABLISHED
    assert peer.c().stats.challenge_acks == 1


@isns
@pytest.mark.parametrize("offset", [RCVBUF, 100_000, -1, -5000])
def test_out_of_window_rst_is_dropped_silently(isn: tuple[int, int], offset: int) -> None:
    peer = established(isn)
    peer.send("R", seq=seq.add(peer.seq, offset))
    peer.expect_none()
    assert peer.state is State.ESTABLISHED
    assert peer.drops("rst_out_of_window") == 1


def test_rst_with_data_at_rcv_nxt_resets() -> None:
    peer = established()
    peer.send("R.", payload=b"why")
    peer.expect_none()
    assert peer.state is State.CLOSED


def test_challenge_acks_are_rate_limited() -> None:
    peer = established_passive(config=PLAIN.with_(challenge_ack_limit=2))
    for _ in range(3):
        peer.send("R", seq=peer.seq + 10)
    assert len(peer.expect_many(2)) == 2
    assert peer.drops("challenge_ack_limited") == 1
    peer.now = 0.5
    peer.send("R", seq=peer.seq + 10)
    peer.expect_none()
    peer.now = 1.5  # a new one-second window
    peer.send("R", seq=peer.seq + 10)
    peer.expect(".")
    assert peer.state is State.ESTABLISHED


def test_challenge_ack_limit_is_host_wide() -> None:
    peer = established_passive(config=PLAIN.with_(challenge_ack_limit=1))
    other = Peer(peer.host, peer.sink, iss=peer.iss, irs=9_000, remote_port=REMOTE_PORT + 1)
    other.send("S")
    other.expect("S.", seq=peer.iss, options=None)
    other.send(".")
    peer.send("R", seq=peer.seq + 1)
    peer.expect(".")
    other.send("R", seq=other.seq + 1)
    other.expect_none()  # the one challenge ACK of this second went to the first connection


def test_rst_limit_does_not_stop_exact_resets() -> None:
    peer = established_passive(config=PLAIN.with_(challenge_ack_limit=1))
    peer.send("R", seq=peer.seq + 1)
    peer.send("R", seq=peer.seq + 2)
    assert len(peer.expect_many(1)) == 1
    peer.send("R")
    assert peer.state is State.CLOSED


@isns
@pytest.mark.parametrize("offset", [0, 1, 1000])
def test_syn_in_established_gets_challenge_ack(isn: tuple[int, int], offset: int) -> None:
    peer = established(isn)
    peer.send("S", seq=seq.add(peer.seq, offset))
    peer.expect(".", seq=seq.add(peer.iss, 1), ack=peer.seq)
    assert peer.state is State.ESTABLISHED
    assert peer.c().stats.challenge_acks == 1


def test_syn_ack_in_established_gets_challenge_ack() -> None:
    peer = established()
    peer.send("S.", seq=peer.seq)
    peer.expect(".", ack=peer.seq)
    assert peer.state is State.ESTABLISHED


def test_syn_out_of_window_gets_ack() -> None:
    peer = established()
    peer.send("S", seq=peer.seq - 100_000)
    peer.expect(".", ack=peer.seq)
    assert peer.state is State.ESTABLISHED


def test_old_duplicate_syn_of_this_connection_gets_ack() -> None:
    peer = established()
    peer.send("S", seq=peer.irs)
    peer.expect(".", ack=peer.seq)
    assert peer.state is State.ESTABLISHED


@pytest.mark.parametrize("state", list(BUILDERS))
def test_exact_rst_in_each_synchronized_state(state: str) -> None:
    peer = BUILDERS[state]()
    assert peer.state.value == state
    peer.send("R")
    peer.expect_none()
    assert peer.state is State.CLOSED
    if state in RESET_ERROR:
        assert isinstance(peer.c().error, ConnectionResetError)
    else:
        assert peer.c().error is None  # RFC 9293: CLOSING, LAST-ACK, TIME-WAIT just close
    assert not peer.host.connections


@pytest.mark.parametrize("state", list(BUILDERS))
def test_inexact_rst_in_each_synchronized_state(state: str) -> None:
    peer = BUILDERS[state]()
    peer.send("R", seq=peer.seq + 3)
    out = peer.expect_many(1)[0]
    assert (out.flags, out.ack) == (0x10, peer.seq)
    assert peer.state.value == state


@pytest.mark.parametrize("state", list(BUILDERS))
def test_syn_in_each_synchronized_state(state: str) -> None:
    peer = BUILDERS[state]()
    peer.send("S", seq=peer.seq)
    out = peer.expect_many(1)[0]
    assert (out.flags, out.ack) == (0x10, peer.seq)
    assert peer.state.value == state
