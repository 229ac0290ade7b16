"""What a lab plan holds: `LabPlan` and its nodes, links, interfaces, routes and tun0, immutable and
decided before any kernel object exists (`lab.model.build.build_plan` makes one from a topology).

A plan answers the questions the rest of the lab asks: where apps reach a node (`address_of`,
`address6_of`, `hosts`), a link by name, each link direction's emulator seed, the JSON a stack
node's daemon reads (`daemon_config`) and the summary `tcplab status` shows. How the numbers are
chosen is `lab.model.addressing`; how routes are, `lab.model.routes`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from lab.model.addressing import TUN_IFNAME, IPAddress, IPNetwork
from lab.model.container import ContainerPlan
from lab.model.impairment import Impairment
from lab.model.names import netns_name
from lab.model.topology import App

Kind = Literal["stack", "kernel", "router", "container"]


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
    tso: bool = True  # ... TSO included (False: the checksum offload alone, segment by segment)

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
            "tso": plan.tso,
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
