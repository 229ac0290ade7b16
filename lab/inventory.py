"""What of a lab is up, and what of it is left: `lab_status` (the state file's plan checked against
the kernel: namespaces present, daemons alive, containers) and `leftovers` (anything of the lab in
the kernel, the process table or the run directory: empty after a clean `down`). By name, so they
work on a lab this process did not bring up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lab.kernel import container, ownership
from lab.kernel.state import LabState, run_dir
from lab.model.plan import LabPlan


def alive(pid: int) -> bool:
    """True while `pid` runs. A zombie counts as gone: it holds no namespace, and reaping it is its
    parent's job (reaping here would steal the exit status from a caller's Popen)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def lab_status(name: str, state: LabState | None, plan: LabPlan | None = None) -> dict[str, Any]:
    """What is up: from the state file where there is one, checked against the kernel."""
    summary: dict[str, Any] = state.plan if state else (plan.summary() if plan else {})
    namespaces = set(ownership.lab_namespaces(name).get(name, []))
    nodes: dict[str, Any] = {}
    for node_name, info in summary.get("nodes", {}).items():
        pid = state.daemons.get(node_name) if state else None
        nodes[node_name] = {
            "kind": info.get("kind"),
            "netns": info.get("netns"),
            "netns_present": info.get("netns") in namespaces,
            "address": info.get("address"),
            "address6": info.get("address6"),
            "interfaces": info.get("interfaces", {}),
            "interfaces6": info.get("interfaces6", {}),
            "daemon_pid": pid,
            "daemon_alive": bool(pid and alive(pid)),
        }
        if info.get("kind") == "container":
            nodes[node_name].update(container.describe(name, node_name))
    return {
        "lab": name,
        "run_dir": str(run_dir(name)),
        "topology": state.topology if state else None,
        "state_file": state is not None,
        "nodes": nodes,
        "links": summary.get("links", []),
        "impairments": dict(state.impairments) if state else {},
        "orphan_namespaces": sorted(namespaces - {n.get("netns") for n in summary.get("nodes", {}).values()}),
    }


def leftovers(name: str, runs: Path | None = None) -> dict[str, object]:
    """Anything of lab `name` still in the kernel, the process table or the run directory:
    empty after a clean `down`. `runs` is the parent of run directories when not the default."""
    from pyroute2 import IPRoute

    prefix = f"tcplab-{name}-".encode()
    procs: list[str] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                argv = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if prefix in argv and alive(int(entry.name)):
                procs.append(f"{entry.name}: {argv.replace(bytes(1), b' ').decode(errors='replace')}")
    with IPRoute() as ipr:
        marked = [m.get("ifname") for m in ipr.get_links() if m.get("ifalias") == ownership.mark(name)]
    found = {
        "namespaces": ownership.lab_namespaces(name).get(name, []),
        "processes": procs,
        "root_links": marked,
        "run_dir": ((runs / name) if runs is not None else run_dir(name)).exists(),
        "containers": [c.name for c in container.lab_containers(name)],
    }
    return {k: v for k, v in found.items() if v}
