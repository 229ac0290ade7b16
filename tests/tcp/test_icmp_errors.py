"""ICMP errors about a connection's segments, one rule for both families: in SYN-SENT a hard
error aborts the connection at once, sending nothing, with the error the application reads
(RFC 1122 4.2.3.9, RFC 5461 section 4); any other is soft and the SYN goes on being retried.
An ICMPv6 error counts as the ICMPv4 message RFC 7915 section 5.2 translates it to. Under the
default profile protocol and port unreachable are hard; under the freebsd one (FreeBSD's
icmp_may_rst=1) administratively prohibited and TTL (hop limit) exceeded too. An error is acted on
only if the sequence number it quotes lies in SND.UNA..SND.NXT-1 (RFC 5927 4.1)."""

from __future__ import annotations

import errno
import gc
import weakref

import pytest

from stack import seq
from stack.config import freebsd_profile
from stack.inet import pack
from stack.tcp.state import State
from stack.trace import StateChange
from stack.wire import icmp, icmpv6
from stack.wire.ipv4 import PROTO_ICMP
from stack.wire.ipv6 import NH_ICMPV6
from stack.wire.segment import ip_packet, tcp_packet
from stack.wire.tcp import Flags, TcpSegment

from . import harness
from .harness import LOCAL_PORT, PLAIN, RCVBUF, REMOTE_PORT, Peer, established_active, syn_sent

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6

FREEBSD = freebsd_profile(window_scaling=False, sack=False, timestamps=False, rcvbuf=RCVBUF)
PROFILES = {"default": PLAIN, "freebsd": FREEBSD}

# The same error in each family: (ICMPv4 type, code), (ICMPv6 type, code) (RFC 792, RFC 4443).
ERRORS = {
    "port unreachable": ((icmp.DEST_UNREACH, icmp.PORT_UNREACH),
                         (icmpv6.DEST_UNREACH, icmpv6.PORT_UNREACH)),
    "protocol unreachable": ((icmp.DEST_UNREACH, icmp.PROTO_UNREACH),
                             (icmpv6.PARAM_PROBLEM, 1)),  # unrecognized Next Header
    "administratively prohibited": ((icmp.DEST_UNREACH, 13),
                                    (icmpv6.DEST_UNREACH, icmpv6.ADMIN_PROHIBITED)),
    "ttl exceeded in transit": ((icmp.TIME_EXCEEDED, 0), (icmpv6.TIME_EXCEEDED, 0)),
    "host unreachable": ((icmp.DEST_UNREACH, icmp.HOST_UNREACH),
                         (icmpv6.DEST_UNREACH, icmpv6.ADDRESS_UNREACH)),
    "reassembly time exceeded": ((icmp.TIME_EXCEEDED, 1), (icmpv6.TIME_EXCEEDED, 1)),
}

# What each does to a connection in SYN-SENT, by profile: the errno it aborts with, or None (soft).
IN_SYN_SENT = [
    ("port unreachable", "default", errno.ECONNREFUSED),
    ("port unreachable", "freebsd", errno.ECONNREFUSED),
    ("protocol unreachable", "default", errno.ECONNREFUSED),
    ("protocol unreachable", "freebsd", errno.ECONNREFUSED),
    ("administratively prohibited", "default", None),
    ("administratively prohibited", "freebsd", errno.ECONNREFUSED),
    ("ttl exceeded in transit", "default", None),
    ("ttl exceeded in transit", "freebsd", errno.EHOSTUNREACH),
    ("host unreachable", "default", None),
    ("host unreachable", "freebsd", None),
    ("reassembly time exceeded", "default", None),
    ("reassembly time exceeded", "freebsd", None),
]


def router() -> str:
    return "fd00::fe" if harness.FAMILY is harness.IPV6 else "10.0.0.254"


def icmp_error(kind: str, quoted_seq: int) -> bytes:
    """An ICMP(v6) error from a router on the path, quoting a segment the host sent at quoted_seq."""
    local, remote = harness.FAMILY.local_ip, harness.FAMILY.remote_ip
    quote = tcp_packet(local, remote, TcpSegment(LOCAL_PORT, REMOTE_PORT, quoted_seq, 0, Flags.SYN, 8192))
    v4, v6 = ERRORS[kind]
    if harness.FAMILY is harness.IPV6:
        msg = icmpv6.Icmpv6Message(*v6, 0, quote)
        return ip_packet(router(), local, icmpv6.build_icmpv6(msg, pack(router()), pack(local)), NH_ICMPV6)
    return ip_packet(router(), local, icmp.build_icmp(icmp.IcmpMessage(*v4, 0, quote)), PROTO_ICMP)


def expect_retrying(peer: Peer) -> None:
    """Soft: the connection is as it was, and its retransmission timer still resends the SYN."""
    assert peer.state is State.SYN_SENT and peer.c().error is None
    peer.expect_none()
    peer.fire()
    [again] = peer.segments()
    assert (again.flags, again.seq) == (Flags.SYN, peer.iss)


@pytest.mark.parametrize(("kind", "profile", "err"), IN_SYN_SENT)
def test_an_error_in_syn_sent_aborts_if_hard(kind: str, profile: str, err: int | None) -> None:
    peer = syn_sent(config=PROFILES[profile])
    peer.host.receive(icmp_error(kind, peer.iss), peer.now)
    if err is None:
        expect_retrying(peer)
        return
    assert peer.state is State.CLOSED
    error = peer.c().error  # what connect() raises and SO_ERROR reports (stack.socket)
    assert isinstance(error, OSError) and error.errno == err
    assert type(error) is (ConnectionRefusedError if err == errno.ECONNREFUSED else OSError)
    peer.expect_none()  # no RST, nothing: the peer never answered
    assert peer.deadline() is None  # no SYN retransmission left to come
    assert peer.host.find(LOCAL_PORT, harness.FAMILY.remote_ip, REMOTE_PORT) is None
    [abort] = [e for e in peer.sink.of(StateChange) if e.new == "CLOSED"]
    v4, v6 = ERRORS[kind]
    assert abort.cause == (f"icmp6:{v6[0]}/{v6[1]}" if harness.FAMILY is harness.IPV6
                           else f"icmp:{v4[0]}/{v4[1]}")


@pytest.mark.parametrize("profile", ["default", "freebsd"])
def test_with_hard_errors_off_port_unreachable_is_soft(profile: str) -> None:
    """FreeBSD's icmp_may_rst=0 (the drill maps it to icmp_hard_errors)."""
    peer = syn_sent(config=PROFILES[profile].with_(icmp_hard_errors=False))
    peer.host.receive(icmp_error("port unreachable", peer.iss), peer.now)
    expect_retrying(peer)


@pytest.mark.parametrize("profile", ["default", "freebsd"])
@pytest.mark.parametrize("delta", [-1, 1])  # just below SND.UNA, and SND.NXT itself
def test_an_error_quoting_a_sequence_number_never_sent_is_dropped(profile: str, delta: int) -> None:
    peer = syn_sent(config=PROFILES[profile])
    peer.host.receive(icmp_error("port unreachable", (peer.iss + delta) % 2**32), peer.now)
    reason = "icmp6_out_of_window" if harness.FAMILY is harness.IPV6 else "icmp_seq_out_of_window"
    assert peer.host.counters[reason] == 1
    expect_retrying(peer)


@pytest.mark.parametrize("profile", ["default", "freebsd"])
@pytest.mark.parametrize("kind", list(ERRORS))
def test_every_error_is_soft_once_synchronized(profile: str, kind: str) -> None:
    """RFC 5461 section 4: a hard error aborts only a connection still in SYN-SENT."""
    peer = established_active(config=PROFILES[profile])
    peer.app_send(b"x" * 100)
    [data] = peer.segments()
    peer.host.receive(icmp_error(kind, data.seq), peer.now)
    assert peer.state is State.ESTABLISHED and peer.c().error is None
    peer.send(".", ack=peer.ack)
    peer.expect_none()


@pytest.mark.parametrize("kind", ["host unreachable", "reassembly time exceeded"])
def test_a_soft_error_is_what_the_application_hears_when_syn_sent_times_out(kind: str) -> None:
    """RFC 1122 4.2.3.9: TCP keeps trying on a soft error, and reports it to the application
    (here: as the error of the connection that then gives up), rather than a bare timeout."""
    peer = syn_sent(config=PLAIN)
    peer.host.receive(icmp_error(kind, peer.iss), peer.now)
    expect_retrying(peer)
    while peer.state is not State.CLOSED:
        peer.fire()
    error = peer.c().error
    assert type(error) is OSError and error.errno == errno.EHOSTUNREACH, error


def test_a_soft_error_does_not_outlive_a_connection_that_ends_in_a_time_wait_record() -> None:
    """The host remembers a soft error per connection until it closes; an orphan that enters
    TIME_WAIT is swapped for a light record, and its connection object must then be let go."""
    peer = established_active(config=PLAIN)
    peer.app_send(b"x" * 100)
    [data] = peer.segments()
    peer.host.receive(icmp_error("host unreachable", data.seq), peer.now)  # soft: remembered
    peer.send(".", ack=seq.add(data.seq, 100))
    peer.app_close()
    peer.expect("F.")
    peer.send(".")
    peer.send("F.")
    peer.expect_win = RCVBUF - 1
    peer.expect(".")
    assert peer.state is State.TIME_WAIT
    old = weakref.ref(peer.c())
    peer.host.take_app_events()  # the host's pending notifications held it too
    peer.conn = None
    gc.collect()
    assert old() is None
