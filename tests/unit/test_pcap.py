"""PcapSink writes what Wireshark reads: checked by reading the file back, and by tshark if present."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from stack.seq import add
from stack.trace import LINKTYPE_RAW, PacketEvent, PcapSink, SegmentEvent, Trace
from stack.wire.icmp import ECHO_REQUEST, IcmpMessage, build_icmp, echo_reply_for
from stack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, IPv4Packet, build_ipv4, pack_addr
from stack.wire.tcp import Flags, Mss, Nop, SackPermitted, TcpSegment, Timestamps, WindowScale, build_tcp

A, B = "10.0.0.1", "10.0.0.2"


def tcp_packet(src: str, dst: str, seg: TcpSegment) -> bytes:
    return build_ipv4(IPv4Packet(src, dst, PROTO_TCP, build_tcp(seg, pack_addr(src), pack_addr(dst))))


def conversation() -> list[PacketEvent]:
    """A handshake near the sequence wrap, data each way, FINs, and a ping."""
    syn_opts = (Mss(1460), SackPermitted(), Timestamps(100, 0), Nop(), WindowScale(7))
    c, s = 2**32 - 2, 1000  # client and server ISNs
    request = IcmpMessage(ECHO_REQUEST, 0, 0x00420001, b"ping")
    get = b"GET / HTTP/1.0\r\n\r\n"
    packets = [
        tcp_packet(A, B, TcpSegment(40000, 80, c, 0, Flags.SYN, 64240, options=syn_opts)),
        tcp_packet(B, A, TcpSegment(80, 40000, s, c + 1, Flags.SYN | Flags.ACK, 65160, options=syn_opts)),
        tcp_packet(A, B, TcpSegment(40000, 80, c + 1, s + 1, Flags.ACK, 502)),
        tcp_packet(A, B, TcpSegment(40000, 80, c + 1, s + 1, Flags.PSH | Flags.ACK, 502, get)),
        tcp_packet(B, A, TcpSegment(80, 40000, s + 1, add(c, 19), Flags.ACK, 509, b"x" * 1000)),
        tcp_packet(A, B, TcpSegment(40000, 80, add(c, 19), s + 1001, Flags.FIN | Flags.ACK, 502)),
        tcp_packet(B, A, TcpSegment(80, 40000, s + 1001, add(c, 20), Flags.FIN | Flags.ACK, 509)),
        build_ipv4(IPv4Packet(A, B, PROTO_ICMP, build_icmp(request))),
        build_ipv4(IPv4Packet(B, A, PROTO_ICMP, build_icmp(echo_reply_for(request)))),
    ]
    return [PacketEvent(time=1.5 + 0.001 * i, direction="out", data=p) for i, p in enumerate(packets)]


def write_pcap(path: Path, events: list[PacketEvent]) -> None:
    with path.open("wb") as out:
        trace = Trace([PcapSink(out)])
        for event in events:
            trace.emit(event)
        # Events other than PacketEvent are not packets: the sink skips them.
        trace.emit(SegmentEvent(0.0, "out", "a>b", "S", 0, 0, 0, 0))
        trace.close()


def read_pcap(path: Path) -> tuple[int, list[tuple[float, bytes]]]:
    data = path.read_bytes()
    magic, major, minor, _zone, _sigfigs, _snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor) == (0xA1B2C3D4, 2, 4)
    records = []
    offset = 24
    while offset < len(data):
        sec, usec, caplen, origlen = struct.unpack_from("<IIII", data, offset)
        assert caplen == origlen
        records.append((sec + usec / 1e6, data[offset + 16 : offset + 16 + caplen]))
        offset += 16 + caplen
    return linktype, records


def test_records_read_back(tmp_path: Path) -> None:
    events = conversation()
    path = tmp_path / "trace.pcap"
    write_pcap(path, events)
    linktype, records = read_pcap(path)
    assert linktype == LINKTYPE_RAW
    assert [data for _, data in records] == [e.data for e in events]
    assert [round(t, 6) for t, _ in records] == [round(e.time, 6) for e in events]


def tshark_problems(path: Path) -> tuple[int, str]:
    """(packet count, the packets tshark flags as malformed or as expert errors)."""
    tshark = shutil.which("tshark")
    assert tshark is not None
    prefs = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]
    count = subprocess.run(
        [tshark, "-n", "-r", str(path), "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()
    flagged = subprocess.run(
        [tshark, "-n", "-r", str(path), *prefs, "-Y", "_ws.malformed || _ws.expert.severity >= error"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return len(count), flagged


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)")
def test_tshark_reads_every_packet_without_errors(tmp_path: Path) -> None:
    path = tmp_path / "trace.pcap"
    events = conversation()
    write_pcap(path, events)
    count, flagged = tshark_problems(path)
    assert count == len(events)
    assert flagged == ""


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)")
def test_tshark_check_catches_a_bad_checksum(tmp_path: Path) -> None:
    """The filter above is only evidence if it flags a broken packet: corrupt one TCP byte."""
    events = conversation()
    broken = bytearray(events[3].data)
    broken[-1] ^= 0x01
    events[3] = PacketEvent(events[3].time, "out", bytes(broken))
    path = tmp_path / "broken.pcap"
    write_pcap(path, events)
    count, flagged = tshark_problems(path)
    assert count == len(events)
    assert len(flagged.splitlines()) == 1
