"""The lab: topology files become namespaces, veth links, impairments and node daemons.

Layers, each importing only the ones above it in this list (tests/unit/test_layers.py):
- `model/`     the inert model: topology files (pydantic), units, impairment profiles, the plan
               (every name, address and route decided before the kernel is touched), names.
- `kernel/`    realisation: namespaces, veth and TUN (pyroute2), ownership by discovery, the
               run directory's state file, captures, impairment backends (`kernel/impair/`).
- `node/`      one node's daemon (the stack over TUN), its control protocol, scripts, `apps/`.
- `lab.py`     the Python API: `Lab.up`, `Lab.attach`, `Lab.down`, status; it joins the above.
- `scenarios/` what runs on a lab: `tcplab check`, the demos (simulated and real), the pytest plugin.
- `viz/`       ladder diagrams and congestion plots drawn from trace files.
- `cli/`       the `tcplab` command: one Typer app, one module per command group.
The packetdrill interpreter is the top-level package `drill` (stack only); `lab.cli` runs it.
"""
