"""The edges every open state shares (RFC 9293 3.10.5 ABORT, 3.8.3 user timeout, RFC 1122
4.2.3.6 keepalive): each ends in CLOSED with its own cause, as the peer sees it on the wire."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stack import seq
from stack.tcp.state import State
from stack.trace import StateChange

from . import harness
from .harness import Peer

ABORTED_WITH_RST: dict[str, Callable[[], Peer]] = {
    "FIN_WAIT_1": harness.fin_wait_1,
    "CLOSE_WAIT": harness.close_wait,
    "CLOSING": harness.closing,
    "LAST_ACK": harness.last_ack,
}


def last_cause(peer: Peer) -> str:
    changes: list[StateChange] = [c for c in peer.sink.of(StateChange) if c.conn == peer.conn_id]
    return changes[-1].cause


@pytest.mark.parametrize("name", list(ABORTED_WITH_RST))
def test_abort_sends_rst_at_snd_nxt_and_closes(name: str) -> None:
    peer = ABORTED_WITH_RST[name]()
    assert peer.state is State[name]
    peer.app_abort()
    peer.expect("R.")
    assert peer.transitions()[-2:] == [name, "CLOSED"]
    assert last_cause(peer) == "call:abort"


def test_abort_in_syn_sent_closes_without_a_segment() -> None:
    peer = harness.syn_sent()
    peer.app_abort()
    peer.expect_none()
    assert peer.transitions() == ["CLOSED", "SYN_SENT", "CLOSED"]
    with pytest.raises(ConnectionAbortedError):
        peer.app_recv()


def _unacked_data(peer: Peer) -> Peer:
    peer.app_send(b"x" * 100)
    peer.expect("P.", payload=b"x" * 100)
    return peer


UNANSWERED: dict[str, Callable[[], Peer]] = {
    "ESTABLISHED": lambda: _unacked_data(harness.established()),
    "CLOSE_WAIT": lambda: _unacked_data(harness.close_wait()),
    "FIN_WAIT_1": harness.fin_wait_1,
    "CLOSING": harness.closing,
    "LAST_ACK": harness.last_ack,
}


@pytest.mark.parametrize("name", list(UNANSWERED))
def test_retries_exhausted_close_with_timeout(name: str) -> None:
    peer = UNANSWERED[name]()
    assert peer.state is State[name]
    retransmissions = 0
    while peer.state is not State.CLOSED:
        peer.fire()
        retransmissions += len(peer.segments())
    assert retransmissions == harness.PLAIN.data_retries
    assert peer.transitions()[-2:] == [name, "CLOSED"]
    assert last_cause(peer) == "timer:retries"
    assert peer.deadline() is None


@pytest.mark.parametrize("name", ["ESTABLISHED", "CLOSE_WAIT"])
def test_unanswered_keepalive_probes_close_the_connection(name: str) -> None:
    peer = harness.established() if name == "ESTABLISHED" else harness.close_wait()
    peer.c().set_keepalive(True, peer.now)
    peer.host.app_call(peer.c())
    probes = []
    while peer.state is not State.CLOSED:
        peer.fire()
        probes += peer.segments()
    assert len(probes) == harness.PLAIN.keepalive_count
    assert {(p.seq, p.payload) for p in probes} == {(seq.add(peer.ack, -1), b"")}  # SND.NXT - 1
    assert peer.transitions()[-2:] == [name, "CLOSED"]
    assert last_cause(peer) == "timer:keepalive"
    with pytest.raises(TimeoutError):
        peer.app_send(b"late")
