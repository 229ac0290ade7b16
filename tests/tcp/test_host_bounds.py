"""Host-wide bounds (stack.guard): orphans, TIME_WAIT buckets, RSTs and ICMP per second, each
biting with its counter."""

from __future__ import annotations

from stack.config import TcpConfig
from stack.tcp.state import State
from stack.wire import icmp
from stack.wire.ipv4 import PROTO_ICMP, IPv4Packet, build_ipv4

from .harness import LOCAL_IP, PLAIN, REMOTE_IP, REMOTE_PORT, Peer, established_passive


def peers(config: TcpConfig, n: int) -> list[Peer]:
    """n established connections to one host, from ports REMOTE_PORT, REMOTE_PORT + 1, ..."""
    first = established_passive(config=config, backlog=16)
    out = [first]
    for i in range(1, n):
        p = Peer(first.host, first.sink, iss=first.iss, irs=1000 * i, remote_port=REMOTE_PORT + i)
        p.send("S")
        p.segments()
        p.send(".")
        assert first.listener is not None
        p.conn = first.listener.accept()
        out.append(p)
    return out


def test_past_max_orphans_a_closed_connection_is_reset() -> None:
    a, b, c = peers(PLAIN.with_(max_orphans=2), 3)
    for p in (a, b):
        p.app_close()
        p.expect("F.")  # FIN_WAIT_1, never acknowledged: orphans
    c.app_close()
    out = c.expect_many(2)  # its FIN, then the reset of the orphan too many
    assert [o.flags & 0x04 for o in out] == [0, 0x04]
    assert c.state is State.CLOSED and c.transitions()[-1] == "CLOSED"
    assert a.host.counters["max_orphans"] == 1
    assert a.state is State.FIN_WAIT_1 and b.state is State.FIN_WAIT_1
    a.send(".")  # a's FIN acknowledged: FIN_WAIT_2, still an orphan, still counted
    assert a.state is State.FIN_WAIT_2
    b.send(".")
    assert b.state is State.FIN_WAIT_2 and a.host.counters["max_orphans"] == 1


def test_past_max_tw_buckets_time_wait_is_skipped() -> None:
    a, b = peers(PLAIN.with_(max_tw_buckets=1), 2)
    for p in (a, b):
        p.app_close()
        p.expect("F.")
        p.send("F.")
        p.expect_win = PLAIN.rcvbuf - 1
        p.expect(".")  # the FIN is acknowledged either way
    assert a.state is State.TIME_WAIT
    assert b.state is State.CLOSED and b.transitions()[-2:] == ["TIME_WAIT", "CLOSED"]
    assert a.host.counters["max_tw_buckets"] == 1
    assert len(a.host.connections) == 1
    b.expect_none()  # closed without a RST


def test_a_shutdown_connection_in_time_wait_is_no_bucket() -> None:
    """Not orphaned (the application still holds it): not counted, never cut short."""
    (a,) = peers(PLAIN.with_(max_tw_buckets=0), 1)
    a.app_shutdown()
    a.expect("F.")
    a.send("F.")
    a.expect_win = PLAIN.rcvbuf - 1
    a.expect(".")
    assert a.state is State.TIME_WAIT and a.host.counters["max_tw_buckets"] == 0


def test_rsts_for_closed_ports_are_rate_limited() -> None:
    peer = established_passive(config=PLAIN.with_(rst_per_second=10, rst_burst=5))
    stray = Peer(peer.host, peer.sink, iss=peer.iss, irs=1, local_port=9)  # nobody listens on 9
    for _ in range(20):
        stray.send("S", seq=1)
    assert len(stray.expect_many(5)) == 5
    assert peer.host.counters["rst_rate_limited"] == 15
    stray.now = 0.3  # three tokens come back
    for _ in range(5):
        stray.send("S", seq=1)
    assert len(stray.expect_many(3)) == 3


def test_icmp_messages_are_rate_limited() -> None:
    peer = established_passive(config=PLAIN.with_(icmp_per_second=10, icmp_burst=5))
    ping = build_icmp_echo()
    for _ in range(20):
        peer.host.receive(ping, 0.0)
    assert len(peer.host.take_packets()) == 5
    assert peer.host.counters["icmp_rate_limited"] == 15 and peer.host.counters["icmp_echo"] == 5


def build_icmp_echo() -> bytes:
    msg = icmp.build_icmp(icmp.IcmpMessage(icmp.ECHO_REQUEST, 0, 0x00010001, b"ping"))
    return build_ipv4(IPv4Packet(REMOTE_IP, LOCAL_IP, PROTO_ICMP, msg))
