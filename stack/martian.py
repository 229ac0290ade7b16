"""Martian packets: IPv4 sources no genuine packet arriving on an interface can carry.

RFC 1812 5.3.7 and RFC 1122 3.2.1.3 list them; Linux drops them on arrival (fib_validate_source,
"martian source"). The host checks every packet before TCP sees it, so it never answers such a
source: a SYN whose source is the host's own address and port (the LAND attack) would otherwise
make the host answer itself forever. The stack has no loopback interface, so a packet from one of
its own addresses is always forged. The destination check (not one of ours) stays in the host.
TTL 0 is not a reason to drop a packet addressed to us (RFC 1122 3.2.1.7 concerns forwarding).

The reason names are the host's drop counters.
"""

from __future__ import annotations

from collections.abc import Iterable

from stack.wire.ipv4 import pack_addr

SOURCE_OWN = "martian_source_own"  # one of the host's addresses: forged (LAND)
SOURCE_ZERO = "martian_source_zero"  # 0.0.0.0/8, "this network" (RFC 1122 3.2.1.3 (a), (b))
SOURCE_LOOPBACK = "martian_source_loopback"  # 127.0.0.0/8 (RFC 1122 3.2.1.3 (g))
SOURCE_MULTICAST = "martian_source_multicast"  # 224.0.0.0/4 (RFC 1112 4: never a source)
SOURCE_BROADCAST = "martian_source_broadcast"  # 255.255.255.255 (RFC 1122 3.2.1.3 (c))
REASONS = (SOURCE_OWN, SOURCE_ZERO, SOURCE_LOOPBACK, SOURCE_MULTICAST, SOURCE_BROADCAST)

_LIMITED_BROADCAST = b"\xff\xff\xff\xff"


class MartianFilter:
    """Classifies a packed IPv4 source address: the drop reason, or None when it may be genuine."""

    def __init__(self, own: Iterable[str]) -> None:
        self.own = frozenset(pack_addr(a) for a in own)

    def check_source(self, src: bytes) -> str | None:
        first = src[0]
        if first == 0:
            return SOURCE_ZERO
        if first == 127:
            return SOURCE_LOOPBACK
        if 224 <= first <= 239:
            return SOURCE_MULTICAST
        if src == _LIMITED_BROADCAST:
            return SOURCE_BROADCAST
        if src in self.own:
            return SOURCE_OWN
        return None
