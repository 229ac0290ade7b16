"""Address families: what TCP and the host need to know about IPv4 versus IPv6, in one place.

Addresses travel through the stack as text in canonical form ("10.0.0.1", "fd00::2"): the form
`ipaddress` prints, so one address has one spelling and can key a table. An IPv4-mapped IPv6
address ("::ffff:10.0.0.1", RFC 4291 2.5.5.2) is the IPv4 address it maps: the stack sends such
a connection over IPv4, as a dual-stack socket does.
"""

from __future__ import annotations

import functools
import ipaddress
import socket

AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6

IPV4_HEADER_LEN = 20  # without options, as the stack sends it (RFC 791)
IPV6_HEADER_LEN = 40  # the fixed header (RFC 8200 section 3)
TCP_HEADER_LEN = 20  # without options (RFC 9293 3.1)
IPV4_MIN_MTU = 68  # RFC 791: every IPv4 module forwards a 68-octet datagram unfragmented
IPV6_MIN_MTU = 1280  # RFC 8200 section 5


def is_ipv6(ip: str) -> bool:
    """True for IPv6 text (canonical or not). Cheap: the hot path asks it per segment."""
    return ":" in ip


@functools.lru_cache(maxsize=4096)
def canonical(ip: str) -> str:
    """The one spelling of an address ("FD00::0002" -> "fd00::2", "::ffff:10.0.0.1" ->
    "10.0.0.1"). Raises ValueError with a one-line message for anything else."""
    try:
        addr = ipaddress.ip_address(ip.strip("[]") if ip.startswith("[") else ip)
    except ValueError:
        raise ValueError(f"not an IPv4 or IPv6 address: {ip!r}") from None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            raise ValueError(f"scoped IPv6 addresses are not supported: {ip!r}")
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
    return str(addr)


def family(ip: str) -> int:
    return AF_INET6 if is_ipv6(ip) else AF_INET


@functools.lru_cache(maxsize=4096)
def pack(ip: str) -> bytes:
    """Network-order bytes of an address: 4 for IPv4, 16 for IPv6."""
    return socket.inet_pton(AF_INET6 if ":" in ip else AF_INET, ip)


@functools.lru_cache(maxsize=4096)
def unpack(raw: bytes) -> str:
    """Canonical text of 4 or 16 network-order bytes (`ipaddress`'s spelling for IPv6, which
    differs from inet_ntop's for a few deprecated forms such as "::0.1.0.0"). A mapped address
    stays IPv6 here: on the wire it is a martian (RFC 4291 2.5.5.2), not an IPv4 peer."""
    if len(raw) == 16:
        return str(ipaddress.IPv6Address(raw))
    return socket.inet_ntop(AF_INET, raw)


def tcp_overhead(ip: str) -> int:
    """IP plus TCP header octets around a segment's options and data, for an MSS or a segment
    size from an MTU (RFC 9293 3.7.1 for IPv4; RFC 8200 section 8.3 for IPv6: 60)."""
    return (IPV6_HEADER_LEN if ":" in ip else IPV4_HEADER_LEN) + TCP_HEADER_LEN


def min_mtu(ip: str) -> int:
    return IPV6_MIN_MTU if is_ipv6(ip) else IPV4_MIN_MTU


def endpoint(ip: str, port: int) -> str:
    """"10.0.0.1:80" or "[fd00::1]:80" (RFC 3986 3.2.2 brackets, as `ss` prints)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def split_endpoint(text: str) -> tuple[str, int]:
    """The inverse of `endpoint`: "[fd00::1]:80" -> ("fd00::1", 80), "10.0.0.1:80" -> (...)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not an address:port: {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def mapped(ip: str) -> str:
    """How an AF_INET6 socket names an IPv4 peer: "::ffff:10.0.0.1" (RFC 4291 2.5.5.2)."""
    return ip if is_ipv6(ip) else f"::ffff:{ip}"
