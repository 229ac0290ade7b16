"""Which nodes a check runs between: the client and the server, and the links between them.

The client is the first stack node (in file order) that is not the server; the server is the
first node running `http-server`, else the first stack node running any server app, else the
last other stack node, else a kernel node.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from lab.model.plan import LabPlan, NodePlan


class CheckError(RuntimeError):
    """The check cannot run on this topology (no client/server pair); the message says why."""


@dataclasses.dataclass(frozen=True)
class Roles:
    client: str
    server: str
    server_kind: str  # "stack" or "kernel"
    path_links: tuple[int, ...]  # link indexes from client to server


def _path(plan: LabPlan, src: str, dst: str) -> tuple[int, ...]:
    """Link indexes along a shortest path from src to dst (breadth first over the links)."""
    adjacent: dict[str, list[tuple[str, int]]] = {n: [] for n in plan.nodes}
    for link in plan.links:
        adjacent[link.a.node].append((link.b.node, link.index))
        adjacent[link.b.node].append((link.a.node, link.index))
    back: dict[str, tuple[str, int] | None] = {src: None}
    queue = deque([src])
    while queue:
        here = queue.popleft()
        for there, index in adjacent[here]:
            if there not in back:
                back[there] = (here, index)
                queue.append(there)
    if dst not in back:
        raise CheckError(f"no path from {src} to {dst} in lab {plan.name}")
    links: list[int] = []
    node = dst
    while (step := back[node]) is not None:
        node, index = step
        links.append(index)
    return tuple(reversed(links))


def pick_roles(plan: LabPlan) -> Roles:
    """The client/server pair the scenarios run between (see the module's docstring)."""
    stack = [n for n in plan.nodes.values() if n.kind == "stack"]
    if not stack:
        raise CheckError(f"lab {plan.name} has no stack node: nothing to check")

    def runs(node: NodePlan, apps: set[str] | None) -> bool:
        return any(apps is None or app.name in apps for app in node.apps)

    server: NodePlan | None = next((n for n in stack if runs(n, {"http-server"})), None)
    if server is None:
        server = next((n for n in stack if runs(n, None)), None)
    if server is None and len(stack) > 1:
        server = stack[-1]
    if server is None:
        server = next((n for n in plan.nodes.values() if n.kind == "kernel"), None)
    if server is None:
        raise CheckError(f"lab {plan.name} has one stack node and no other host to talk to")
    client = next((n for n in stack if n.name != server.name), None)
    if client is None:
        raise CheckError(f"lab {plan.name}: the only stack node {server.name} is the server")
    return Roles(client.name, server.name, server.kind, _path(plan, client.name, server.name))
