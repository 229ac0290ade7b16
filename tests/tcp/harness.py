"""Segment-level test harness: one Host under test, and the test playing its remote peer.

The peer builds every segment by hand (`Peer.send`) and checks exactly what the host answers
(`Peer.expect` / `Peer.expect_none`). State builders (`listening`, `syn_received`, ... `time_wait`)
walk a connection into a state through real exchanges, each step checked, so a test starts from a
known point: `peer.seq` is the peer's next sequence number, `peer.ack` the host's (what the peer
acknowledges), `peer.iss` the host's initial sequence number, `peer.irs` the peer's.

The default configuration turns window scaling, SACK and timestamps off and ACKs at once (no
delayed ACK), so a reply is one predictable segment; option tests use their own configuration.

Address family: the builders and `Peer` speak the family in `FAMILY` (IPv4 unless a test module
uses the `family` fixture of tests/tcp/conftest.py, which runs each of its tests over IPv4 and
over IPv6). Under IPv6 the host has both addresses and the peer talks to its IPv6 one.
"""

from __future__ import annotations

import random
import weakref
from dataclasses import dataclass
from typing import Any

import pytest

from stack import seq
from stack.config import TcpConfig
from stack.host import Host
from stack.inet import is_ipv6, pack, tcp_overhead
from stack.tcp.connection import TcpConnection
from stack.tcp.listener import Listener
from stack.tcp.state import State
from stack.trace import MemorySink, Trace, conn_id
from stack.wire.ipv4 import PROTO_TCP, IPv4Packet, build_ipv4, parse_ipv4
from stack.wire.ipv6 import IPv6Packet, build_ipv6, parse_ipv6
from stack.wire.tcp import Flags, Mss, TcpOption, TcpSegment, build_tcp, flags_str, parse_tcp

LOCAL_IP = "10.0.0.1"  # the host under test
REMOTE_IP = "10.0.0.2"  # the peer the test plays
LOCAL_PORT = 80
REMOTE_PORT = 40000
RCVBUF = 8192  # small, so the advertised window is an exact, unscaled number
PEER_WIN = 65535
PEER_MSS = 1460

PLAIN = TcpConfig(
    window_scaling=False, sack=False, timestamps=False, rcvbuf=RCVBUF, delack_timeout=0.0,
)
OUR_MSS = PLAIN.mss  # 1460
SYN_OPTS: tuple[TcpOption, ...] = (Mss(OUR_MSS),)  # what the host puts on a SYN under PLAIN


@dataclass(frozen=True)
class Family:
    """The addresses a test speaks with, and what the host's SYN says under PLAIN over them."""

    name: str
    local_ip: str
    remote_ip: str

    @property
    def our_mss(self) -> int:
        return PLAIN.mtu - tcp_overhead(self.local_ip)  # 1460 over IPv4, 1440 over IPv6

    @property
    def syn_opts(self) -> tuple[TcpOption, ...]:
        return (Mss(self.our_mss),)


def send_mss() -> int:
    """Payload octets of a full segment to a peer that said MSS 1460, under PLAIN: 1460 over
    IPv4, 1440 over IPv6 (the 1500-octet MTU less 60 octets of headers bounds it)."""
    return min(PEER_MSS, FAMILY.our_mss)


def syn_opts() -> tuple[TcpOption, ...]:
    """What the host puts on a SYN under PLAIN over the current family (SYN_OPTS over IPv4)."""
    return FAMILY.syn_opts


def remote_ip() -> str:
    return FAMILY.remote_ip


def our_mss() -> int:
    """The MSS the host offers under PLAIN's MTU: 1460 over IPv4, 1440 over IPv6."""
    return FAMILY.our_mss


IPV4 = Family("ipv4", LOCAL_IP, REMOTE_IP)
IPV6 = Family("ipv6", "fd00::1", "fd00::2")
FAMILY = IPV4  # set by the `family` fixture (tests/tcp/conftest.py)

# Initial sequence numbers: (host's ISS, peer's ISN). The wrap cases put the first data octets of
# both directions across 2**32.
ISNS = [
    pytest.param((1_000, 500_000), id="isn-low"),
    pytest.param((2**32 - 1, 2**32 - 2), id="isn-wrap1"),
    pytest.param((2**32 - 5, 2**32 - 700), id="isn-wrap5"),
]
isns = pytest.mark.parametrize("isn", ISNS)
DEFAULT_ISN = (1_000, 500_000)

_LETTERS = {"S": Flags.SYN, "F": Flags.FIN, "R": Flags.RST, "P": Flags.PSH, ".": Flags.ACK,
            "U": Flags.URG}


def flags_of(letters: str) -> Flags:
    """tcpdump spelling to Flags: "S." is SYN|ACK, "F." FIN|ACK, "R" RST, "P." PSH|ACK."""
    out = Flags(0)
    for ch in letters:
        out |= _LETTERS[ch]
    return out


# Segments the host sent to other peers than the one looking, kept for them (several peers may
# share one host).
_MAILBOXES: weakref.WeakKeyDictionary[Host, dict[tuple[str, int, int], list[TcpSegment]]] = (
    weakref.WeakKeyDictionary()
)


class FixedIsn:
    """Stands in for the host's RFC 6528 generator: every connection gets `value`."""

    def __init__(self, value: int) -> None:
        self.value = value

    def isn(self, now: float, local_ip: str, local_port: int, remote_ip: str, remote_port: int) -> int:
        return self.value


def make_host(config: TcpConfig = PLAIN, iss: int = DEFAULT_ISN[0]) -> tuple[Host, MemorySink]:
    sink = MemorySink()
    address6 = IPV6.local_ip if FAMILY is IPV6 else None
    host = Host(LOCAL_IP, config=config, trace=Trace([sink]), rng=random.Random(7), isn_key=b"test",
                address6=address6)
    host.isn = FixedIsn(iss)  # type: ignore[assignment]
    return host, sink


def packet(seg: TcpSegment, src: str = REMOTE_IP, dst: str = LOCAL_IP) -> bytes:
    """The IPv4 or IPv6 packet (by the addresses' family) carrying seg, with correct checksums."""
    return ip_packet(src, dst, build_tcp(seg, pack(src), pack(dst)))


def ip_packet(src: str, dst: str, tcp: bytes) -> bytes:
    """TCP octets (checksum already right) in an IPv4 or IPv6 packet, by the addresses' family."""
    if is_ipv6(src):
        return build_ipv6(IPv6Packet(src, dst, PROTO_TCP, tcp))
    return build_ipv4(IPv4Packet(src, dst, PROTO_TCP, tcp))


def parse_packet(raw: bytes) -> tuple[str, str, int, bytes]:
    """(src, dst, protocol, payload) of an IPv4 or IPv6 packet."""
    if raw[0] >> 4 == 6:
        ip6 = parse_ipv6(raw)
        return ip6.src, ip6.dst, ip6.next_header, ip6.payload
    ip = parse_ipv4(raw)
    return ip.src, ip.dst, ip.protocol, ip.payload


class Peer:
    """The remote end of one connection, played by the test."""

    def __init__(
        self,
        host: Host,
        sink: MemorySink,
        *,
        iss: int,
        irs: int,
        remote_ip: str | None = None,
        remote_port: int = REMOTE_PORT,
        local_port: int = LOCAL_PORT,
    ) -> None:
        self.host = host
        self.sink = sink
        self.iss = iss  # the host's ISS
        self.irs = irs  # our (the peer's) ISN
        self.ip = FAMILY.remote_ip if remote_ip is None else remote_ip
        self.port = remote_port
        self.local_port = local_port
        self.seq = irs  # the next sequence number we send
        self.ack = iss  # the next sequence number we expect from the host
        self.win = PEER_WIN
        self.expect_win = RCVBUF  # the window the host should advertise, unless a test says
        self.now = 0.0
        self.conn: TcpConnection | None = None
        self.listener: Listener | None = None

    # ------------------------------------------------------------------ wire

    @property
    def conn_id(self) -> str:
        return conn_id(self.host.local_address(self.ip), self.local_port, self.ip, self.port)

    def send(
        self,
        flags: str,
        *,
        seq: int | None = None,
        ack: int | None = None,
        win: int | None = None,
        options: tuple[TcpOption, ...] = (),
        payload: bytes = b"",
        urgent: int = 0,
    ) -> TcpSegment:
        """Inject one segment. With seq left out it goes at self.seq, which then advances."""
        f = flags_of(flags)
        seg = TcpSegment(
            self.port, self.local_port, self.seq if seq is None else seq,
            (self.ack if ack is None else ack) if f & Flags.ACK else (ack or 0),
            f, self.win if win is None else win, payload, options, urgent,
        )
        if seq is None:
            self.seq = _seq_add(self.seq, seg.seg_len)
        self.host.receive(packet(seg, self.ip, self.host.local_address(self.ip)), self.now)
        return seg

    def segments(self) -> list[TcpSegment]:
        """Everything the host sent since the last look (all of it must be TCP to us)."""
        box = _MAILBOXES.setdefault(self.host, {})
        for raw in self.host.take_packets():
            src, dst, protocol, data = parse_packet(raw)
            assert protocol == PROTO_TCP and src == self.host.local_address(dst)
            seg = parse_tcp(data, pack(src), pack(dst))
            box.setdefault((dst, seg.dst_port, seg.src_port), []).append(seg)
        out = box.pop((self.ip, self.port, self.local_port), [])
        for seg in out:
            end = _seq_add(seg.seq, seg.seg_len)
            if not seg.flags & Flags.RST and seq.gt(end, self.ack):
                self.ack = end
        return out

    def expect(
        self,
        flags: str,
        *,
        seq: int | None = None,
        ack: int | None = None,
        win: int | None = None,
        options: tuple[TcpOption, ...] | None = (),
        payload: bytes = b"",
    ) -> TcpSegment:
        """Exactly one segment came out, and it is this one. seq defaults to the host's next
        sequence number, ack (for ACK-bearing segments) to ours, win to self.expect_win;
        options=None skips the options check."""
        want_seq = self.ack if seq is None else seq
        segs = self.segments()
        assert len(segs) == 1, f"expected one segment, got {[describe(s) for s in segs]}"
        seg = segs[0]
        f = flags_of(flags)
        want_ack = (self.seq if ack is None else ack) if f & Flags.ACK else (ack or 0)
        got = (flags_str(seg.flags), seg.seq, seg.ack, seg.window, seg.payload)
        want = (flags_str(f), want_seq, want_ack, self.expect_win if win is None else win, payload)
        assert got == want, f"got {describe(seg)}, want {want}"
        if options is not None:
            assert seg.options == options, f"options {seg.options}, want {options}"
        return seg

    def expect_many(self, n: int) -> list[TcpSegment]:
        segs = self.segments()
        assert len(segs) == n, f"expected {n} segments, got {[describe(s) for s in segs]}"
        return segs

    def expect_none(self) -> None:
        segs = self.segments()
        assert not segs, f"expected nothing, got {[describe(s) for s in segs]}"

    # ------------------------------------------------------------------ application side

    def c(self) -> TcpConnection:
        assert self.conn is not None, "no connection yet"
        return self.conn

    def app_send(self, data: bytes) -> int:
        n = self.c().send(data, self.now)
        self.host.app_call(self.c())
        return n

    def app_recv(self, n: int = 1 << 20) -> bytes:
        data = self.c().recv(n, self.now)
        self.host.app_call(self.c())
        return data

    def app_close(self) -> None:
        self.c().close(self.now)
        self.host.app_call(self.c())

    def app_shutdown(self) -> None:
        self.c().shutdown(self.now)
        self.host.app_call(self.c())

    def app_abort(self) -> None:
        self.c().abort(self.now)
        self.host.app_call(self.c())

    @property
    def state(self) -> State:
        return self.c().state

    def transitions(self) -> list[str]:
        return self.sink.transitions(self.conn_id)

    def drops(self, reason: str) -> int:
        return len(self.sink.drops(reason))

    # ------------------------------------------------------------------ time

    def deadline(self) -> float | None:
        return self.host.deadline()

    def advance(self, to: float) -> None:
        """Move the clock to `to`, firing the host's timers that come due on the way."""
        while True:
            d = self.host.deadline()
            if d is None or d > to:
                break
            self.now = d
            self.host.on_timer(d)
        self.now = to

    def fire(self) -> float:
        """Jump to the host's next deadline and fire it; return the time."""
        d = self.host.deadline()
        assert d is not None, "the host has no timer running"
        self.now = d
        self.host.on_timer(d)
        return d


def describe(seg: TcpSegment) -> str:
    return (f"{flags_str(seg.flags)} seq={seg.seq} ack={seg.ack} win={seg.window} "
            f"len={len(seg.payload)} opts={seg.options}")


def _seq_add(a: int, n: int) -> int:
    return seq.add(a, n)


# ---------------------------------------------------------------------- state builders


def listening(isn: tuple[int, int] = DEFAULT_ISN, config: TcpConfig = PLAIN, backlog: int = 8) -> Peer:
    host, sink = make_host(config, isn[0])
    peer = Peer(host, sink, iss=isn[0], irs=isn[1])
    peer.listener = host.listen(LOCAL_PORT, backlog)
    return peer


def syn_received(isn: tuple[int, int] = DEFAULT_ISN, config: TcpConfig = PLAIN,
                 syn_options: tuple[TcpOption, ...] = (Mss(PEER_MSS),), syn_win: int = PEER_WIN,
                 **kw: Any) -> Peer:
    peer = listening(isn, config, **kw)
    peer.send("S", options=syn_options, win=syn_win)
    peer.conn = peer.host.find(LOCAL_PORT, FAMILY.remote_ip, REMOTE_PORT)
    if config is PLAIN:
        peer.expect("S.", seq=peer.iss, options=FAMILY.syn_opts)
    else:
        peer.segments()
    assert peer.state is State.SYN_RECEIVED
    return peer


def established_passive(isn: tuple[int, int] = DEFAULT_ISN, config: TcpConfig = PLAIN,
                        syn_options: tuple[TcpOption, ...] = (Mss(PEER_MSS),), syn_win: int = PEER_WIN,
                        **kw: Any) -> Peer:
    peer = syn_received(isn, config, syn_options, syn_win, **kw)
    peer.send(".", win=syn_win)
    peer.expect_none()
    assert peer.listener is not None
    conn = peer.listener.accept()
    assert conn is peer.conn and conn is not None and conn.state is State.ESTABLISHED
    return peer


def syn_sent(isn: tuple[int, int] = DEFAULT_ISN, config: TcpConfig = PLAIN) -> Peer:
    host, sink = make_host(config, isn[0])
    peer = Peer(host, sink, iss=isn[0], irs=isn[1])
    peer.conn = host.connect(FAMILY.remote_ip, REMOTE_PORT, peer.now, local_port=LOCAL_PORT)
    if config is PLAIN:
        peer.expect("S", seq=peer.iss, options=FAMILY.syn_opts)
    else:
        peer.segments()
    assert peer.state is State.SYN_SENT
    return peer


def established_active(isn: tuple[int, int] = DEFAULT_ISN, config: TcpConfig = PLAIN,
                       synack_options: tuple[TcpOption, ...] = (Mss(PEER_MSS),)) -> Peer:
    peer = syn_sent(isn, config)
    peer.send("S.", options=synack_options)
    if config is PLAIN:
        peer.expect(".")
    else:
        peer.segments()
    assert peer.state is State.ESTABLISHED
    return peer


def established(isn: tuple[int, int] = DEFAULT_ISN, active: bool = False) -> Peer:
    return established_active(isn) if active else established_passive(isn)


def fin_wait_1(isn: tuple[int, int] = DEFAULT_ISN, how: str = "shutdown", active: bool = False) -> Peer:
    """Our FIN is out, unacknowledged. how="close" orphans the connection (data then resets)."""
    peer = established(isn, active)
    if how == "close":
        peer.app_close()
    else:
        peer.app_shutdown()
    peer.expect("F.")
    assert peer.state is State.FIN_WAIT_1
    return peer


def fin_wait_2(isn: tuple[int, int] = DEFAULT_ISN, how: str = "shutdown", active: bool = False) -> Peer:
    peer = fin_wait_1(isn, how, active)
    peer.send(".")
    peer.expect_none()
    assert peer.state is State.FIN_WAIT_2
    return peer


def closing(isn: tuple[int, int] = DEFAULT_ISN) -> Peer:
    """Both FINs crossed: we ACKed the peer's, ours is still unacknowledged."""
    peer = fin_wait_1(isn)
    fin_seq = seq.add(peer.ack, -1)
    peer.send("F.", ack=fin_seq)  # the peer has not seen our FIN yet
    peer.expect_win = RCVBUF - 1  # the FIN took one octet; SWS avoidance keeps the right edge
    peer.expect(".", seq=peer.ack)
    assert peer.state is State.CLOSING
    return peer


def time_wait(isn: tuple[int, int] = DEFAULT_ISN, active: bool = False) -> Peer:
    peer = fin_wait_2(isn, active=active)
    peer.send("F.")
    peer.expect_win = RCVBUF - 1  # the FIN took one octet; SWS avoidance keeps the right edge
    peer.expect(".")
    assert peer.state is State.TIME_WAIT
    return peer


def close_wait(isn: tuple[int, int] = DEFAULT_ISN, active: bool = False) -> Peer:
    peer = established(isn, active)
    peer.send("F.")
    peer.expect_win = RCVBUF - 1  # the FIN took one octet; SWS avoidance keeps the right edge
    peer.expect(".")
    assert peer.state is State.CLOSE_WAIT
    return peer


def last_ack(isn: tuple[int, int] = DEFAULT_ISN) -> Peer:
    peer = close_wait(isn)
    peer.app_close()
    peer.expect("F.")
    assert peer.state is State.LAST_ACK
    return peer
