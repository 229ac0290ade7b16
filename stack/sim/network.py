"""An in-memory network of stack hosts and plain routers on one virtual-time loop.

Each host node is a sans-I/O `Host` driven by a `StackRuntime` (the pump rule of stack/driver.py)
on the network's `VirtualTimeLoop`; nodes are joined by pairs of seeded one-way `Link`s. Everything
random is derived from the network seed and names (never from creation order or the clock), so one
seed always gives the same packet timeline, and a failing seed replays.

Routing is by destination address, IPv4 (octets 16..19 of the header) or IPv6 (octets 24..39): a
node sends a packet to the neighbour that owns the destination if there is one, else along a route
set with `route()` (for that destination, then the default, one default for both families). A host
may have an IPv6 address beside its IPv4 one (`add_host(..., address6=...)`); links carry and
impair both families alike. Routers have no stack: they decrement the TTL or hop limit (dropping at
zero), forward, and answer a too-big packet with ICMP: "fragmentation needed" with the link's MTU
for IPv4 with DF set (RFC 1191), Packet Too Big for IPv6, which routers never fragment (RFC 8200
section 5, RFC 8201). That is how Path MTU Discovery is tested over a stack-router-stack chain.

A host added with `offload=True` runs in the TUN driver's offload mode (virtio-net headers, TSO
super-segments, checksums left to the device): the network models the sending device, cutting
each super-segment into wire segments with complete checksums (`stack.wire.vnet.segment`) before
the link; it models no GRO, so such a host receives plain packets, checksums still verified.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from stack.checksum import internet_checksum
from stack.config import TcpConfig
from stack.driver import StackRuntime
from stack.errors import ParseError
from stack.inet import canonical, is_ipv6, pack, unpack
from stack.sim.link import Link, LinkProfile
from stack.sim.loop import VirtualTimeLoop, close_loop, new_loop
from stack.sim.loop import run as run_on_loop
from stack.trace import Trace
from stack.wire import icmpv6, ipv6, vnet
from stack.wire.icmp import build_icmp, frag_needed
from stack.wire.ipv4 import PROTO_ICMP, IPv4Packet, build_ipv4, unpack_addr

if TYPE_CHECKING:
    from stack.host import Host

_T = TypeVar("_T")

HostFactory = Callable[..., "Host"]
"""Called as factory(address, config=..., trace=..., rng=..., isn_key=...), like Host itself, and
with address6=... too when the host has an IPv6 address."""

Tap = Callable[[float, str, str, bytes], None]
"""Called as tap(time, from_node, to_node, packet) for every packet a link delivers."""

# Source address of ICMP errors from a router given no address of the family (TEST-NET-1,
# RFC 5737; the IPv6 documentation prefix, RFC 3849).
ANONYMOUS_ROUTER_ADDRESS = "192.0.2.1"
ANONYMOUS_ROUTER_ADDRESS6 = "2001:db8::1"
_ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})  # never answer an ICMP error (RFC 1812 4.3.2.7)
_DF = 0x40  # in octet 6 of the IPv4 header


def _default_host_factory() -> HostFactory:
    from stack.host import Host  # imported late: the network itself only needs the interface

    return Host


class Node:
    """What routing knows of a node: its addresses, outgoing links and routes."""

    def __init__(self, name: str, addresses: tuple[str, ...]) -> None:
        self.name = name
        self.addresses = addresses
        self.links: dict[str, Link] = {}  # neighbour name -> link toward it
        self.routes: dict[bytes, str] = {}  # packed destination -> neighbour name
        self.default_via: str | None = None

    @property
    def error_source(self) -> str:
        return next((a for a in self.addresses if not is_ipv6(a)), ANONYMOUS_ROUTER_ADDRESS)

    @property
    def error_source6(self) -> str:
        return next((a for a in self.addresses if is_ipv6(a)), ANONYMOUS_ROUTER_ADDRESS6)


class SimNode(Node):
    """A node running the stack: `host` is the sans-I/O core, `runtime` drives it on the loop."""

    def __init__(
        self, name: str, address: str, host: Host, runtime: StackRuntime, address6: str | None = None
    ) -> None:
        super().__init__(name, (address,) if address6 is None else (address, address6))
        self.address = address
        self.address6 = address6
        self.host = host
        self.runtime = runtime
        self.offload = False  # the host speaks virtio-net frames (TSO modelled at its device)


class RouterNode(Node):
    """A node without a stack that forwards packets by destination."""


class Duplex:
    """The two one-way links between nodes a and b."""

    def __init__(self, a: str, b: str, forward: Link, backward: Link) -> None:
        self.a = a
        self.b = b
        self.forward = forward  # a -> b
        self.backward = backward  # b -> a

    def set_profile(self, profile: LinkProfile, reverse: LinkProfile | None = None) -> None:
        """Change both directions at run time (b -> a gets `reverse`, or the same profile)."""
        self.forward.set_profile(profile)
        self.backward.set_profile(profile if reverse is None else reverse)

    def link(self, src: str, dst: str) -> Link:
        if (src, dst) == (self.a, self.b):
            return self.forward
        if (src, dst) == (self.b, self.a):
            return self.backward
        raise KeyError(f"link {src}->{dst} is not part of {self.a}<->{self.b}")


class Network:
    """Hosts, routers and links on one virtual clock. Close it (or use `with`) when done.

    `stats` counts what the network itself did with packets: no_route, malformed (shorter than
    an IPv4 header), forwarded, ttl_expired, to_router (addressed to a router: no services),
    frag_needed (ICMP errors sent), too_big_dropped (too big without DF, or an ICMP error).
    Each link counts its own impairments in `Link.stats`.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.loop: VirtualTimeLoop = new_loop()
        self.stats: Counter[str] = Counter()
        self.taps: list[Tap] = []
        self._nodes: dict[str, Node] = {}
        self._owner: dict[bytes, str] = {}  # packed address -> node name
        self._duplexes: dict[frozenset[str], Duplex] = {}

    # --- building -------------------------------------------------------------------------

    def add_host(
        self,
        name: str,
        address: str,
        *,
        config: TcpConfig | None = None,
        trace: Trace | None = None,
        host_factory: HostFactory | None = None,
        address6: str | None = None,
        offload: bool = False,
    ) -> SimNode:
        """A host running the stack at `address` (IPv4) and, if given, `address6` (IPv6)."""
        if address6 is not None:
            address6 = canonical(address6)
            if not is_ipv6(address6):
                raise ValueError(f"address6 of {name!r} must be an IPv6 address, got {address6!r}")
        self._check_new(name, (address,) if address6 is None else (address, address6))
        factory = _default_host_factory() if host_factory is None else host_factory
        extra: dict[str, Any] = {} if address6 is None else {"address6": address6}
        if offload:
            extra["offload"] = True
        host = factory(
            address,
            config=config,
            trace=trace,
            rng=random.Random(f"{self.seed}:{name}:rng"),
            isn_key=hashlib.sha256(f"{self.seed}:{name}:isn".encode()).digest(),
            **extra,
        )
        if offload:
            runtime = StackRuntime(host, self.loop, lambda frame: self._transmit_device(node, frame))
        else:
            runtime = StackRuntime(host, self.loop, lambda packet: self._transmit(node, packet))
        node = SimNode(name, address, host, runtime, address6)
        node.offload = offload
        self._register(node)
        return node

    def add_router(self, name: str, *addresses: str) -> RouterNode:
        """A forwarding node; its addresses (optional, either family) are the source of its ICMP
        errors."""
        addresses = tuple(canonical(a) for a in addresses)
        self._check_new(name, addresses)
        node = RouterNode(name, addresses)
        self._register(node)
        return node

    def connect(
        self, a: str, b: str, profile: LinkProfile | None = None, reverse: LinkProfile | None = None
    ) -> Duplex:
        """Join a and b: a->b with `profile`, b->a with `reverse` (default: the same profile)."""
        na, nb = self._get(a), self._get(b)
        if a == b:
            raise ValueError(f"cannot connect {a!r} to itself")
        if frozenset((a, b)) in self._duplexes:
            raise ValueError(f"{a!r} and {b!r} are already connected")
        forward_profile = LinkProfile() if profile is None else profile
        forward = self._make_link(na, nb, forward_profile)
        backward = self._make_link(nb, na, forward_profile if reverse is None else reverse)
        duplex = Duplex(a, b, forward, backward)
        self._duplexes[frozenset((a, b))] = duplex
        return duplex

    def route(self, node: str, *, via: str, to: str | None = None) -> None:
        """Send what `node` cannot deliver directly to neighbour `via`: for address `to`, or
        for every such destination when `to` is None (the default route)."""
        n = self._get(node)
        if via not in n.links:
            raise ValueError(f"{via!r} is not a neighbour of {node!r}: connect them first")
        if to is None:
            n.default_via = via
        else:
            n.routes[pack(canonical(to))] = via

    # --- lookup and running ---------------------------------------------------------------

    def node(self, name: str) -> SimNode:
        """The host node called name (routers: see `router`)."""
        node = self._get(name)
        if not isinstance(node, SimNode):
            raise TypeError(f"{name!r} is a router, not a host")
        return node

    def router(self, name: str) -> RouterNode:
        node = self._get(name)
        if not isinstance(node, RouterNode):
            raise TypeError(f"{name!r} is a host, not a router")
        return node

    def inject(self, node: str, packet: bytes) -> None:
        """Put a crafted packet on the network as if `node` had transmitted it (tests use this to
        send what a stack would never send, or to speak for a node that has no stack)."""
        self._transmit(self._get(node), packet)

    def duplex(self, a: str, b: str) -> Duplex:
        return self._duplexes[frozenset((a, b))]

    @property
    def now(self) -> float:
        return self.loop.time()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run coro on the network's loop; `timeout` is in virtual seconds (TimeoutError)."""
        return run_on_loop(coro, loop=self.loop, timeout=timeout)

    def run_for(self, seconds: float) -> None:
        """Let the network run for `seconds` of virtual time."""
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def close(self) -> None:
        close_loop(self.loop)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------

    def _get(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"no node named {name!r}; have {sorted(self._nodes)}") from None

    def _check_new(self, name: str, addresses: tuple[str, ...]) -> None:
        if name in self._nodes:
            raise ValueError(f"a node named {name!r} already exists")
        for address in addresses:
            owner = self._owner.get(pack(address))
            if owner is not None:
                raise ValueError(f"address {address} already belongs to {owner!r}")

    def _register(self, node: Node) -> None:
        self._nodes[node.name] = node
        for address in node.addresses:
            self._owner[pack(address)] = node.name

    def _make_link(self, src: Node, dst: Node, profile: LinkProfile) -> Link:
        # Seeded by the endpoint names, so adding or reordering other links changes nothing here.
        rng = random.Random(f"{self.seed}:link:{src.name}>{dst.name}")
        link = Link(
            self.loop,
            profile,
            rng,
            deliver=lambda packet: self._arrive(src, dst, packet),
            on_too_big=lambda packet: self._too_big(src, link, packet),
        )
        src.links[dst.name] = link
        return link

    def _transmit_device(self, node: Node, frame: bytes) -> None:
        """An offload host's frame: what its device puts on the wire (see the module docstring)."""
        try:
            header = vnet.parse_vnet(frame)
        except ParseError:
            self.stats["malformed"] += 1
            return
        for packet in vnet.segment(header, frame[vnet.HEADER_LEN :]):
            self._transmit(node, packet)

    def _transmit(self, node: Node, packet: bytes) -> None:
        dst = destination(packet)
        if dst is None:
            self.stats["malformed"] += 1
            return
        if self._owner.get(dst) == node.name:
            # Addressed to itself: loop back, after the current pump has finished.
            self.loop.call_soon(self._arrive, node, node, packet)
            return
        link = self._next_hop(node, dst)
        if link is None:
            self.stats["no_route"] += 1
            return
        link.send(packet)

    def _next_hop(self, node: Node, dst: bytes) -> Link | None:
        owner = self._owner.get(dst)
        if owner is not None and owner in node.links:
            return node.links[owner]
        via = node.routes.get(dst, node.default_via)
        return None if via is None else node.links[via]

    def _arrive(self, src: Node, dst: Node, packet: bytes) -> None:
        for tap in self.taps:
            tap(self.loop.time(), src.name, dst.name, packet)
        if isinstance(dst, SimNode):
            dst.runtime.deliver((vnet.PLAIN + packet if dst.offload else packet,), loopback=src is dst)
        else:
            self._forward(dst, packet)

    def _forward(self, router: Node, packet: bytes) -> None:
        if self._owner.get(destination(packet) or b"") == router.name:
            self.stats["to_router"] += 1  # routers run no services
            return
        v6 = packet[0] >> 4 == 6
        if packet[7 if v6 else 8] <= 1:
            self.stats["ttl_expired"] += 1
            return
        self.stats["forwarded"] += 1
        self._transmit(router, ipv6.decrement_hop_limit(packet) if v6 else decrement_ttl(packet))

    def _too_big(self, node: Node, link: Link, packet: bytes) -> None:
        mtu = link.profile.mtu
        if mtu is None or destination(packet) is None:
            return
        if packet[0] >> 4 == 6:
            self._packet_too_big(node, mtu, packet)
            return
        if not packet[6] & _DF:
            self.stats["too_big_dropped"] += 1  # fragmentation is not simulated
            return
        ihl = (packet[0] & 0x0F) * 4
        if packet[9] == PROTO_ICMP and len(packet) > ihl and packet[ihl] in _ICMP_ERROR_TYPES:
            self.stats["too_big_dropped"] += 1
            return
        self.stats["frag_needed"] += 1
        icmp = build_icmp(frag_needed(mtu, packet))
        error = build_ipv4(
            IPv4Packet(
                src=node.error_source,
                dst=unpack_addr(packet[12:16]),
                protocol=PROTO_ICMP,
                payload=icmp,
                dont_fragment=False,
            )
        )
        # Deferred: too-big is reported from inside the sender's pump, which must not be re-entered.
        self.loop.call_soon(self._transmit, node, error)

    def _packet_too_big(self, node: Node, mtu: int, packet: bytes) -> None:
        """RFC 8200 section 5: an IPv6 router never fragments; it answers Packet Too Big (RFC 4443
        3.2), except to an ICMPv6 error (RFC 4443 2.4 (e))."""
        if packet[6] == ipv6.NH_ICMPV6 and len(packet) > ipv6.HEADER_LEN and packet[ipv6.HEADER_LEN] < 128:
            self.stats["too_big_dropped"] += 1
            return
        self.stats["packet_too_big"] += 1
        src, dst = pack(node.error_source6), packet[8:24]
        body = icmpv6.build_icmpv6(icmpv6.packet_too_big(mtu, packet), src, dst)
        error = ipv6.build_ipv6(
            ipv6.IPv6Packet(node.error_source6, unpack(dst), ipv6.NH_ICMPV6, body)
        )
        self.loop.call_soon(self._transmit, node, error)


def destination(packet: bytes) -> bytes | None:
    """The packed destination address of an IPv4 or IPv6 packet, None if it is too short for
    its version's header (or of neither version)."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20:
        return packet[16:20]
    if version == 6 and len(packet) >= ipv6.HEADER_LEN:
        return packet[24:40]
    return None


def decrement_ttl(packet: bytes) -> bytes:
    """packet with its TTL one lower and the header checksum recomputed."""
    ihl = (packet[0] & 0x0F) * 4
    header = bytearray(packet[:ihl])
    header[8] -= 1
    header[10:12] = b"\x00\x00"
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    return bytes(header) + packet[ihl:]
