"""What a lab owns, found without its state file.

- Namespaces are named `tcplab-<lab>-<node>` (lab.model.names).
- Interfaces carry the ifalias `tcplab:<lab>` (an altname would have to be unique per namespace).
  Inside a lab namespace they vanish with it; the mark finds any left in the root namespace.
- Processes belong to a lab when /proc/PID/ns/net is one of its namespaces, plus state-file pids
  that are still the lab's daemons (checked by command line, so a reused pid is never killed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lab.model.names import NETNS_PREFIX, lab_of_netns

NETNS_DIR = Path("/run/netns")
MARK_PREFIX = "tcplab:"


def mark(lab: str) -> str:
    """The ownership mark set as ifalias on every interface the lab creates."""
    return f"{MARK_PREFIX}{lab}"


def lab_of_mark(alias: str | None) -> str | None:
    if alias and alias.startswith(MARK_PREFIX):
        return alias[len(MARK_PREFIX) :] or None
    return None


def list_netns() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def lab_namespaces(lab: str | None = None) -> dict[str, list[str]]:
    """Lab name -> its namespaces, for one lab or all of them."""
    out: dict[str, list[str]] = {}
    for name in list_netns():
        owner = lab_of_netns(name)
        if owner is not None and (lab is None or owner == lab):
            out.setdefault(owner, []).append(name)
    return out


def _ns_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def netns_id(name: str) -> tuple[int, int] | None:
    """(device, inode) of a named namespace: equal to /proc/PID/ns/net of its processes."""
    return _ns_id(NETNS_DIR / name)


def pids_in(namespaces: list[str]) -> dict[int, str]:
    """Processes whose network namespace is one of `namespaces`: pid -> namespace name."""
    return pids_in_ids({i: n for n in namespaces if (i := netns_id(n)) is not None})


def pids_in_ids(wanted: dict[tuple[int, int], str]) -> dict[int, str]:
    """Processes in the namespaces with these (device, inode) ids, named or not (a namespace whose
    name was removed lives on, unnamed, while a process is in it)."""
    if not wanted:
        return {}
    out: dict[int, str] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        ns = _ns_id(entry / "ns" / "net")
        if ns in wanted:
            out[int(entry.name)] = wanted[ns]
    return out


def is_lab_daemon(pid: int, lab: str) -> bool:
    """True if `pid` still runs a node daemon (or other lab helper) of `lab`, per its command line."""
    try:
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    prefix = f"{NETNS_PREFIX}{lab}-".encode()
    return any(arg.startswith(prefix) for arg in argv) and any(b"lab." in arg for arg in argv)


@dataclass
class Found:
    """Everything discovered of one lab."""

    lab: str
    namespaces: list[str] = field(default_factory=list)
    pids: dict[int, str] = field(default_factory=dict)  # pid -> namespace (or "state" if from state)


def discover(lab: str | None = None, state_pids: dict[str, list[int]] | None = None) -> dict[str, Found]:
    """Find labs' namespaces and processes; `state_pids` (lab -> pids) adds pids from state files."""
    found = {name: Found(name, nss, pids_in(nss)) for name, nss in lab_namespaces(lab).items()}
    for name, pids in (state_pids or {}).items():
        if lab is not None and name != lab:
            continue
        entry = found.setdefault(name, Found(name))
        for pid in pids:
            if pid not in entry.pids and is_lab_daemon(pid, name):
                entry.pids[pid] = "state"
    return found
