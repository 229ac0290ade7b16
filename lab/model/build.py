"""`build_plan(topology)` -> `LabPlan`: the topology resolved into every name, address, MTU, route,
tun0 and daemon setting, before any kernel object exists. Realisation (lab.kernel.netns) only
carries a plan out; it decides nothing.

The numbers come from `lab.model.addressing`, the routes from `lab.model.routes`; what a plan holds
is `lab.model.plan`.
"""

from __future__ import annotations

import ipaddress
from types import MappingProxyType

from lab.model.addressing import (
    LINK_POOL,
    LINK_POOL6,
    LINK_PREFIX6,
    STACK_POOL,
    STACK_POOL6,
    TUN_POOL,
    TUN_POOL6,
    IPAddress,
    IPNetwork,
    interface_names,
    link_subnets,
    stack_addresses,
)
from lab.model.container import ContainerPlan
from lab.model.names import netns_name
from lab.model.plan import IfacePlan, LabPlan, LinkPlan, NodePlan, TunPlan
from lab.model.routes import first_hops, routes_for
from lab.model.topology import Node, StackSettings, Topology, TopologyError, check_topology


def _container_plan(node: Node) -> ContainerPlan | None:
    if node.kind != "container" or node.image is None:
        return None
    return ContainerPlan(node.image, node.command, MappingProxyType(dict(node.env)), node.ports, node.binds)


def build_plan(topo: Topology, seed: int = 0) -> LabPlan:
    """Resolve names, addresses and routes; raise TopologyError if the topology cannot be laid out."""
    check_topology(topo)
    subnets = link_subnets(topo, "addresses", LINK_POOL, 24, (STACK_POOL, TUN_POOL))
    subnets6 = link_subnets(topo, "addresses6", LINK_POOL6, LINK_PREFIX6, (STACK_POOL6, TUN_POOL6))

    ifnames = interface_names(topo)
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
    stack4 = stack_addresses(topo, "address", STACK_POOL)
    stack6 = stack_addresses(topo, "address6", STACK_POOL6)
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
        first = first_hops(topo, name)
        tcp_config: dict[str, object] = {}
        offload, tso = False, True
        if name in tuns:
            settings = node.stack.merged_over(topo.defaults.stack) if node.stack else topo.defaults.stack
            tcp_config = (settings or StackSettings()).tcp_config_changes(tuns[name].mtu)
            offload = bool(settings and settings.offload)
            tso = not (settings and settings.offload == "checksum")
        nodes[name] = NodePlan(
            name=name,
            kind=node.kind,
            netns=netns_name(topo.name, name),
            interfaces=tuple(faces[name]),
            routes=routes_for(name, faces[name], links, host4, first, 4),
            routes6=routes_for(name, faces[name], links, host6, first, 6),
            tun=tuns.get(name),
            tcp_config=MappingProxyType(tcp_config),
            apps=node.apps,
            container=_container_plan(node),
            offload=offload,
            tso=tso,
        )
    return LabPlan(name=topo.name, nodes=MappingProxyType(nodes), links=tuple(links), seed=seed)
