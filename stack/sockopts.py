"""Socket options that are a field of the connection's TcpConfig (stack.config), in one table.

`stack.socket.Socket` keeps a config of its own; setsockopt changes a field of it (and of its
connection's, if it has one), getsockopt reads it back. A listener's config is inherited by the
connections it accepts, so an option set before listen() holds for them as well.

Numbers: Python's socket module gives Linux's where it has them. TCP_KEEPINIT and TCP_NOOPT exist
on the BSDs only, so they have FreeBSD's numbers (netinet/tcp.h).
"""

from __future__ import annotations

import errno
import socket as _pysocket
from collections.abc import Callable
from dataclasses import dataclass

from stack.config import TcpConfig

IPPROTO_IP = _pysocket.IPPROTO_IP
IPPROTO_IPV6 = _pysocket.IPPROTO_IPV6
IPPROTO_TCP = _pysocket.IPPROTO_TCP
IP_TOS = getattr(_pysocket, "IP_TOS", 1)
IP_TTL = getattr(_pysocket, "IP_TTL", 2)
IPV6_UNICAST_HOPS = getattr(_pysocket, "IPV6_UNICAST_HOPS", 16)
IPV6_TCLASS = getattr(_pysocket, "IPV6_TCLASS", 67)
TCP_KEEPIDLE = getattr(_pysocket, "TCP_KEEPIDLE", 4)
TCP_KEEPINTVL = getattr(_pysocket, "TCP_KEEPINTVL", 5)
TCP_KEEPCNT = getattr(_pysocket, "TCP_KEEPCNT", 6)
TCP_NOOPT = 8  # FreeBSD
TCP_KEEPINIT = 128  # FreeBSD

DEFAULT_HOPS = 64  # what -1 selects for IP_TTL and IPV6_UNICAST_HOPS (Linux's default TTL)
_ECN_BITS = 0x03  # the low two bits of TOS / traffic class are ECN's (RFC 3168 section 5)


def _invalid(what: str) -> OSError:
    return OSError(errno.EINVAL, f"Invalid argument: {what}")


def _hops(v: int) -> int:
    """IPV6_UNICAST_HOPS: 0..255, or -1 for the default (RFC 3493 5.1)."""
    if v == -1:
        return DEFAULT_HOPS
    if not 0 <= v <= 255:
        raise _invalid(f"hop limit {v} (0..255 or -1)")
    return v


def _ttl(v: int) -> int:
    """IP_TTL: 1..255, or -1 for the default (Linux refuses 0: no router forwards it)."""
    if v == 0:
        raise _invalid("TTL 0 (1..255 or -1)")
    return _hops(v)


def _class(v: int) -> int:
    """IP_TOS, IPV6_TCLASS: the DSCP (RFC 2474); the ECN bits stay TCP's, as on Linux; -1: 0."""
    if v == -1:
        return 0
    if not 0 <= v <= 255:
        raise _invalid(f"traffic class {v} (0..255 or -1)")
    return v & ~_ECN_BITS


def _seconds(v: int) -> float:
    if v < 0:
        raise _invalid(f"time {v} s")
    return float(v)


@dataclass(frozen=True)
class ConfigOption:
    """One option: its TcpConfig field, how a value becomes the field and the field a value."""

    field: str
    set: Callable[[int], object]
    get: Callable[[object], int]


def _int(v: object) -> int:
    assert isinstance(v, (int, float)), v  # bool is an int
    return int(v)


CONFIG_OPTIONS: dict[tuple[int, int], ConfigOption] = {
    (IPPROTO_TCP, TCP_KEEPIDLE): ConfigOption("keepalive_idle", _seconds, _int),
    (IPPROTO_TCP, TCP_KEEPINTVL): ConfigOption("keepalive_interval", _seconds, _int),
    (IPPROTO_TCP, TCP_KEEPCNT): ConfigOption("keepalive_count", int, _int),
    # Seconds; 0 clears it (then syn_retries alone bounds the open), as on FreeBSD.
    (IPPROTO_TCP, TCP_KEEPINIT): ConfigOption(
        "keepinit", lambda v: _seconds(v) or None, lambda c: _int(c or 0)
    ),
    (IPPROTO_TCP, TCP_NOOPT): ConfigOption("noopt", bool, _int),
    (IPPROTO_IP, IP_TTL): ConfigOption("ip_ttl", _ttl, _int),
    (IPPROTO_IP, IP_TOS): ConfigOption("ip_tos", _class, _int),
    (IPPROTO_IPV6, IPV6_UNICAST_HOPS): ConfigOption("ipv6_hops", _hops, _int),
    (IPPROTO_IPV6, IPV6_TCLASS): ConfigOption("ipv6_tclass", _class, _int),
}


def set_option(config: TcpConfig, level: int, option: int, value: int | bytes) -> TcpConfig:
    """config with the option's field set from value (an int, or its bytes as C would pass it)."""
    entry = CONFIG_OPTIONS[(level, option)]
    v = value if isinstance(value, int) else int.from_bytes(value, "little", signed=True)
    return config.with_(**{entry.field: entry.set(v)})


def get_option(config: TcpConfig, level: int, option: int) -> int:
    entry = CONFIG_OPTIONS[(level, option)]
    return entry.get(getattr(config, entry.field))
