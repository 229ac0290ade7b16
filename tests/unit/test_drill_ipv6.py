"""Scripts over IPv6 and IPv4-mapped IPv6 (packetdrill's --ip_version): addresses, sockets, the
wire's version, the MSS over IPv6, ICMPv6 lines, and the command line's override. Each behaviour
has a right script that passes and a deliberately wrong twin that fails at the line that differs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from drill import ast, run_text
from drill.addresses import LOCAL_IP6, REMOTE_IP6, addresses
from drill.icmp import inbound_icmp
from drill.lexer import ParseError
from drill.matcher import Flow
from drill.parser import parse_script
from drill.report import ScriptFailed
from drill.wire import Wire
from stack.inet import pack
from stack.sim.loop import VirtualTimeLoop, close_loop
from stack.wire.icmpv6 import parse_icmpv6
from stack.wire.ipv4 import PROTO_TCP, IPv4Packet, build_ipv4
from stack.wire.ipv6 import NH_ICMPV6, IPv6Packet, build_ipv6, parse_ipv6
from stack.wire.tcp import Flags, TcpSegment, build_tcp
from tests.unit.test_drill_corpus_constructs import _app, _fails_at

HERE = Path(__file__).parents[1] / "drill"

SYN_ACK_6 = "+0  > S. 0:0(0) ack 1 <mss 1440,nop,nop,sackOK,nop,wscale 7>"
PASSIVE6 = f"""\
--ip_version=ipv6
0   socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0  setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0  bind(3, ..., ...) = 0
+0  listen(3, 1) = 0
+0  < S 0:0(0) win 65535 <mss 1440,sackOK,nop,nop,nop,wscale 7>
{SYN_ACK_6}
+.1 < . 1:1(0) ack 1 win 257
+0  accept(3, ..., ...) = 4
"""
SYN_4 = "+0  > S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>"
ACTIVE_MAPPED = f"""\
--ip_version=ipv4-mapped-ipv6
0   socket(AF_INET6, SOCK_STREAM, IPPROTO_TCP) = 3
+0...0.1 connect(3, ..., ...) = 0
{SYN_4}
+.1 < S. 0:0(0) ack 1 win 65535 <mss 1000,nop,nop,sackOK,nop,wscale 7>
+0  > . 1:1(0) ack 1 win 2048
"""


# --- addresses and sockets ------------------------------------------------------------------------


def test_an_ipv6_script_runs_over_ipv6_with_the_ipv6_mss() -> None:
    assert run_text(PASSIVE6).passed, run_text(PASSIVE6).text()
    # The IPv4 MSS (MTU less 40) is wrong over IPv6 (RFC 8200 8.3: less 60).
    wrong = SYN_ACK_6.replace("1440", "1460")
    message = _fails_at(PASSIVE6.replace(SYN_ACK_6, wrong), wrong)
    assert "mss 1440" in message


def test_ipv4_mapped_ipv6_uses_an_af_inet6_socket_over_ipv4() -> None:
    assert run_text(ACTIVE_MAPPED).passed, run_text(ACTIVE_MAPPED).text()
    _fails_at(ACTIVE_MAPPED.replace(SYN_4, SYN_4.replace("1460", "1440")), SYN_4.replace("1460", "1440"))
    # An elided family is the version's: AF_INET6 here, whose address is the mapped one.
    assert run_text(ACTIVE_MAPPED.replace("AF_INET6", "...")).passed


def test_an_explicit_family_is_used_as_written() -> None:
    # AF_INET in an IPv6 script cannot reach the script's IPv6 address, as on a kernel.
    script = PASSIVE6.replace("socket(..., SOCK", "socket(AF_INET, SOCK")
    assert run_text(script).passed  # a listener of either family serves both (README, IPv6)
    active = "--ip_version=ipv6\n0 socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 3\n"
    active += "+0 connect(3, ..., ...) = 0\n"
    result = run_text(active)
    assert result.outcome == "fail" and result.failure is not None
    assert "EAFNOSUPPORT" in result.failure.message, result.text()


def test_the_scripts_own_addresses_are_honoured_and_checked() -> None:
    own = "--ip_version=ipv6\n--local_ip=fd00::5\n--remote_ip=fd00::9\n"
    custom = PASSIVE6.replace("--ip_version=ipv6\n", own)
    assert run_text(custom).passed, run_text(custom).text()
    for bad in ("--local_ip=10.0.0.1", "--remote_ip=not-an-address"):
        result = run_text(PASSIVE6.replace("--ip_version=ipv6\n", f"--ip_version=ipv6\n{bad}\n"))
        assert result.outcome == "fail" and result.failure is not None and result.failure.line == 0
        assert bad.split("=")[1] in result.failure.message
    result = run_text(PASSIVE6.replace("ipv6", "ipv5", 1))
    assert result.failure is not None and "choose from ipv4, ipv4-mapped-ipv6, ipv6" in result.failure.message
    assert addresses("ipv6") == addresses("ipv6", LOCAL_IP6, REMOTE_IP6)


def test_the_command_line_version_overrides_the_scripts() -> None:
    # As packetdrill's command line: the IPv6 script over IPv4 offers the IPv4 MSS and fails there.
    message = _fails_at(PASSIVE6, SYN_ACK_6, ip_version="ipv4")
    assert "mss 1460" in message
    ipv4 = PASSIVE6.replace("--ip_version=ipv6\n", "--ip_version=ipv4\n")
    _fails_at(ipv4, SYN_ACK_6)
    assert run_text(ipv4, ip_version="ipv6").passed


def test_cli_ip_version_option(tmp_path: Path) -> None:
    script = tmp_path / "v4.pkt"
    script.write_text(PASSIVE6.replace("--ip_version=ipv6\n", ""))
    runner = CliRunner()
    assert runner.invoke(_app(), ["drill", str(script)]).exit_code == 1  # IPv4: the SYN-ACK's MSS
    assert runner.invoke(_app(), ["drill", "--ip_version", "ipv6", str(script)]).exit_code == 0
    assert runner.invoke(_app(), ["drill", "--corpus", str(tmp_path), "--ip_version", "ipv6"]).exit_code == 0
    out = runner.invoke(_app(), ["drill", "--ip_version", "ipv5", str(script)])
    assert out.exit_code == 2 and "choose from" in out.output


# --- the wire ---------------------------------------------------------------------------------------


def _wire(version: str) -> tuple[Wire, VirtualTimeLoop]:
    loop = VirtualTimeLoop()
    flow = Flow(addrs=addresses(version))
    return Wire(loop, flow, lambda: 7), loop


def _segment(src: str, dst: str) -> bytes:
    return build_tcp(TcpSegment(8080, 48000, 1, 0, Flags.SYN, 100, b"", (), 0), pack(src), pack(dst))


def test_what_the_stack_sends_must_be_of_the_scripts_version_and_addresses() -> None:
    wire, loop = _wire("ipv6")
    try:
        good = build_ipv6(IPv6Packet(LOCAL_IP6, REMOTE_IP6, PROTO_TCP, _segment(LOCAL_IP6, REMOTE_IP6)))
        wire.transmit(good)
        assert len(wire.sent) == 1 and wire.sent[0][1].flags == Flags.SYN
        local, remote = "192.168.0.1", "192.0.2.1"
        v4 = build_ipv4(IPv4Packet(local, remote, PROTO_TCP, _segment(local, remote)))
        with pytest.raises(ScriptFailed, match="sent an IPv4 packet; the script's packets are IPv6"):
            wire.transmit(v4)
        elsewhere = build_ipv6(IPv6Packet(LOCAL_IP6, "fd00::1", PROTO_TCP, _segment(LOCAL_IP6, "fd00::1")))
        with pytest.raises(ScriptFailed, match="to fd00::1; the script's addresses"):
            wire.transmit(elsewhere)
        with pytest.raises(ScriptFailed, match="malformed"):
            wire.transmit(good[:-1])
    finally:
        close_loop(loop)


# --- ICMPv6 -------------------------------------------------------------------------------------------


def _icmp(text: str) -> ast.IcmpEvent:
    ev = parse_script(f"0 close(9) = 0\n{text}\n").events[1]
    assert isinstance(ev, ast.IcmpEvent)
    return ev


def test_icmp_lines_of_an_ipv6_script_are_icmpv6() -> None:
    flow = Flow(local_port=8080, remote_port=48000, local_isn=1000, addrs=addresses("ipv6"))
    for line, (type_, code, rest) in {
        "+0 < icmp unreachable port_unreachable [0:0(0)]": (1, 4, 0),
        "+0 < icmpv6 unreachable not_neighbour [0:0(0)]": (1, 2, 0),
        "+0 < icmp6 time_exceeded exceeded_hop_limit": (3, 0, 0),
        "+0 < icmp packet_too_big mtu 1280 [1:1441(1440)]": (2, 0, 1280),
        "+0 < icmp parameter_problem code_1": (4, 1, 0),
    }.items():
        ip = parse_ipv6(inbound_icmp(_icmp(line), flow))
        assert (ip.src, ip.dst, ip.next_header) == (REMOTE_IP6, LOCAL_IP6, NH_ICMPV6)
        msg = parse_icmpv6(ip.payload, pack(ip.src), pack(ip.dst))  # the checksum verifies
        assert (msg.type, msg.code, msg.rest) == (type_, code, rest), line
        quoted = parse_ipv6(msg.payload[:40] + bytes(20))
        assert (quoted.src, quoted.dst) == (LOCAL_IP6, REMOTE_IP6)
        assert int.from_bytes(msg.payload[40:42], "big") == 8080
        seq = int.from_bytes(msg.payload[44:48], "big")
        assert seq == (1001 if "[1:" in line else 1000)


@pytest.mark.parametrize(
    ("version", "line", "why"),
    [
        ("ipv6", "+0 < icmp unreachable frag_needed mtu 1280", "unknown code 'frag_needed' for ICMPv6"),
        ("ipv4", "+0 < icmp packet_too_big mtu 1280 [0:0(0)]", "unknown ICMP type 'packet_too_big'"),
        ("ipv4", "+0 < icmpv6 unreachable port_unreachable [0:0(0)]", "icmpv6 message in an IPv4 script"),
        ("ipv6", "+0 < icmp unreachable port_unreachable mtu 1300", "mtu is only valid for packet_too_big"),
    ],
)
def test_icmp_names_of_the_other_version_fail_at_their_line(version: str, line: str, why: str) -> None:
    flow = Flow(local_port=8080, remote_port=48000, local_isn=0, addrs=addresses(version))
    with pytest.raises(ValueError, match=why):
        inbound_icmp(_icmp(line), flow)


def test_icmp_names_parse_if_either_version_knows_them() -> None:
    assert _icmp("+0 < icmp unreachable admin_prohibited [0:0(0)]").code == "admin_prohibited"
    assert _icmp("+0 < icmpv6 packet_too_big mtu 70000").mtu == 70000
    assert _icmp("+0 < icmp6 unreachable port_unreachable").icmpv6
    bad_names = (("< icmpv6 unreachable frag_needed", "frag_needed"), ("< icmp unreachable nope", "nope"))
    for bad, at in bad_names:
        with pytest.raises(ParseError) as err:
            parse_script(f"0 {bad}\n")
        assert err.value.column == f"0 {bad}".index(at) + 1, str(err.value)


PTB = """\
+0  write(4, ..., 1440) = 1440
+0  > P. 1:1441(1440) ack 1
+.01 < icmp packet_too_big mtu 1280 [1:1441(1440)]
+0  > . 1:1221(1220) ack 1
+0  > P. 1221:1441(220) ack 1
"""


def test_a_packet_too_big_line_lowers_the_segment_size() -> None:
    script = PASSIVE6 + PTB
    assert run_text(script).passed, run_text(script).text()
    # Below the IPv6 minimum MTU the message is discarded (RFC 8201 section 4): nothing is resent.
    low = script.replace("mtu 1280", "mtu 1200")
    _fails_at(low, "+0  > . 1:1221(1220) ack 1")
    # The wrong twin: the resent segment is not the old size.
    wrong = script.replace("1:1221(1220)", "1:1441(1440)").replace("+0  > P. 1221:1441(220) ack 1\n", "")
    _fails_at(wrong, "+0  > . 1:1441(1440) ack 1")


def test_an_ipv6_peer_without_mss_option_gets_1220_not_536() -> None:
    script = (HERE / "ipv6-default-mss.pkt").read_text()
    assert run_text(script).passed, run_text(script).text()
    first = "+0  > . 1:1221(1220) ack 1"
    as_ipv4 = "+0  > . 1:537(536) ack 1"
    wrong = script.split(first)[0] + as_ipv4 + "\n"
    _fails_at(wrong, as_ipv4)
    # Over IPv4 the default stays 536 (RFC 9293 3.7.1): the same script, IPv4's MSS in the SYN-ACK.
    ipv4 = wrong.replace("<mss 1440>", "<mss 1460>")
    assert run_text(ipv4, ip_version="ipv4").passed, run_text(ipv4, ip_version="ipv4").text()
