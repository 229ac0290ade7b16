"""Choosing and driving the impairment backend of a link direction: netem, or the user-space emulator.

`apply` uses netem where the kernel has sch_netem and the NFQUEUE emulator otherwise, and returns
which one is in effect ("netem" or "userspace") for `tcplab status`. TCPLAB_IMPAIR_BACKEND=netem
or =userspace forces one (the tests force userspace). If the chosen backend cannot be set up,
`apply` raises ImpairError: a link never runs unimpaired without saying so.

Callers skip links whose profile `is_noop`. Each emulated link has a control directory,
RUN_DIR/impair/NETNS.IFNAME, holding the emulator's pid, log, profile and stats. The emulator of
NETNS/IFNAME's egress runs at the other end of the veth (`hook_point`): packets held there no
longer belong to the sending socket (see emulator.py).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.kernel.impair.emulator import Hook, rule_args
from lab.kernel.impair.netem import apply_netem, remove_netem
from lab.model.impairment import Impairment

ENV_BACKEND = "TCPLAB_IMPAIR_BACKEND"
BACKENDS = ("netem", "userspace")
START_TIMEOUT = 10.0
UPDATE_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
POLL = 0.02

# Emulators this process started, so it can reap them (no zombies while the CLI or a test runs).
_children: dict[Path, subprocess.Popen[bytes]] = {}


class ImpairError(RuntimeError):
    """An impairment could not be applied, changed or removed."""


def control_dir(run_dir: Path, netns: str, ifname: str) -> Path:
    return run_dir / "impair" / f"{netns}.{ifname}"


# -- choosing ------------------------------------------------------------------------------------
@functools.cache
def netem_available() -> bool:
    """Whether this kernel has sch_netem: try one on a dummy interface in a throwaway namespace.
    Probed once per process; the namespace is removed whatever happens."""
    from pyroute2 import IPRoute, netns

    name = f"tcplab-probe-{os.getpid()}"
    try:
        netns.create(name)
    except Exception:
        return False
    try:
        with IPRoute(netns=name) as ipr:
            ipr.link("add", ifname="probe0", kind="dummy")
            index = ipr.link_lookup(ifname="probe0")[0]
            ipr.tc("add", "netem", index, "1:", delay=1000)
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            netns.remove(name)


def choose_backend() -> str:
    forced = os.environ.get(ENV_BACKEND, "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise ImpairError(f"{ENV_BACKEND}={forced!r}: valid values are {', '.join(BACKENDS)}")
        return forced
    return "netem" if netem_available() else "userspace"


# -- the emulator process ------------------------------------------------------------------------
def _ifindex(netns: str, ifname: str) -> int:
    from pyroute2 import IPRoute

    with IPRoute(netns=netns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise ImpairError(f"no interface {ifname!r} in namespace {netns!r}")
    return int(found[0])


def hook_point(netns: str, ifname: str) -> Hook:
    """Where to impair IF's egress: PREROUTING of its veth peer when the peer is in a named
    namespace (the packets are no longer the sender's there), else IF's own POSTROUTING."""
    from pyroute2 import IPRoute
    from pyroute2 import netns as named

    with contextlib.suppress(Exception), IPRoute(netns=netns) as ipr:
        [link] = ipr.get_links(ifname=ifname)
        info = link.get_attr("IFLA_LINKINFO")
        peer_index, peer_nsid = link.get_attr("IFLA_LINK"), link.get_attr("IFLA_LINK_NETNSID")
        is_veth = info is not None and info.get_attr("IFLA_INFO_KIND") == "veth"
        if not is_veth or peer_index is None or peer_nsid is None:
            return Hook("POSTROUTING", netns, ifname)
        for name in named.listnetns():
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                if ipr.get_netnsid(fd=fd).get("nsid") != peer_nsid:
                    continue
            finally:
                os.close(fd)
            with IPRoute(netns=name) as peer_ipr:
                peer = peer_ipr.get_links(peer_index)[0]
                return Hook("PREROUTING", name, str(peer.get_attr("IFLA_IFNAME")))
    return Hook("POSTROUTING", netns, ifname)


def queue_number(hook: Hook, ifindex: int) -> int:
    """NFQUEUE numbers are per namespace, like ifindexes: the hooked interface's ifindex is a free,
    stable choice, in one half of the range per chain (an interface's own egress and the traffic
    it receives are two emulators)."""
    return ifindex % 32768 + (32768 if hook.chain == "PREROUTING" else 0)


def read_stats(run_dir: Path, netns: str, ifname: str) -> dict[str, Any] | None:
    """The emulator's last counters and profile (see emulator.py), or None when it has none."""
    with contextlib.suppress(OSError, ValueError):
        data: dict[str, Any] = json.loads((control_dir(run_dir, netns, ifname) / "stats.json").read_text())
        return data
    return None


def _pid(ctl: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((ctl / "pid").read_text())
    return None


def _alive(pid: int, ctl: Path) -> bool:
    """True while `pid` is the emulator of `ctl` and not a zombie (pids get reused)."""
    child = _children.get(ctl)
    if child is not None and child.pid == pid:
        return child.poll() is None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and b"lab.kernel.impair.emulator" in cmdline and str(ctl).encode() in cmdline


def _start_emulator(netns: str, ifname: str, imp: Impairment, seed: int, run_dir: Path) -> None:
    ctl = control_dir(run_dir, netns, ifname)
    ctl.mkdir(parents=True, exist_ok=True)
    for stale in ("pid", "stats.json"):
        (ctl / stale).unlink(missing_ok=True)
    _write_profile(ctl, imp, 0)
    hook = hook_point(netns, ifname)
    queue = queue_number(hook, _ifindex(hook.netns, hook.ifname))
    log = (ctl / "emulator.log").open("ab")
    cmd = [
        sys.executable, "-m", "lab.kernel.impair.emulator", "--netns", netns, "--ifname", ifname,
        "--queue", str(queue), "--seed", str(seed), "--profile", imp.model_dump_json(),
        "--control", str(ctl),
        "--hook-chain", hook.chain, "--hook-netns", hook.netns, "--hook-ifname", hook.ifname,
    ]
    # Its own session: a Ctrl-C meant for the CLI must not take the link down behind its back.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": _source_root()})
    log.close()
    _children[ctl] = proc
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        stats = read_stats(run_dir, netns, ifname)
        if stats is not None and stats.get("running"):
            return
        if proc.poll() is not None:
            raise ImpairError(f"the link emulator for {netns}/{ifname} failed to start: {_log_tail(ctl)}")
        time.sleep(POLL)
    _stop(ctl)
    raise ImpairError(f"the link emulator for {netns}/{ifname} did not start in {START_TIMEOUT:g}s")


def _source_root() -> str:
    """Make `python -m lab.kernel.impair.emulator` import this very tree, installed or not."""
    root = str(Path(__file__).resolve().parents[3])
    extra = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{extra}" if extra else root


def _log_tail(ctl: Path) -> str:
    with contextlib.suppress(OSError):
        lines = (ctl / "emulator.log").read_text().strip().splitlines()
        return " | ".join(lines[-3:]) or "(no output)"
    return "(no log)"


def _write_profile(ctl: Path, imp: Impairment, generation: int) -> None:
    tmp = ctl / "profile.tmp"
    tmp.write_text(json.dumps({"generation": generation, "profile": imp.model_dump()}))
    os.replace(tmp, ctl / "profile.json")


def _stop(ctl: Path) -> None:
    pid = _pid(ctl)
    if pid is None or not _alive(pid, ctl):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid, ctl) and time.monotonic() < deadline:
        time.sleep(POLL)
    if _alive(pid, ctl):
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(pid, ctl) and time.monotonic() < deadline:
            time.sleep(POLL)
    child = _children.pop(ctl, None)
    if child is not None:
        child.wait(timeout=STOP_TIMEOUT)


def _delete_rules(hook: Hook, queue: int) -> None:
    """Delete the emulator's rules if a kill -9 left them behind (duplicates included)."""
    for tool in ("iptables", "ip6tables"):
        for _ in range(16):
            done = subprocess.run(
                ["nsenter", f"--net=/run/netns/{hook.netns}", tool, "-w", "-t", "mangle", "-D",
                 *rule_args(hook.chain, hook.ifname, queue)],
                capture_output=True, check=False, timeout=STOP_TIMEOUT,
            )
            if done.returncode != 0:
                break


def emulator_pids(netns_prefix: str) -> list[int]:
    """Emulators running for namespaces whose names start with `netns_prefix`, found in /proc:
    teardown without a state file uses this."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
            if "lab.kernel.impair.emulator" in argv and argv[argv.index("--netns") + 1].startswith(
                netns_prefix
            ):
                pids.append(int(entry.name))
    return pids


def stop_emulators(netns_prefix: str) -> None:
    """SIGTERM every emulator of the given namespaces, then SIGKILL those still there after a while."""
    pids = emulator_pids(netns_prefix)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if pid in emulator_pids(netns_prefix)]
        time.sleep(POLL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for ctl, child in list(_children.items()):
        if child.poll() is not None:
            _children.pop(ctl)


# -- the API -------------------------------------------------------------------------------------
def apply(netns: str, ifname: str, imp: Impairment, seed: int, run_dir: Path) -> str:
    """Impair IF's egress in NS with `imp`; returns the backend in effect: "netem" or "userspace"."""
    backend = choose_backend()
    if backend == "netem":
        try:
            apply_netem(netns, ifname, imp)
        except Exception as exc:
            raise ImpairError(f"netem could not impair {netns}/{ifname}: {exc}") from exc
        return "netem"
    _stop(control_dir(run_dir, netns, ifname))
    _start_emulator(netns, ifname, imp, seed, run_dir)
    return "userspace"


def running_backend(netns: str, ifname: str, run_dir: Path) -> str | None:
    """The backend impairing IF now: "userspace" while its emulator runs, "netem" when a netem
    qdisc is IF's root, None otherwise."""
    ctl = control_dir(run_dir, netns, ifname)
    pid = _pid(ctl)
    if pid is not None and _alive(pid, ctl):
        return "userspace"
    with contextlib.suppress(Exception):
        from pyroute2 import IPRoute

        with IPRoute(netns=netns) as ipr:
            index = ipr.link_lookup(ifname=ifname)[0]
            for qdisc in ipr.get_qdiscs(index=index):
                if qdisc.get_attr("TCA_KIND") == "netem":
                    return "netem"
    return None


def update(netns: str, ifname: str, imp: Impairment, seed: int, run_dir: Path) -> str:
    """Change a running link's profile in place (`tcplab impair`); starts one if none runs.
    Returns the backend in effect. For the emulator, returns once it has the new profile."""
    ctl = control_dir(run_dir, netns, ifname)
    pid = _pid(ctl)
    if pid is None or not _alive(pid, ctl):
        return apply(netns, ifname, imp, seed, run_dir)
    stats = read_stats(run_dir, netns, ifname) or {}
    generation = int(stats.get("generation", 0)) + 1
    _write_profile(ctl, imp, generation)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + UPDATE_TIMEOUT
    while time.monotonic() < deadline:
        stats = read_stats(run_dir, netns, ifname) or {}
        if stats.get("generation") == generation:
            return "userspace"
        if not _alive(pid, ctl):
            break
        time.sleep(POLL)
    raise ImpairError(
        f"the link emulator for {netns}/{ifname} did not take the new profile: {_log_tail(ctl)}"
    )


def remove(netns: str, ifname: str, run_dir: Path) -> None:
    """Stop impairing IF: stop its emulator and delete any rule left, or delete its netem qdisc.
    Idempotent; a namespace or interface already gone is not an error."""
    _stop(control_dir(run_dir, netns, ifname))
    if not Path(f"/run/netns/{netns}").exists():
        return
    hook = hook_point(netns, ifname)
    try:
        index = _ifindex(hook.netns, hook.ifname)
    except Exception:
        return
    _delete_rules(hook, queue_number(hook, index))
    with contextlib.suppress(Exception):
        remove_netem(netns, ifname)
