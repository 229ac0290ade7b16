"""Malformed packets never raise out of the host: each is dropped, counted in host.counters under
its reason, traced as a Drop, and answered with nothing (a RST needs a header we can trust)."""

from __future__ import annotations

import random
import struct

import pytest

from stack.checksum import internet_checksum, pseudo_header_sum
from stack.tcp.state import State
from stack.wire.ipv4 import PROTO_TCP, IPv4Packet, build_ipv4, pack_addr
from stack.wire.tcp import Flags, TcpSegment, build_tcp

from .harness import LOCAL_IP, REMOTE_IP, Peer, established, listening, packet


def tcp_bytes(peer: Peer, flags: int = Flags.SYN, payload: bytes = b"") -> bytearray:
    seg = TcpSegment(peer.port, peer.local_port, peer.seq, peer.ack if flags & Flags.ACK else 0,
                     Flags(flags), 65535, payload)
    return bytearray(build_tcp(seg, pack_addr(REMOTE_IP), pack_addr(LOCAL_IP)))


def recompute(tcp: bytearray) -> bytes:
    tcp[16:18] = b"\x00\x00"
    csum = internet_checksum(bytes(tcp), pseudo_header_sum(pack_addr(REMOTE_IP), pack_addr(LOCAL_IP),
                                                          PROTO_TCP, len(tcp)))
    tcp[16:18] = csum.to_bytes(2, "big")
    return bytes(tcp)


def ip(payload: bytes, **kw: object) -> bytes:
    return build_ipv4(IPv4Packet(REMOTE_IP, LOCAL_IP, PROTO_TCP, payload, **kw))  # type: ignore[arg-type]


def assert_dropped(peer: Peer, raw: bytes, reason: str) -> None:
    before = len(peer.sink.events)
    peer.host.receive(raw, peer.now)
    peer.expect_none()
    assert peer.host.counters[reason] == 1, dict(peer.host.counters)
    assert peer.sink.drops(reason)
    assert all(e.kind != "StateChange" for e in peer.sink.events[before:])


@pytest.fixture(params=["listen", "established"])
def peer(request: pytest.FixtureRequest) -> Peer:
    return listening() if request.param == "listen" else established()


def test_bad_tcp_checksum(peer: Peer) -> None:
    tcp = tcp_bytes(peer, Flags.ACK | Flags.PSH, b"payload")
    tcp[16] ^= 0xFF
    assert_dropped(peer, ip(bytes(tcp)), "tcp_checksum")


def test_corrupted_payload_fails_the_checksum(peer: Peer) -> None:
    tcp = tcp_bytes(peer, Flags.ACK | Flags.PSH, b"payload")
    tcp[-1] ^= 0x01
    assert_dropped(peer, ip(bytes(tcp)), "tcp_checksum")


@pytest.mark.parametrize("n", [0, 1, 12, 19])
def test_short_tcp_header(peer: Peer, n: int) -> None:
    assert_dropped(peer, ip(bytes(tcp_bytes(peer))[:n]), "tcp_short")


@pytest.mark.parametrize("offset", [0, 1, 4])
def test_data_offset_below_five_words(peer: Peer, offset: int) -> None:
    tcp = tcp_bytes(peer)
    tcp[12] = offset << 4
    assert_dropped(peer, ip(recompute(tcp)), "tcp_offset")


@pytest.mark.parametrize("offset", [6, 15])
def test_data_offset_past_the_segment(peer: Peer, offset: int) -> None:
    tcp = tcp_bytes(peer)
    tcp[12] = offset << 4
    assert_dropped(peer, ip(recompute(tcp)), "tcp_offset")


def test_bad_ip_checksum(peer: Peer) -> None:
    raw = bytearray(ip(bytes(tcp_bytes(peer))))
    raw[10] ^= 0xFF
    assert_dropped(peer, bytes(raw), "ip_checksum")


def test_ip_fragment_is_dropped(peer: Peer) -> None:
    assert_dropped(peer, ip(bytes(tcp_bytes(peer)), more_fragments=True, dont_fragment=False),
                   "ip_fragment")


def test_packet_for_another_address(peer: Peer) -> None:
    raw = build_ipv4(IPv4Packet(REMOTE_IP, "10.9.9.9", PROTO_TCP, bytes(tcp_bytes(peer))))
    assert_dropped(peer, raw, "ip_not_for_us")


def test_truncated_ip_packet(peer: Peer) -> None:
    raw = ip(bytes(tcp_bytes(peer)))
    assert_dropped(peer, raw[:30], "ip_length")


def test_short_ip_header(peer: Peer) -> None:
    assert_dropped(peer, b"\x45\x00\x00", "ip_short")


def test_unknown_ip_protocol(peer: Peer) -> None:
    raw = build_ipv4(IPv4Packet(REMOTE_IP, LOCAL_IP, 253, b"hello"))
    assert_dropped(peer, raw, "ip_protocol")


def test_malformed_segments_leave_the_connection_working() -> None:
    peer = established()
    tcp = tcp_bytes(peer, Flags.ACK | Flags.PSH, b"bad")
    tcp[16] ^= 0x55
    peer.host.receive(ip(bytes(tcp)), peer.now)
    peer.expect_none()
    peer.send("P.", payload=b"good")
    peer.expect(".", win=8192 - 4)
    assert peer.app_recv() == b"good"
    assert peer.state is State.ESTABLISHED


def test_random_garbage_never_raises() -> None:
    peer = established()
    rng = random.Random(1234)
    good = packet(TcpSegment(peer.port, peer.local_port, peer.seq, peer.ack, Flags.ACK, 100, b"x" * 20))
    for _ in range(500):
        raw = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        if rng.random() < 0.3:
            del raw[rng.randrange(len(raw)):]
        peer.host.receive(bytes(raw), peer.now)
    for _ in range(200):
        peer.host.receive(rng.randbytes(rng.randrange(60)), peer.now)
    assert sum(peer.host.counters.values()) >= 600
    peer.segments()  # whatever came out parses as TCP to the peer


def test_header_with_reserved_bits_set_is_accepted() -> None:
    peer = established()
    tcp = tcp_bytes(peer, Flags.ACK | Flags.PSH, b"ok")
    tcp[12] |= 0x0E  # the reserved bits are ignored
    peer.host.receive(ip(recompute(tcp)), peer.now)
    peer.seq += 2
    peer.expect(".", win=8192 - 2)


def test_raw_helpers_agree_with_build() -> None:
    peer = listening()
    assert recompute(tcp_bytes(peer)) == bytes(tcp_bytes(peer))
    assert struct.unpack("!H", bytes(tcp_bytes(peer))[0:2])[0] == peer.port
