"""A node's routes, per family (`routes` IPv4, `routes6` IPv6): one route per link subnet it is not
attached to and one host route (/32, /128) per other stack address, with the next hop on a
shortest path (BFS over the node graph, links in file order). Routers and stack-node namespaces
forward, so multi-hop paths work through either.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from lab.model.addressing import IPNetwork
from lab.model.plan import IfacePlan, LinkPlan, RoutePlan
from lab.model.topology import Topology


@dataclass(frozen=True)
class Hop:
    neighbour: str  # the first hop from the source
    link: int  # the link to it
    distance: int  # hops from the source to the target


def first_hops(topo: Topology, source: str) -> dict[str, Hop]:
    """BFS from `source`: for every reachable node, the first hop of a shortest path to it."""
    adjacent: dict[str, list[tuple[str, int]]] = {n: [] for n in topo.nodes}
    for i, link in enumerate(topo.links):
        a, b = link.node(0), link.node(1)
        adjacent[a].append((b, i))
        adjacent[b].append((a, i))
    hops: dict[str, Hop] = {}
    queue: deque[tuple[str, int]] = deque([(source, 0)])
    seen = {source}
    while queue:
        here, distance = queue.popleft()
        for neighbour, via_link in adjacent[here]:
            if neighbour in seen:
                continue
            seen.add(neighbour)
            first = Hop(neighbour, via_link, 1) if here == source else hops[here]
            hops[neighbour] = Hop(first.neighbour, first.link, distance + 1)
            queue.append((neighbour, distance + 1))
    return hops


def routes_for(
    name: str, faces: list[IfacePlan], links: list[LinkPlan], stack: dict[str, IPNetwork],
    first: dict[str, Hop], family: int,
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
