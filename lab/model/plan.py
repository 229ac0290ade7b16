"""Resolve a Topology into an immutable LabPlan: every name, address, MTU and route, before any
kernel object exists. Realisation (lab.kernel.netns) only carries a plan out; it decides nothing.

Addressing (deterministic, so a plan is a pure function of its topology):
- link i gets 10.1.i.0/24 unless the file gives addresses: endpoint a is .1, endpoint b is .2;
- stack node k (k-th stack node in file order) answers on its *stack address* 10.2.0.(k+1), which
  no kernel owns. Its namespace holds tun0, point-to-point, kernel side 10.254.0.(k+1), peer = the
  stack address; the namespace forwards (ip_forward=1) between its links and tun0. Other nodes
  reach the stack address via that node's link address as next hop.
Two labs never collide although both use these same numbers: every address lives only inside the
lab's own namespaces, and nothing of a lab is in the root namespace.

Routes: each node gets one route per subnet it is not attached to and one /32 per other stack
address, with the next hop on a shortest path (BFS over the node graph, links in file order).
Routers and stack-node namespaces forward, so multi-hop paths work through either.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from lab.model.impairment import Impairment
from lab.model.names import netns_name
from lab.model.topology import App, Topology, TopologyError, check_topology

LINK_POOL = ipaddress.IPv4Network("10.1.0.0/16")
STACK_POOL = ipaddress.IPv4Network("10.2.0.0/24")
TUN_POOL = ipaddress.IPv4Network("10.254.0.0/24")
TUN_IFNAME = "tun0"

Kind = Literal["stack", "kernel", "router"]


@dataclass(frozen=True)
class IfacePlan:
    node: str
    ifname: str
    address: ipaddress.IPv4Interface
    mtu: int
    link: int  # index into LabPlan.links
    peer_node: str
    peer_address: ipaddress.IPv4Address
    egress: Impairment | None  # what this end's sending direction suffers


@dataclass(frozen=True)
class RoutePlan:
    dst: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    dev: str


@dataclass(frozen=True)
class TunPlan:
    local: ipaddress.IPv4Address  # the kernel's side of tun0
    peer: ipaddress.IPv4Address  # the stack address
    mtu: int
    ifname: str = TUN_IFNAME


@dataclass(frozen=True)
class NodePlan:
    name: str
    kind: Kind
    netns: str
    interfaces: tuple[IfacePlan, ...]
    routes: tuple[RoutePlan, ...]
    tun: TunPlan | None = None
    tcp_config: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    apps: tuple[App, ...] = ()
    offload: bool = False  # the daemon opens tun0 with checksum/TSO offloads

    @property
    def stack_address(self) -> ipaddress.IPv4Address | None:
        return self.tun.peer if self.tun else None

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

    def address_of(self, node: str) -> ipaddress.IPv4Address:
        """Where apps reach `node`: its stack address, or a kernel/router node's first link address."""
        plan = self.node(node)
        if plan.stack_address is not None:
            return plan.stack_address
        if not plan.interfaces:
            raise KeyError(f"node {node!r} has no links, so no address")
        return plan.interfaces[0].address.ip

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
        out: dict[str, str] = {}
        for name in self.nodes:
            try:
                out[name] = str(self.address_of(name))
            except KeyError:
                continue
        return out

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
            "tun": {
                "ifname": plan.tun.ifname,
                "address": str(plan.tun.local),
                "peer": str(plan.tun.peer),
                "mtu": plan.tun.mtu,
            },
            "mtu": plan.tun.mtu,
            "tcp_config": dict(plan.tcp_config),
            "offload": plan.offload,
            "apps": [app.model_dump() for app in plan.apps],
            "hosts": self.hosts(),
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
                    "interfaces": {i.ifname: str(i.address) for i in n.interfaces},
                    "routes": [f"{r.dst} via {r.gateway} dev {r.dev}" for r in n.routes],
                }
                for n in self.nodes.values()
            },
            "links": [
                {
                    "name": link.name,
                    "a": f"{link.a.node}:{link.a.ifname}",
                    "b": f"{link.b.node}:{link.b.ifname}",
                    "subnet": str(link.subnet),
                    "mtu": link.mtu,
                    "a_to_b": link.a.egress.describe() if link.a.egress else "none",
                    "b_to_a": link.b.egress.describe() if link.b.egress else "none",
                }
                for link in self.links
            ],
        }


def _auto_subnets(taken: list[ipaddress.IPv4Network]) -> Iterator[ipaddress.IPv4Network]:
    for subnet in LINK_POOL.subnets(new_prefix=24):
        if not any(subnet.overlaps(t) for t in taken):
            yield subnet


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


def build_plan(topo: Topology, seed: int = 0) -> LabPlan:
    """Resolve names, addresses and routes; raise TopologyError if the topology cannot be laid out."""
    check_topology(topo)
    explicit = [link.addresses[0].network for link in topo.links if link.addresses]
    for i, link in enumerate(topo.links):
        if link.addresses is None:
            continue
        net = link.addresses[0].network
        for pool in (STACK_POOL, TUN_POOL):
            if net.overlaps(pool):
                raise TopologyError(
                    f"links[{i}].addresses: {net} overlaps {pool}, reserved for stack addresses"
                )
        for j, earlier in enumerate(topo.links[:i]):
            if earlier.addresses and earlier.addresses[0].network.overlaps(net):
                raise TopologyError(f"links[{i}].addresses: {net} overlaps links[{j}].addresses")
    auto = _auto_subnets(explicit)

    ifnames = _interface_names(topo)
    faces: dict[str, list[IfacePlan]] = {n: [] for n in topo.nodes}
    links: list[LinkPlan] = []
    for i, link in enumerate(topo.links):
        if link.addresses:
            addr_a, addr_b = link.addresses
        else:
            try:
                subnet = next(auto)
            except StopIteration:
                raise TopologyError(f"links[{i}]: no free subnet left in {LINK_POOL}") from None
            addr_a = ipaddress.IPv4Interface(f"{subnet[1]}/{subnet.prefixlen}")
            addr_b = ipaddress.IPv4Interface(f"{subnet[2]}/{subnet.prefixlen}")
        mtu = link.mtu or topo.defaults.mtu
        imp = link.impairments or topo.defaults.impairments
        a_node, b_node = link.node(0), link.node(1)
        end_a = IfacePlan(
            a_node, ifnames[i][0], addr_a, mtu, i, b_node, addr_b.ip, imp.direction(True) if imp else None
        )
        end_b = IfacePlan(
            b_node, ifnames[i][1], addr_b, mtu, i, a_node, addr_a.ip, imp.direction(False) if imp else None
        )
        faces[a_node].append(end_a)
        faces[b_node].append(end_b)
        links.append(LinkPlan(i, end_a, end_b, mtu))

    # Stack addresses and tun0.
    tuns: dict[str, TunPlan] = {}
    stack_hosts = list(STACK_POOL.hosts())
    used_stack = {n.address for n in topo.nodes.values() if n.address is not None}
    for name, node in topo.nodes.items():
        if node.kind != "stack":
            continue
        k = len(tuns)
        if k >= 254:
            raise TopologyError(f"nodes.{name}: at most 254 stack nodes per lab")
        address = node.address
        if address is None:
            address = next(h for h in stack_hosts if h not in used_stack)
            used_stack.add(address)
        settings = node.stack.merged_over(topo.defaults.stack) if node.stack else topo.defaults.stack
        link_mtu = min((f.mtu for f in faces[name]), default=topo.defaults.mtu)
        mtu = link_mtu
        if settings is not None and settings.mtu is not None:
            mtu = settings.mtu
        elif settings is not None and settings.mss is not None:
            mtu = settings.mss + 40
        tuns[name] = TunPlan(local=TUN_POOL[k + 1], peer=address, mtu=mtu)

    all_addresses = [f.address.ip for fs in faces.values() for f in fs] + [t.peer for t in tuns.values()]
    if len(set(all_addresses)) != len(all_addresses):
        raise TopologyError("two interfaces or stack addresses share one address")

    nodes: dict[str, NodePlan] = {}
    for name, node in topo.nodes.items():
        own = {f.link for f in faces[name]}
        first = _first_hops(topo, name)
        routes: list[RoutePlan] = []

        def via(target: str, name: str = name, first: dict[str, _Hop] = first) -> tuple[str, str]:
            mine = next(f for f in faces[name] if f.link == first[target].link)
            return str(mine.peer_address), mine.ifname

        for lp in links:
            if lp.index in own:
                continue
            reachable = [n for n in (lp.a.node, lp.b.node) if n in first]
            if not reachable:
                continue
            target = min(reachable, key=lambda n: first[n].distance)
            gw, dev = via(target)
            routes.append(RoutePlan(lp.subnet, ipaddress.IPv4Address(gw), dev))
        for other, tun in tuns.items():
            if other == name or other not in first:
                continue
            gw, dev = via(other)
            routes.append(RoutePlan(ipaddress.IPv4Network(f"{tun.peer}/32"), ipaddress.IPv4Address(gw), dev))

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
            routes=tuple(routes),
            tun=tuns.get(name),
            tcp_config=MappingProxyType(tcp_config),
            apps=node.apps,
            offload=offload,
        )
    return LabPlan(name=topo.name, nodes=MappingProxyType(nodes), links=tuple(links), seed=seed)
