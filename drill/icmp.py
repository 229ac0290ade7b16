"""Inbound ICMP errors in scripts: `< icmp unreachable port_unreachable [0:0(0)]`.

packetdrill's names for ICMP types and codes (RFC 792, RFC 1812 section 5.2.7.1), and the packet
such a line injects: an error from the remote address quoting the IPv4 header and the first
eight octets (the ports and sequence number) of a segment the stack sent, whose sequence number
is written like the stack's outbound lines (relative to its ISN). `mtu N` is the next-hop MTU of
a Fragmentation Needed message (RFC 1191 section 4). `code_N` names any code by its number.
"""

from __future__ import annotations

from drill import ast
from drill.matcher import LOCAL_IP, REMOTE_IP, Flow
from stack.wire.icmp import IcmpMessage, build_icmp
from stack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, IPv4Packet, build_ipv4, pack_addr
from stack.wire.tcp import Flags, TcpSegment, build_tcp

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


# packetdrill's ICMPv6 names (RFC 4443): valid in IPv6 scripts, which the runner cannot run yet.
ICMPV6_TYPES: dict[str, list[str]] = {
    "unreachable": [
        "no_route", "admin_prohibited", "not_neighbour", "address_unreachable", "port_unreachable",
    ],
    "packet_too_big": [],
    "time_exceeded": ["exceeded_hop_limit", "exceeded_frag_time"],
    "parameter_problem": ["header_field", "unknown_next_header", "unknown_option"],
    "echo_request": [],
    "echo_reply": [],
}  # fmt: skip


def is_icmpv6(type_name: str, code_name: str | None) -> bool:
    codes = ICMPV6_TYPES.get(type_name)
    return codes is not None and (code_name is None or code_name in codes)


def icmp_numbers(type_name: str, code_name: str | None) -> tuple[int, int]:
    """(type, code) for packetdrill's names; ValueError naming what is unknown."""
    if type_name not in TYPES:
        raise ValueError(f"unknown ICMP type {type_name!r} (one of {', '.join(TYPES)})")
    number, codes = TYPES[type_name]
    if code_name is None:
        return number, 0
    if code_name.startswith("code_") and code_name[5:].isdigit() and int(code_name[5:]) < 256:
        return number, int(code_name[5:])  # any code by number: `parameter_problem code_1`
    if code_name not in codes:
        raise ValueError(f"unknown code {code_name!r} for ICMP {type_name}")
    return number, codes.index(code_name)


def inbound_icmp(ev: ast.IcmpEvent, flow: Flow) -> bytes:
    """The IPv4 packet an inbound ICMP line describes."""
    if flow.local_port is None:
        raise ValueError("no connection to quote yet: bind() or connect() first")
    icmp_type, code = icmp_numbers(ev.icmp_type, ev.code)
    seq = flow.local_abs(ev.quoted_seq or 0)
    tcp = build_tcp(
        TcpSegment(flow.local_port, flow.remote_port, seq, 0, Flags.ACK, 0, b"", (), 0),
        pack_addr(LOCAL_IP), pack_addr(REMOTE_IP),
    )  # fmt: skip
    original = build_ipv4(IPv4Packet(LOCAL_IP, REMOTE_IP, PROTO_TCP, tcp))
    quoted = original[: (original[0] & 0x0F) * 4 + 8]  # the header and 64 bits of data (RFC 792)
    message = IcmpMessage(icmp_type, code, (ev.mtu or 0) & 0xFFFF, quoted)
    return build_ipv4(IPv4Packet(REMOTE_IP, LOCAL_IP, PROTO_ICMP, build_icmp(message)))
