"""How a lab is numbered (deterministic, so a plan is a pure function of its topology).

Every lab is dual-stack: each IPv4 address below has an IPv6 twin from the ULA range fd00::/8
(RFC 4193), numbered the same way, so a topology file needs no edit to get IPv6:
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

Here: the pools, each link's subnets, each stack node's stack addresses and each link end's
interface name. `lab.model.build` puts them together into a plan.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from lab.model.topology import Topology, TopologyError

LINK_POOL = ipaddress.IPv4Network("10.1.0.0/16")
STACK_POOL = ipaddress.IPv4Network("10.2.0.0/24")
TUN_POOL = ipaddress.IPv4Network("10.254.0.0/24")
LINK_POOL6 = ipaddress.IPv6Network("fd00::/48")
STACK_POOL6 = ipaddress.IPv6Network("fd00:0:2::/64")
TUN_POOL6 = ipaddress.IPv6Network("fd00:0:254::/64")
LINK_PREFIX6 = 64
TUN_IFNAME = "tun0"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def link_subnets(
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


def stack_addresses(
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


def interface_names(topo: Topology) -> list[tuple[str, str]]:
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
