"""The inert model of a lab: nothing here touches the kernel, starts a process or reads a clock.

- `topology`:   a topology file (YAML) -> a validated, immutable `Topology` (pydantic); errors
                name the file, the field and the fix.
- `units`:      the spelled-out units of topology files and `tcplab impair` (`20ms`, `1%`, `10mbit`).
- `impairment`: `Impairment`, one direction's netem-like profile, and how it is described.
- `plan`:       `build_plan(topology)` -> `LabPlan`: every namespace, interface, address, route, TUN
                and daemon configuration, decided before anything is created.
- `names`:      how namespaces are named, and which lab a namespace belongs to.
"""
