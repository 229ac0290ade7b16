"""What a `kind: container` node asks of Docker, as inert data (realised by lab.kernel.container)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ContainerPlan:
    """What `up` hands to Docker for one node (from the topology's container fields)."""

    image: str
    command: tuple[str, ...] | str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    binds: tuple[str, ...] = ()  # SRC:DST[:ro|rw]; a relative SRC is taken from the topology's folder
