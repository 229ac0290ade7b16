"""Inbound ICMP errors in scripts: `< icmp unreachable port_unreachable [0:0(0)]`.

packetdrill's names for ICMP types and codes, looked up as packetdrill does in the table of the
script's IP version: ICMPv4 (RFC 792, RFC 1812 section 5.2.7.1) over IPv4, ICMPv6 (RFC 4443)
over IPv6, where `icmp unreachable port_unreachable` is an ICMPv6 Destination Unreachable code 4.
`icmpv6` (or `icmp6`) names an ICMPv6 message explicitly. `type_N` and `code_N` name any type or
code by number. The packet such a line injects is an error from the remote address quoting the
IP header and the first eight octets (the ports and sequence number) of a segment the stack sent,
whose sequence number is written like the stack's outbound lines (relative to its ISN). `mtu N`
is the next-hop MTU of a Fragmentation Needed (RFC 1191 section 4) or a Packet Too Big message
(RFC 4443 3.2), and only of those, as in packetdrill.
"""

from __future__ import annotations

from drill import ast
from drill.matcher import Flow
from stack.inet import pack
from stack.wire.icmp import IcmpMessage, build_icmp
from stack.wire.icmpv6 import Icmpv6Message, build_icmpv6
from stack.wire.ipv4 import PROTO_ICMP
from stack.wire.ipv6 import NH_ICMPV6
from stack.wire.segment import ip_packet, tcp_packet
from stack.wire.tcp import Flags, TcpSegment

_UNREACHABLE = [
    "net_unreachable", "host_unreachable", "protocol_unreachable", "port_unreachable",
    "frag_needed", "source_route_failed", "net_unknown", "host_unknown", "source_host_isolated",
    "net_prohibited", "host_prohibited", "net_unreachable_for_tos", "host_unreachable_for_tos",
    "packet_filtered", "precedence_violation", "precedence_cutoff",
]  # fmt: skip
_REDIRECT = ["net", "host", "tos_net", "tos_host"]

# type name -> (type number, code names in code order; the first is the default)
TYPES: dict[str, tuple[int, list[str]]] = {
    "echo_reply": (0, []),
    "unreachable": (3, _UNREACHABLE),
    "source_quench": (4, []),
    "redirect": (5, _REDIRECT),
    "echo_request": (8, []),
    "time_exceeded": (11, ["ttl_exceeded_in_transit", "frag_reass_exceeded"]),
    "parameter_problem": (12, []),
}

# packetdrill's ICMPv6 names (RFC 4443): type name -> (type number, {code name: code}).
ICMPV6_TYPES: dict[str, tuple[int, dict[str, int]]] = {
    "unreachable": (1, {
        "net_unreachable": 0, "no_route": 0, "admin_prohibited": 1, "not_neighbour": 2,
        "address_unreachable": 3, "port_unreachable": 4,
    }),
    "packet_too_big": (2, {}),
    "time_exceeded": (3, {"exceeded_hop_limit": 0, "exceeded_frag_time": 1}),
    "parameter_problem": (4, {"header_field": 0, "unknown_next_header": 1, "unknown_option": 2}),
    "echo_request": (128, {}),
    "echo_reply": (129, {}),
}  # fmt: skip

FRAG_NEEDED = (3, 4)
PACKET_TOO_BIG = 2


def _by_number(name: str, prefix: str) -> int | None:
    digits = name[len(prefix) :]
    return int(digits) if name.startswith(prefix) and digits.isdigit() and int(digits) < 256 else None


def icmp_numbers(type_name: str, code_name: str | None, v6: bool = False) -> tuple[int, int]:
    """(type, code) for packetdrill's names in the ICMPv4 (or, v6, the ICMPv6) table;
    ValueError naming what is unknown."""
    family = "ICMPv6" if v6 else "ICMP"
    number = _by_number(type_name, "type_")
    codes: dict[str, int] = {}
    if number is None:
        if v6 and type_name in ICMPV6_TYPES:
            number, codes = ICMPV6_TYPES[type_name]
        elif not v6 and type_name in TYPES:
            number, names = TYPES[type_name]
            codes = {name: i for i, name in enumerate(names)}
        else:
            known = ICMPV6_TYPES if v6 else TYPES
            raise ValueError(f"unknown {family} type {type_name!r} (one of {', '.join(known)})")
    if code_name is None:
        return number, 0
    code = _by_number(code_name, "code_")  # any code by number: `parameter_problem code_1`
    if code is None:
        if code_name not in codes:
            raise ValueError(f"unknown code {code_name!r} for {family} {type_name}")
        code = codes[code_name]
    return number, code


def check_names(type_name: str, code_name: str | None, icmpv6: bool = False) -> None:
    """At parse time the IP version may not be known yet (the command line overrides the
    script's): the names must be valid ICMPv4 or ICMPv6 names (ICMPv6 names for a line written
    `icmpv6`); ValueError if they are not."""
    try:
        icmp_numbers(type_name, code_name, v6=True)
    except ValueError:
        if icmpv6:
            raise
        icmp_numbers(type_name, code_name)


def inbound_icmp(ev: ast.IcmpEvent, flow: Flow) -> bytes:
    """The IPv4 or IPv6 packet an inbound ICMP line describes; ValueError if the line cannot be
    injected in this script (names of the other IP version, an MTU on a message without one)."""
    if flow.local_port is None:
        raise ValueError("no connection to quote yet: bind() or connect() first")
    addrs = flow.addrs
    v6 = addrs.wire6
    if ev.icmpv6 and not v6:
        raise ValueError("an icmpv6 message in an IPv4 script (--ip_version=ipv6 runs it over IPv6)")
    icmp_type, code = icmp_numbers(ev.icmp_type, ev.code, v6)
    if ev.mtu is not None and ((icmp_type, code) != FRAG_NEEDED if not v6 else icmp_type != PACKET_TOO_BIG):
        raise ValueError("mtu is only valid for " + ("packet_too_big" if v6 else "unreachable frag_needed"))
    local, remote = addrs.local_ip, addrs.remote_ip
    seq = flow.local_abs(ev.quoted_seq or 0)
    quoted_seg = TcpSegment(flow.local_port, flow.remote_port, seq, 0, Flags.ACK, 0, b"", (), 0)
    original = tcp_packet(local, remote, quoted_seg)
    if v6:  # the fixed header and the ports and sequence number (the stack sends no extension headers)
        msg = Icmpv6Message(icmp_type, code, ev.mtu or 0, original[:48])
        return ip_packet(remote, local, build_icmpv6(msg, pack(remote), pack(local)), NH_ICMPV6)
    if (ev.mtu or 0) > 0xFFFF:
        raise ValueError(f"mtu {ev.mtu} does not fit the 16 bits of ICMPv4's next-hop MTU")
    quoted = original[: (original[0] & 0x0F) * 4 + 8]  # the header and 64 bits of data (RFC 792)
    message = IcmpMessage(icmp_type, code, (ev.mtu or 0) & 0xFFFF, quoted)
    return ip_packet(remote, local, build_icmp(message), PROTO_ICMP)
