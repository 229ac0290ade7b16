"""TCP options in the handshake and after: MSS (536 when absent, RFC 9293 3.7.1), window scale
(RFC 7323 2: only when both sides send it), SACK-permitted (RFC 2018), timestamps (RFC 7323 3),
unknown options skipped, malformed option lists dropped and counted."""

from __future__ import annotations

import struct

import pytest

from stack.checksum import internet_checksum, pseudo_header_sum
from stack.inet import is_ipv6, pack, tcp_overhead
from stack.tcp.state import State
from stack.wire.ipv4 import PROTO_TCP
from stack.wire.segment import ip_packet
from stack.wire.tcp import (
    Eol,
    Flags,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamps,
    UnknownOption,
    WindowScale,
)

from .harness import (
    PLAIN,
    Peer,
    established_active,
    established_passive,
    isns,
    listening,
    our_mss,
    packet,
    remote_ip,
    syn_opts,
    syn_sent,
)

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6

FULL = PLAIN.with_(window_scaling=True, sack=True, timestamps=True, rcvbuf=256 * 1024)
FULL_SHIFT = 3  # 256 KiB >> 3 fits in 16 bits
PEER_FULL: tuple[TcpOption, ...] = (Mss(1460), SackPermitted(), Timestamps(5000, 0), Nop(), WindowScale(2))


def syn_ack_to(peer: Peer, options: tuple[TcpOption, ...]) -> tuple[TcpOption, ...]:
    peer.send("S", options=options)
    out = peer.expect_many(1)[0]
    assert out.flags == 0x12 and out.window == 65535
    return out.options


def kinds(options: tuple[TcpOption, ...]) -> list[str]:
    return [type(o).__name__ for o in options]


# ---------------------------------------------------------------------- MSS


def _default_mss() -> int:
    """RFC 9293 3.7.1 (MUST-15): the peer's MSS without an option, 536 over IPv4, 1220 over IPv6."""
    return 1220 if is_ipv6(remote_ip()) else 536


def test_mss_defaults_to_536_or_1220_when_absent() -> None:
    peer = established_passive(config=PLAIN.with_(nagle=False), syn_options=())
    mss = _default_mss()
    assert peer.c().info()["mss"] == mss
    peer.app_send(b"a" * (mss + 64))
    assert [len(s.payload) for s in peer.expect_many(2)] == [mss, 64]


def test_mss_from_the_peer_is_used() -> None:
    peer = established_passive(config=PLAIN.with_(nagle=False), syn_options=(Mss(700),))
    peer.app_send(b"a" * 1500)
    assert [len(s.payload) for s in peer.expect_many(3)] == [700, 700, 100]


def test_our_mss_follows_the_mtu() -> None:
    mtu = 1280 if is_ipv6(remote_ip()) else 576  # the least link MTU IPv6 allows (RFC 8200 5)
    peer = listening(config=PLAIN.with_(mtu=mtu))
    peer.send("S")
    peer.expect("S.", seq=peer.iss, options=(Mss(mtu - tcp_overhead(remote_ip())),))  # 536 or 1220


def test_active_open_learns_mss_from_syn_ack() -> None:
    peer = syn_sent(config=PLAIN.with_(nagle=False))
    peer.send("S.", options=(Mss(1000),))
    peer.expect(".")
    peer.app_send(b"z" * 1200)
    assert [len(s.payload) for s in peer.expect_many(2)] == [1000, 200]


def test_active_open_without_mss_in_syn_ack_uses_the_default() -> None:
    peer = syn_sent(config=PLAIN.with_(nagle=False))
    peer.send("S.")
    peer.expect(".")
    assert peer.c().info()["mss"] == _default_mss()


# ---------------------------------------------------------------------- window scale


def test_syn_offers_all_options_in_linux_order() -> None:
    peer = syn_sent(config=FULL)
    # The builder did not check FULL's SYN; re-send it through the retransmission timer.
    peer.fire()
    out = peer.expect_many(1)[0]
    assert kinds(out.options) == ["Mss", "SackPermitted", "Timestamps", "Nop", "WindowScale"]
    assert out.options[0] == Mss(our_mss()) and out.options[-1] == WindowScale(FULL_SHIFT)
    ts = out.options[2]
    assert isinstance(ts, Timestamps) and ts.tsecr == 0
    assert out.window == 65535  # a SYN's window is never scaled


def test_window_scale_negotiated_when_both_send_it() -> None:
    peer = listening(config=FULL)
    opts = syn_ack_to(peer, PEER_FULL)
    assert WindowScale(FULL_SHIFT) in opts
    peer.send(".", win=100, options=(Nop(), Nop(), Timestamps(5001, 0)))
    peer.conn = peer.listener.accept() if peer.listener else None
    assert peer.state is State.ESTABLISHED
    assert peer.c().info()["snd_wnd"] == 400  # the peer's 100 << 2
    peer.send(".", payload=b"x" * 800, options=(Nop(), Nop(), Timestamps(5002, 0)))
    ack = peer.expect_many(1)[0]
    assert ack.window == (256 * 1024 - 800) >> FULL_SHIFT


def test_no_window_scale_when_the_peer_sends_none() -> None:
    peer = listening(config=FULL)
    opts = syn_ack_to(peer, (Mss(1460),))
    assert opts == (Mss(our_mss()),)
    peer.send(".", win=100)
    peer.conn = peer.listener.accept() if peer.listener else None
    assert peer.c().info()["snd_wnd"] == 100  # unscaled
    peer.send(".", payload=b"x" * 800)
    assert peer.expect_many(1)[0].window == 65535  # our window unscaled too, capped


def test_no_window_scale_when_we_do_not_offer_it() -> None:
    peer = listening(config=FULL.with_(window_scaling=False))
    opts = syn_ack_to(peer, (Mss(1460), Nop(), WindowScale(7)))
    assert opts == (Mss(our_mss()),)
    peer.send(".", win=100)
    peer.conn = peer.listener.accept() if peer.listener else None
    assert peer.c().info()["snd_wnd"] == 100


def test_window_scale_above_14_is_treated_as_14() -> None:
    peer = listening(config=FULL)
    syn_ack_to(peer, (Mss(1460), Nop(), WindowScale(20)))
    peer.send(".", win=1)
    peer.conn = peer.listener.accept() if peer.listener else None
    assert peer.c().info()["snd_wnd"] == 1 << 14


def test_active_open_without_window_scale_in_syn_ack() -> None:
    peer = established_active(config=FULL, synack_options=(Mss(1460),))
    peer.send(".", payload=b"y" * 10)
    out = peer.expect_many(1)[0]
    assert out.window == 65535 and out.options == ()


# ---------------------------------------------------------------------- SACK


def test_sack_permitted_echoed_only_when_offered() -> None:
    assert SackPermitted() in syn_ack_to(listening(config=FULL), PEER_FULL)
    assert SackPermitted() not in syn_ack_to(listening(config=FULL), (Mss(1460), Nop(), Nop(),
                                                                      Timestamps(1, 0)))


def test_sack_block_reports_out_of_order_data() -> None:
    config = FULL.with_(timestamps=False, window_scaling=False, rcvbuf=8192)
    peer = established_passive(config=config, syn_options=(Mss(1460), Nop(), Nop(), SackPermitted()))
    start = peer.seq
    peer.send(".", seq=start + 100, payload=b"b" * 50)
    out = peer.expect_many(1)[0]
    assert out.ack == start
    assert out.options == (Nop(), Nop(), Sack(((start + 100, start + 150),)))


def test_no_sack_blocks_without_permission() -> None:
    peer = established_passive()
    peer.send(".", seq=peer.seq + 100, payload=b"b" * 50)
    assert peer.expect_many(1)[0].options == ()


# ---------------------------------------------------------------------- timestamps


def test_timestamps_echoed_in_syn_ack_and_after() -> None:
    peer = listening(config=FULL)
    opts = syn_ack_to(peer, PEER_FULL)
    ts = [o for o in opts if isinstance(o, Timestamps)]
    assert len(ts) == 1 and ts[0].tsecr == 5000
    peer.send(".", options=(Nop(), Nop(), Timestamps(5001, ts[0].tsval)))
    peer.conn = peer.listener.accept() if peer.listener else None
    peer.send(".", payload=b"q", options=(Nop(), Nop(), Timestamps(5002, ts[0].tsval)))
    out = peer.expect_many(1)[0]
    assert out.options[:2] == (Nop(), Nop())
    echo = out.options[2]
    assert isinstance(echo, Timestamps) and echo.tsecr == 5002


def test_no_timestamps_when_the_peer_sends_none() -> None:
    opts = syn_ack_to(listening(config=FULL), (Mss(1460), Nop(), WindowScale(2)))
    assert not any(isinstance(o, Timestamps) for o in opts)


def test_paws_drops_an_old_timestamp_with_an_ack() -> None:
    peer = listening(config=FULL)
    syn_ack_to(peer, PEER_FULL)
    peer.send(".", options=(Nop(), Nop(), Timestamps(6000, 0)))
    peer.conn = peer.listener.accept() if peer.listener else None
    peer.send(".", payload=b"old", options=(Nop(), Nop(), Timestamps(100, 0)))
    out = peer.expect_many(1)[0]
    assert out.ack == peer.seq - 3
    assert peer.drops("paws") == 1
    assert peer.app_recv() == b""


# ---------------------------------------------------------------------- unknown and malformed


@isns
def test_unknown_option_is_skipped(isn: tuple[int, int]) -> None:
    peer = listening(isn)
    peer.send("S", options=(UnknownOption(253, b"\x12\x34"), Mss(1000)))
    peer.expect("S.", seq=peer.iss, options=syn_opts())
    peer.send(".")
    peer.conn = peer.listener.accept() if peer.listener else None
    assert peer.c().info()["mss"] == 1000  # the option after the unknown one was read


def test_options_after_eol_are_ignored() -> None:
    peer = listening()
    raw = bytearray(packet(_syn(peer), peer.ip, peer.host.local_address(peer.ip)))
    peer.host.receive(bytes(raw), peer.now)
    peer.expect("S.", seq=peer.iss, ack=peer.irs + 1, options=syn_opts())


def _syn(peer: Peer) -> TcpSegment:
    return TcpSegment(peer.port, peer.local_port, peer.irs, 0, Flags.SYN, 65535, b"",
                      (Eol(),))


def test_malformed_option_length_is_dropped_and_counted() -> None:
    peer = listening()
    peer.send("S", options=(UnknownOption(253, b""),))  # fine: length 2
    peer.segments()
    bad = Peer(peer.host, peer.sink, iss=peer.iss, irs=1, remote_port=5555)
    # An MSS option of length 3 is malformed (RFC 9293 3.2: MSS has length 4).
    bad.send("S", options=(UnknownOption(2, b"\x05"),))
    bad.expect_none()
    assert peer.host.counters["tcp_option"] == 1
    assert peer.sink.drops("tcp_option")
    assert peer.host.find(peer.local_port, peer.ip, 5555) is None


def test_option_running_past_the_header_is_dropped() -> None:
    peer = listening()
    raw = _raw_syn_with_option_bytes(peer, b"\x08\x0a\x00\x00")  # timestamps claims 10 octets
    peer.host.receive(raw, peer.now)
    peer.expect_none()
    assert peer.host.counters["tcp_option"] == 1
    assert not peer.host.connections


def _raw_syn_with_option_bytes(peer: Peer, opts: bytes) -> bytes:
    """A SYN whose option octets are exactly `opts` (a multiple of 4), checksums correct."""
    hlen = 20 + len(opts)
    hdr = bytearray(struct.pack("!HHIIBBHHH", peer.port, peer.local_port, peer.irs, 0, (hlen // 4) << 4,
                                0x02, 65535, 0, 0)) + opts
    local = peer.host.local_address(peer.ip)
    csum = internet_checksum(bytes(hdr), pseudo_header_sum(pack(peer.ip), pack(local), PROTO_TCP, len(hdr)))
    hdr[16:18] = csum.to_bytes(2, "big")
    return ip_packet(peer.ip, local, bytes(hdr))
