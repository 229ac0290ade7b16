"""Segments with both SYN and FIN (TcpConfig.drop_synfin, FreeBSD's net.inet.tcp.drop_synfin).

Off (every profile's default), RFC 9293 3.10.7 processes such a segment as a SYN; on, the host
drops it before demultiplexing, in any state and for any port: nothing is answered, nothing
changes, and it is counted (`tcp_syn_fin`) and traced as a Drop.
"""

from __future__ import annotations

import pytest

from stack import seq
from stack.config import freebsd_profile
from stack.host import DROP_SYN_FIN
from stack.tcp.state import State
from stack.wire.tcp import Mss

from .harness import (
    LOCAL_PORT,
    PEER_MSS,
    PLAIN,
    Peer,
    established,
    listening,
    make_host,
    syn_opts,
    syn_sent,
    time_wait,
)

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6

DROPPING = PLAIN.with_(drop_synfin=True)


def _dropped_once(peer: Peer) -> None:
    assert peer.host.counters[DROP_SYN_FIN] == 1
    assert peer.drops(DROP_SYN_FIN) == 1
    peer.expect_none()


def test_default_listen_answers_a_syn_fin_with_a_syn_ack() -> None:
    peer = listening()
    peer.send("SF", options=(Mss(PEER_MSS),), payload=b"abc")
    peer.expect("S.", seq=peer.iss, ack=seq.add(peer.irs, 1), options=syn_opts())
    assert peer.host.counters[DROP_SYN_FIN] == 0


def test_listen_drops_a_syn_fin_and_still_opens_for_a_syn() -> None:
    peer = listening(config=DROPPING)
    peer.send("SF", options=(Mss(PEER_MSS),), payload=b"abc")
    _dropped_once(peer)
    assert peer.listener is not None and not peer.listener.half_open
    assert not peer.host.connections
    peer.now = 1.0
    peer.seq = seq.add(peer.irs, 10)
    syn = peer.send("S", options=(Mss(PEER_MSS),))
    peer.expect("S.", seq=peer.iss, ack=seq.add(syn.seq, 1), options=syn_opts())


def test_syn_sent_drops_a_syn_fin_and_keeps_retransmitting_its_syn() -> None:
    peer = syn_sent(config=DROPPING)
    peer.send("SF", options=(Mss(PEER_MSS),), payload=b"abc")
    _dropped_once(peer)
    assert peer.state is State.SYN_SENT
    assert peer.fire() == pytest.approx(PLAIN.rto_initial)
    peer.expect("S", seq=peer.iss, options=syn_opts())
    peer.send("S.", seq=peer.irs, options=(Mss(PEER_MSS),))
    peer.expect(".", seq=seq.add(peer.iss, 1), ack=seq.add(peer.irs, 1))
    assert peer.state is State.ESTABLISHED


@pytest.mark.parametrize("how", ["shutdown", "close"], ids=["connection", "record"])
def test_time_wait_drops_a_syn_fin_above_rcv_nxt_instead_of_reopening(how: str) -> None:
    peer = time_wait(how=how)
    peer.host.config = peer.host.config.with_(drop_synfin=True)  # host-wide, as a sysctl
    deadline = peer.deadline()
    peer.now = 1.0
    peer.send("SF", seq=seq.add(peer.seq, 1000))
    _dropped_once(peer)
    assert peer.state is State.TIME_WAIT
    assert peer.deadline() == deadline


def test_established_drops_a_syn_fin_without_a_challenge_ack() -> None:
    peer = established()
    peer.host.config = peer.host.config.with_(drop_synfin=True)
    peer.send("SF", seq=peer.seq)
    _dropped_once(peer)
    assert peer.state is State.ESTABLISHED
    assert peer.c().stats.challenge_acks == 0


def test_closed_port_drops_a_syn_fin_without_a_reset() -> None:
    host, sink = make_host(DROPPING)
    peer = Peer(host, sink, iss=1000, irs=500_000)
    peer.send("SF")
    _dropped_once(peer)
    assert host.counters["closed_port"] == 0 and host.counters["rst_sent"] == 0


def test_freebsd_profile_processes_a_syn_fin_unless_the_sysctl_is_set() -> None:
    assert not freebsd_profile().drop_synfin  # FreeBSD's default: net.inet.tcp.drop_synfin=0
    peer = listening(config=freebsd_profile())
    peer.send("SF", options=(Mss(PEER_MSS),))
    assert [s.flags for s in peer.segments()] == [0x12]  # a SYN-ACK
    peer = listening(config=freebsd_profile(drop_synfin=True))
    peer.send("SF", options=(Mss(PEER_MSS),))
    _dropped_once(peer)
    assert peer.host.find(LOCAL_PORT, peer.ip, peer.port) is None
