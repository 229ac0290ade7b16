"""How the kernel objects of a lab are named: pure functions of the lab's and nodes' names.

Namespaces are `tcplab-<lab>-<node>`. Node names have no dashes (lab.model.topology.NODE_NAME), so
the lab is everything between the prefix and the last dash: lab "a-b" never claims lab "a"'s
namespaces, or back. The plan uses these names; lab.kernel.ownership finds what carries them.
"""

from __future__ import annotations

from lab.model.topology import NODE_NAME

NETNS_PREFIX = "tcplab-"


def netns_name(lab: str, node: str) -> str:
    return f"{NETNS_PREFIX}{lab}-{node}"


def lab_of_netns(name: str) -> str | None:
    """`tcplab-two-node-client` -> `two-node`; None for namespaces that are not a lab's."""
    if not name.startswith(NETNS_PREFIX):
        return None
    lab, sep, node = name[len(NETNS_PREFIX) :].rpartition("-")
    if not sep or not lab or not NODE_NAME.match(node):
        return None
    return lab
