"""Deterministic simulated network: a virtual-time asyncio loop, seeded links, and hosts on them.

`loop`: VirtualTimeLoop (asyncio in virtual time, stall detection). `link`: LinkProfile and the
one-way Link model. `network`: Network of stack hosts and routers joined by links.
"""

from stack.sim.link import Link, LinkProfile, LinkStats
from stack.sim.loop import SimulationStalled, VirtualTimeLoop, new_loop, run
from stack.sim.network import Duplex, Network, RouterNode, SimNode

__all__ = [
    "Duplex",
    "Link",
    "LinkProfile",
    "LinkStats",
    "Network",
    "RouterNode",
    "SimNode",
    "SimulationStalled",
    "VirtualTimeLoop",
    "new_loop",
    "run",
]
