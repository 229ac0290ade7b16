"""The inert model of a lab: nothing here touches the kernel, starts a process or reads a clock.

- `topology`:   a topology file (YAML) -> a validated, immutable `Topology` (pydantic); errors
                name the file, the field and the fix.
- `units`:      the spelled-out units of topology files and `tcplab impair` (`20ms`, `1%`, `10mbit`).
- `impairment`: `Impairment`, one direction's netem-like profile, and how it is described.
- `plan`:       `LabPlan` and its parts: every namespace, interface, address, route, TUN and daemon
                configuration, decided before anything is created.
- `build`:      `build_plan(topology)` -> `LabPlan`, from these two:
  - `addressing`: the address pools (IPv4 and their IPv6 ULA twins), link subnets, stack
                  addresses, interface names;
  - `routes`:     shortest-path routes per node and family.
- `names`:      how namespaces are named, and which lab a namespace belongs to.
"""
