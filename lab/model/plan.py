"""Resolve a Topology into an immutable LabPlan: every name, address, MTU and route, before any
kernel object exists. Realisation (lab.kernel.netns) only carries a plan out; it decides nothing.

Addressing (deterministic, so a plan is a pure function of its topology). Every lab is dual-stack:
each IPv4 address below has an IPv6 twin from the ULA range fd00::/8 (RFC 4193), numbered the same
way, so a topology file needs no edit to get IPv6:
- link i gets 10.1.i.0/24 and fd00:0:0:i::/64 (i in hex) unless the file gives `addresses` /
  `addresses6`: endpoint a is .1 / ::1, endpoint b is .2 / ::2 (explicit subnets are skipped);
- stack node k (k-th stack node in file order) answers on its *stack address* 10.2.0.(k+1) and
  fd00:0:2::(k+1), which no kernel owns. Its namespace holds tun0, point-to-point, kernel side
  10.254.0.(k+1) and fd00:0:254::(k+1), peer = the stack address; the namespace forwards (both
  families) between its links and tun0. Other nodes reach the stack address via that node's link
  address as next hop.
Two labs never collide although both use these same numbers: every address lives only inside the
lab's own namespaces, and nothing of a lab is in the root namespace. (RFC 4193 wants a random
global ID; a fixed one is fine for addresses that never leave the lab, and keeps plans stable.)

Routes, per family (`routes` IPv4, `routes6` IPv6): each node gets one route per link subnet it is
not attached to and one host route (/32, /128) per other stack address, with the next hop on a
shortest path (BFS over the node graph, links in file order). Routers and stack-node namespaces
forward, so multi-hop paths work through either.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from lab.model.container import ContainerPlan
from lab.model.impairment import Impairment
from lab.model.names import netns_name
from lab.model.topology import App, Node, Topology, TopologyError, check_topology

LINK_POOL = ipaddress.IPv4Network("10.1.0.0/16")
STACK_POOL = ipaddress.IPv4Network("10.2.0.0/24")
TUN_POOL = ipaddress.IPv4Network("10.254.0.0/24")
LINK_POOL6 = ipaddress.IPv6Network("fd00::/48")
STACK_POOL6 = ipaddress.IPv6Network("fd00:0:2::/64")
TUN_POOL6 = ipaddress.IPv6Network("fd00:0:254::/64")
LINK_PREFIX6 = 64
TUN_IFNAME = "tun0"

Kind = Literal["stack", "kernel", "router", "container"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class IfacePlan:
    node: str
    ifname: str
    address: ipaddress.IPv4Interface
    mtu: int
    link: int  # index into LabPlan.links
    peer_node: str
    peer_address: ipaddress.IPv4Address
    address6: ipaddress.IPv6Interface
    peer_address6: ipaddress.IPv6Address
    egress: Impairment | None  # what this end's sending direction suffers


@dataclass(frozen=True)
class RoutePlan:
    dst: IPNetwork
    gateway: IPAddress  # of the same family as dst
    dev: str


@dataclass(frozen=True)
class TunPlan:
    local: ipaddress.IPv4Address  # the kernel's side of tun0
    peer: ipaddress.IPv4Address  # the stack address
    mtu: int
    local6: ipaddress.IPv6Address  # the kernel's side of tun0, IPv6
    peer6: ipaddress.IPv6Address  # the stack's IPv6 address
    ifname: str = TUN_IFNAME


@dataclass(frozen=True)
class NodePlan:
    name: str
    kind: Kind
    netns: str
    interfaces: tuple[IfacePlan, ...]
    routes: tuple[RoutePlan, ...]
    routes6: tuple[RoutePlan, ...]
    tun: TunPlan | None = None
    tcp_config: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    apps: tuple[App, ...] = ()
    container: ContainerPlan | None = None  # kind: container (lab.kernel.container)
    offload: bool = False  # the daemon opens tun0 with checksum/TSO offloads

    @property
    def stack_address(self) -> ipaddress.IPv4Address | None:
        return self.tun.peer if self.tun else None

    @property
    def address6(self) -> str | None:
        """A stack node's IPv6 stack address (what `stack.host.Host(..., address6=)` takes)."""
        return str(self.tun.peer6) if self.tun else None

    def iface(self, ifname: str) -> IfacePlan:
        for iface in self.interfaces:
            if iface.ifname == ifname:
                return iface
        raise KeyError(f"{self.name} has no interface {ifname!r}")


@dataclass(frozen=True)
class LinkPlan:
    index: int
    a: IfacePlan
    b: IfacePlan
    mtu: int

    @property
    def name(self) -> str:
        """How users name a link: `client-server` (with interfaces if two links join the same nodes)."""
        return f"{self.a.node}-{self.b.node}"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return self.a.address.network

    @property
    def subnet6(self) -> ipaddress.IPv6Network:
        return self.a.address6.network


@dataclass(frozen=True)
class LabPlan:
    name: str
    nodes: Mapping[str, NodePlan]
    links: tuple[LinkPlan, ...]
    seed: int = 0

    @property
    def prefix(self) -> str:
        return netns_name(self.name, "")

    def node(self, name: str) -> NodePlan:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"no node {name!r} in lab {self.name}; nodes: {', '.join(self.nodes)}") from None

    def _addressed(self, node: str) -> NodePlan:
        plan = self.node(node)
        if plan.tun is None and not plan.interfaces:
            raise KeyError(f"node {node!r} has no links, so no address")
        return plan

    def address_of(self, node: str) -> ipaddress.IPv4Address:
        """Where apps reach `node`: its stack address, or a kernel/router node's first link address."""
        plan = self._addressed(node)
        return plan.tun.peer if plan.tun else plan.interfaces[0].address.ip

    def address6_of(self, node: str) -> ipaddress.IPv6Address:
        """`address_of` for IPv6: the stack's IPv6 address, or the first link's IPv6 address."""
        plan = self._addressed(node)
        return plan.tun.peer6 if plan.tun else plan.interfaces[0].address6.ip

    def link(self, name: str) -> LinkPlan:
        for link in self.links:
            if name in (link.name, str(link.index)):
                return link
        raise KeyError(f"no link {name!r}; links: {', '.join(link.name for link in self.links)}")

    def seed_for(self, link: int, a_to_b: bool) -> int:
        """A distinct, reproducible emulator seed per link direction."""
        return self.seed * 10_000 + link * 2 + (0 if a_to_b else 1)

    def hosts(self) -> dict[str, str]:
        """Node name -> address apps should target, so a node name works as a host name."""
        return {n: str(self.address_of(n)) for n, p in self.nodes.items() if p.tun or p.interfaces}

    def hosts6(self) -> dict[str, str]:
        """`hosts` for IPv6: node name -> the IPv6 address apps should target."""
        return {n: str(self.address6_of(n)) for n, p in self.nodes.items() if p.tun or p.interfaces}

    def daemon_config(self, node: str, run_dir: str) -> dict[str, Any]:
        """The JSON a stack node's daemon reads: who it is, tun0, the stack's settings, its apps."""
        plan = self.node(node)
        if plan.tun is None:
            raise ValueError(f"{node} is a {plan.kind} node: only stack nodes run a daemon")
        return {
            "lab": self.name,
            "node": node,
            "kind": plan.kind,
            "netns": plan.netns,
            "run_dir": run_dir,
            "stack_address": str(plan.tun.peer),
            "stack_address6": str(plan.tun.peer6),
            "tun": {
                "ifname": plan.tun.ifname,
                "address": str(plan.tun.local),
                "peer": str(plan.tun.peer),
                "address6": str(plan.tun.local6),
                "peer6": str(plan.tun.peer6),
                "mtu": plan.tun.mtu,
            },
            "mtu": plan.tun.mtu,
            "tcp_config": dict(plan.tcp_config),
            "offload": plan.offload,
            "apps": [app.model_dump() for app in plan.apps],
            "hosts": self.hosts(),
            "hosts6": self.hosts6(),
        }

    def summary(self) -> dict[str, Any]:
        """JSON-able description for state.json and `tcplab status`."""
        return {
            "name": self.name,
            "nodes": {
                n.name: {
                    "kind": n.kind,
                    "netns": n.netns,
                    "address": str(self.address_of(n.name)) if (n.interfaces or n.tun) else None,
                    "address6": str(self.address6_of(n.name)) if (n.interfaces or n.tun) else None,
                    "interfaces": {i.ifname: str(i.address) for i in n.interfaces},
                    "interfaces6": {i.ifname: str(i.address6) for i in n.interfaces},
                    "routes": [f"{r.dst} via {r.gateway} dev {r.dev}" for r in n.routes],
                    "routes6": [f"{r.dst} via {r.gateway} dev {r.dev}" for r in n.routes6],
                    **({"image": n.container.image} if n.container else {}),
                }
                for n in self.nodes.values()
            },
            "links": [
                {
                    "name": link.name,
                    "a": f"{link.a.node}:{link.a.ifname}",
                    "b": f"{link.b.node}:{link.b.ifname}",
                    "subnet": str(link.subnet),
                    "subnet6": str(link.subnet6),
                    "mtu": link.mtu,
                    "a_to_b": link.a.egress.describe() if link.a.egress else "none",
                    "b_to_a": link.b.egress.describe() if link.b.egress else "none",
                }
                for link in self.links
            ],
        }


def _link_subnets(
    topo: Topology, field: Literal["addresses", "addresses6"], pool: IPNetwork, prefix: int,
    reserved: tuple[IPNetwork, ...],
) -> list[IPNetwork | None]:
    """Per link, its automatic subnet of one family, or None where the file gives `field`.

    Given subnets must not overlap each other or the `reserved` pools; automatic ones are the
    pool's subnets in order, skipping any a given one overlaps."""
    given: list[IPNetwork] = []
    for i, link in enumerate(topo.links):
        addresses = getattr(link, field)
        if addresses is None:
            continue
        net: IPNetwork = addresses[0].network
        for other in reserved:
            if net.overlaps(other):
                raise TopologyError(
                    f"links[{i}].{field}: {net} overlaps {other}, reserved for stack addresses"
                )
        for j, earlier in enumerate(topo.links[:i]):
            theirs = getattr(earlier, field)
            if theirs and theirs[0].network.overlaps(net):
                raise TopologyError(f"links[{i}].{field}: {net} overlaps links[{j}].{field}")
        given.append(net)
    free = (s for s in pool.subnets(new_prefix=prefix) if not any(s.overlaps(g) for g in given))
    out: list[IPNetwork | None] = []
    for i, link in enumerate(topo.links):
        if getattr(link, field) is not None:
            out.append(None)
            continue
        subnet = next(free, None)
        if subnet is None:
            raise TopologyError(f"links[{i}]: no free subnet left in {pool}")
        out.append(subnet)
    return out


def _stack_addresses(
    topo: Topology, field: Literal["address", "address6"], pool: IPNetwork
) -> dict[str, IPAddress]:
    """Stack node -> its stack address of one family: given in the file, else the pool's next free one."""
    used = {getattr(n, field) for n in topo.nodes.values() if getattr(n, field) is not None}
    free = (h for h in pool.hosts() if h not in used)
    out: dict[str, IPAddress] = {}
    for name, node in topo.nodes.items():
        if node.kind == "stack":
            address = getattr(node, field) or next(free, None)
            if address is None:
                raise TopologyError(f"nodes.{name}: no free stack address left in {pool}")
            out[name] = address
    return out


def _interface_names(topo: Topology) -> list[tuple[str, str]]:
    """(a ifname, b ifname) per link: explicit names kept, others eth0, eth1, ... per node."""
    used: dict[str, set[str]] = {name: set() for name in topo.nodes}
    for link in topo.links:
        for end in (0, 1):
            explicit = link.ifname(end)
            if explicit:
                used[link.node(end)].add(explicit)
    counters = dict.fromkeys(topo.nodes, 0)
    out: list[tuple[str, str]] = []
    for link in topo.links:
        pair: list[str] = []
        for end in (0, 1):
            node = link.node(end)
            name = link.ifname(end)
            if name is None:
                while f"eth{counters[node]}" in used[node]:
                    counters[node] += 1
                name = f"eth{counters[node]}"
                used[node].add(name)
            pair.append(name)
        out.append((pair[0], pair[1]))
    return out


@dataclass(frozen=True)
class _Hop:
    neighbour: str  # the first hop from the source
    link: int  # the link to it
    distance: int  # hops from the source to the target


def _first_hops(topo: Topology, source: str) -> dict[str, _Hop]:
    """BFS from `source`: for every reachable node, the first hop of a shortest path to it."""
    adjacent: dict[str, list[tuple[str, int]]] = {n: [] for n in topo.nodes}
    for i, link in enumerate(topo.links):
        a, b = link.node(0), link.node(1)
        adjacent[a].append((b, i))
        adjacent[b].append((a, i))
    hops: dict[str, _Hop] = {}
    queue: deque[tuple[str, int]] = deque([(source, 0)])
    seen = {source}
    while queue:
        here, distance = queue.popleft()
        for neighbour, via_link in adjacent[here]:
            if neighbour in seen:
                continue
            seen.add(neighbour)
            first = _Hop(neighbour, via_link, 1) if here == source else hops[here]
            hops[neighbour] = _Hop(first.neighbour, first.link, distance + 1)
            queue.append((neighbour, distance + 1))
    return hops


def _routes(
    name: str, faces: list[IfacePlan], links: list[LinkPlan], stack: dict[str, IPNetwork],
    first: dict[str, _Hop], family: int,
) -> tuple[RoutePlan, ...]:
    """`name`'s routes of one family: to every link subnet it is not on, then to every other stack
    address (`stack`: node -> host network), via the first hop of a shortest path."""
    own = {f.link for f in faces}

    def route(dst: IPNetwork, target: str) -> RoutePlan:
        mine = next(f for f in faces if f.link == first[target].link)
        return RoutePlan(dst, mine.peer_address if family == 4 else mine.peer_address6, mine.ifname)

    routes: list[RoutePlan] = []
    for lp in links:
        reachable = [n for n in (lp.a.node, lp.b.node) if n in first]
        if lp.index not in own and reachable:
            target = min(reachable, key=lambda n: first[n].distance)
            routes.append(route(lp.subnet if family == 4 else lp.subnet6, target))
    routes += [route(dst, other) for other, dst in stack.items() if other != name and other in first]
    return tuple(routes)


def _container_plan(node: Node) -> ContainerPlan | None:
    if node.kind != "container" or node.image is None:
        return None
    return ContainerPlan(node.image, node.command, MappingProxyType(dict(node.env)), node.ports, node.binds)


def build_plan(topo: Topology, seed: int = 0) -> LabPlan:
    """Resolve names, addresses and routes; raise TopologyError if the topology cannot be laid out."""
    check_topology(topo)
    subnets = _link_subnets(topo, "addresses", LINK_POOL, 24, (STACK_POOL, TUN_POOL))
    subnets6 = _link_subnets(topo, "addresses6", LINK_POOL6, LINK_PREFIX6, (STACK_POOL6, TUN_POOL6))

    ifnames = _interface_names(topo)
    faces: dict[str, list[IfacePlan]] = {n: [] for n in topo.nodes}
    links: list[LinkPlan] = []
    for i, link in enumerate(topo.links):
        if link.addresses:
            addr_a, addr_b = link.addresses
        else:
            net = subnets[i]
            assert net is not None
            addr_a = ipaddress.IPv4Interface(f"{net[1]}/{net.prefixlen}")
            addr_b = ipaddress.IPv4Interface(f"{net[2]}/{net.prefixlen}")
        if link.addresses6:
            addr6_a, addr6_b = link.addresses6
        else:
            net = subnets6[i]
            assert net is not None
            addr6_a = ipaddress.IPv6Interface(f"{net[1]}/{net.prefixlen}")
            addr6_b = ipaddress.IPv6Interface(f"{net[2]}/{net.prefixlen}")
        mtu = link.mtu or topo.defaults.mtu
        imp = link.impairments or topo.defaults.impairments
        a_node, b_node = link.node(0), link.node(1)
        end_a = IfacePlan(
            a_node, ifnames[i][0], addr_a, mtu, i, b_node, addr_b.ip, addr6_a, addr6_b.ip,
            imp.direction(True) if imp else None,
        )
        end_b = IfacePlan(
            b_node, ifnames[i][1], addr_b, mtu, i, a_node, addr_a.ip, addr6_b, addr6_a.ip,
            imp.direction(False) if imp else None,
        )
        faces[a_node].append(end_a)
        faces[b_node].append(end_b)
        links.append(LinkPlan(i, end_a, end_b, mtu))

    # Stack addresses and tun0.
    stack4 = _stack_addresses(topo, "address", STACK_POOL)
    stack6 = _stack_addresses(topo, "address6", STACK_POOL6)
    tuns: dict[str, TunPlan] = {}
    for k, name in enumerate(stack4):
        if k >= 254:
            raise TopologyError(f"nodes.{name}: at most 254 stack nodes per lab")
        node = topo.nodes[name]
        settings = node.stack.merged_over(topo.defaults.stack) if node.stack else topo.defaults.stack
        mtu = min((f.mtu for f in faces[name]), default=topo.defaults.mtu)
        if settings is not None and settings.mtu is not None:
            mtu = settings.mtu
        elif settings is not None and settings.mss is not None:
            mtu = settings.mss + 40
        tuns[name] = TunPlan(
            local=TUN_POOL[k + 1], peer=ipaddress.IPv4Address(stack4[name]), mtu=mtu,
            local6=TUN_POOL6[k + 1], peer6=ipaddress.IPv6Address(stack6[name]),
        )

    all_addresses: list[IPAddress] = [t.peer for t in tuns.values()] + [t.peer6 for t in tuns.values()]
    all_addresses += [a for fs in faces.values() for f in fs for a in (f.address.ip, f.address6.ip)]
    if len(set(all_addresses)) != len(all_addresses):
        raise TopologyError("two interfaces or stack addresses share one address")
    for name, tun in tuns.items():
        for subnet in [lp.subnet6 for lp in links] + [TUN_POOL6]:
            if tun.peer6 in subnet:  # it would be on a link, not behind tun0
                raise TopologyError(f"nodes.{name}.address6: {tun.peer6} is inside {subnet} (links, tun0)")

    host4: dict[str, IPNetwork] = {n: ipaddress.IPv4Network(f"{t.peer}/32") for n, t in tuns.items()}
    host6: dict[str, IPNetwork] = {n: ipaddress.IPv6Network(f"{t.peer6}/128") for n, t in tuns.items()}
    nodes: dict[str, NodePlan] = {}
    for name, node in topo.nodes.items():
        first = _first_hops(topo, name)
        tcp_config: dict[str, object] = {}
        offload = False
        if name in tuns:
            settings = node.stack.merged_over(topo.defaults.stack) if node.stack else topo.defaults.stack
            tcp_config = settings.tcp_config_changes(tuns[name].mtu) if settings else {"mtu": tuns[name].mtu}
            offload = bool(settings and settings.offload)
        nodes[name] = NodePlan(
            name=name,
            kind=node.kind,
            netns=netns_name(topo.name, name),
            interfaces=tuple(faces[name]),
            routes=_routes(name, faces[name], links, host4, first, 4),
            routes6=_routes(name, faces[name], links, host6, first, 6),
            tun=tuns.get(name),
            tcp_config=MappingProxyType(tcp_config),
            apps=node.apps,
            container=_container_plan(node),
            offload=offload,
        )
    return LabPlan(name=topo.name, nodes=MappingProxyType(nodes), links=tuple(links), seed=seed)
