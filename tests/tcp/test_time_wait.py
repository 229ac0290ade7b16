"""TIME_WAIT (RFC 9293 3.10.7.4, 3.6.1): 2*MSL, re-ACK a retransmitted FIN and restart the timer."""

from __future__ import annotations

import gc
import weakref

import pytest

from stack import seq
from stack.config import TcpConfig
from stack.tcp.state import State
from stack.tcp.time_wait import TimeWaitRecord
from stack.trace import StateChange

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

# Each behaviour twice: the connection itself (the application still holds it, after shutdown)
# and the light record the host keeps once the application has closed it (stack.tcp.time_wait).
hows = pytest.mark.parametrize("how", ["shutdown", "close"], ids=["connection", "record"])


@hows
@isns
def test_retransmitted_fin_is_reacked_and_restarts_2msl(isn: tuple[int, int], how: str) -> None:
    peer = time_wait(isn, how=how)
    assert peer.deadline() == 60.0
    peer.now = 25.0
    peer.send("F.", seq=seq.add(peer.irs, 1))
    peer.expect(".", seq=seq.add(peer.iss, 2), ack=seq.add(peer.irs, 2), win=RCVBUF - 1)
    assert peer.deadline() == 85.0
    assert peer.state is State.TIME_WAIT


@hows
@isns
def test_expires_exactly_at_2msl(isn: tuple[int, int], how: str) -> None:
    peer = time_wait(isn, how=how)
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


@hows
def test_duplicate_ack_is_ignored(how: str) -> None:
    peer = time_wait(how=how)
    peer.send(".", ack=peer.iss + 2)
    peer.expect_none()
    assert peer.state is State.TIME_WAIT
    assert peer.deadline() == 60.0


@hows
def test_exact_rst_closes(how: str) -> None:
    peer = time_wait(how=how)
    peer.send("R")
    peer.expect_none()
    assert peer.state is State.CLOSED
    assert not peer.host.connections


@hows
def test_inexact_rst_gets_challenge_ack(how: str) -> None:
    peer = time_wait(how=how)
    peer.send("R", seq=peer.seq + 1)
    peer.expect(".", seq=peer.iss + 2, win=RCVBUF - 1)
    assert peer.state is State.TIME_WAIT


@hows
def test_syn_without_listener_gets_challenge_ack(how: str) -> None:
    peer = time_wait(active=True, how=how)
    peer.send("S", seq=peer.seq)
    peer.expect(".", seq=peer.iss + 2, win=RCVBUF - 1)
    assert peer.state is State.TIME_WAIT


@hows
def test_new_syn_above_old_sequence_reuses_the_four_tuple(how: str) -> None:
    # RFC 6191 / RFC 9293 3.10.7.4 note: with a listener, a SYN above RCV.NXT opens anew.
    peer = time_wait(how=how)
    old = peer.c()
    peer.send("S", seq=peer.seq + 100_000)
    peer.expect("S.", seq=peer.iss, ack=peer.seq + 100_001, win=RCVBUF, options=syn_opts())
    assert old.state is State.CLOSED
    new = peer.host.find(LOCAL_PORT, remote_ip(), REMOTE_PORT)
    assert new is not None and new is not old and new.state is State.SYN_RECEIVED


@hows
def test_segments_go_to_the_time_wait_connection_not_the_listener(how: str) -> None:
    peer = time_wait(how=how)
    peer.send(".", ack=peer.iss + 2, payload=b"late")
    peer.expect_none()  # neither a RST from the listener nor a SYN-ACK
    assert peer.state is State.TIME_WAIT


def test_a_closed_connection_waits_as_a_record_not_a_connection() -> None:
    peer = time_wait(how="close")
    (entry,) = peer.host.connections.values()
    assert isinstance(entry, TimeWaitRecord) and entry.id == peer.conn_id
    assert peer.host.find(LOCAL_PORT, remote_ip(), REMOTE_PORT) is None  # no application has it
    assert peer.c().state is State.TIME_WAIT  # the old object, until the record ends


def test_a_shutdown_connection_keeps_its_object_in_time_wait() -> None:
    peer = time_wait(how="shutdown")
    assert peer.host.find(LOCAL_PORT, remote_ip(), REMOTE_PORT) is peer.c()


@pytest.mark.parametrize("end", ["2msl", "rst"])
def test_a_record_nobody_else_holds_ends_through_the_table_traced_once(end: str) -> None:
    """The old connection object is gone: the record itself takes the TIME_WAIT -> CLOSED edge
    of the transition table and traces it, with the cause the connection would have given."""
    peer = time_wait(how="close")
    old = weakref.ref(peer.c())
    peer.host.take_app_events()  # the host's pending notifications held it too
    peer.conn = None
    gc.collect()
    assert old() is None
    if end == "2msl":
        peer.advance(60.0)
    else:
        peer.send("R", seq=seq.add(peer.irs, 2))
    assert peer.transitions()[-2:] == ["TIME_WAIT", "CLOSED"]
    assert peer.transitions().count("CLOSED") == 1
    closes = [e for e in peer.sink.events if isinstance(e, StateChange) and e.new == "CLOSED"]
    assert [e.cause for e in closes] == ["timer:time_wait" if end == "2msl" else "segment:R"]
    assert not peer.host.connections
    peer.expect_none()


def test_the_freebsd_profile_keeps_its_connection_through_time_wait() -> None:
    """A record answers by RFC 5961; FreeBSD's TIME_WAIT (tcp_twcheck) ACKs any segment but an
    exact duplicate ACK, so its connections wait in TIME_WAIT as themselves."""
    peer = fin_wait_2(how="close")
    peer.c().config = PLAIN.with_(time_wait_acks_all=True, rfc5961_rst=False, rfc5961_syn=False)
    peer.send("F.")
    peer.expect_win = RCVBUF - 1
    peer.expect(".")
    assert peer.state is State.TIME_WAIT
    assert peer.host.find(LOCAL_PORT, remote_ip(), REMOTE_PORT) is peer.c()


@hows
@pytest.mark.parametrize("ack_delta", [1, -70_000], ids=["unsent", "too_old"])
def test_an_ack_outside_the_acceptable_range_gets_a_challenge_ack(how: str, ack_delta: int) -> None:
    """RFC 5961 5.2 in TIME_WAIT too: SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT, or the segment
    is dropped and answered with a (rate-limited) challenge ACK; the connection and its record alike."""
    peer = time_wait(how=how)
    snd_nxt = seq.add(peer.iss, 2)  # our SYN and FIN
    peer.send(".", ack=seq.add(snd_nxt, ack_delta))
    peer.expect(".", seq=snd_nxt, win=RCVBUF - 1)
    assert peer.drops("ack_of_unsent_data" if ack_delta > 0 else "ack_too_old") == 1
    assert peer.state is State.TIME_WAIT and peer.deadline() == 60.0
