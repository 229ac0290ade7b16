"""The lab from Python: `with Lab.up("topologies/two-node.yaml") as lab: ...`.

`Lab.up` validates and plans first (nothing is created for an invalid file), refuses to touch a lab
that is already up, then realises the plan step by step; any failure (or Ctrl-C) tears down
whatever exists by calling `Lab.down`, which finds everything by discovery, so rollback and
teardown are one tested path. `Lab.down(name)` is idempotent and needs no state file.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, cast

from lab.inventory import alive, lab_status
from lab.kernel import container, ownership, requirements
from lab.kernel import netns as kernel
from lab.kernel.state import LabState, labs_with_state, read_state, run_dir, write_state
from lab.model.build import build_plan
from lab.model.impairment import Impairment
from lab.model.names import netns_name
from lab.model.plan import LabPlan
from lab.model.topology import Topology, load_topology

log = logging.getLogger("tcplab")

REPO_ROOT = Path(__file__).resolve().parent.parent
DAEMON_MODULE = "lab.node.daemon"
DAEMON_START_TIMEOUT = 15.0
STOP_GRACE = 3.0


class LabError(RuntimeError):
    """The lab could not be brought up, found or used; the message says why and what to do."""


class _ApplyImpairment(Protocol):
    def __call__(self, netns: str, ifname: str, impairment: Impairment, seed: int, run_dir: Path) -> str: ...


def _impair_apply() -> _ApplyImpairment | None:
    """The impairment backend's `apply`, wherever it lives (the module lands separately)."""
    for module in ("lab.kernel.impair.backend", "lab.kernel.impair"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        apply = getattr(mod, "apply", None)
        if callable(apply):
            return cast(_ApplyImpairment, apply)
    return None


def resolve_topology_path(path: str | Path) -> Path:
    """A topology path as given, else relative to the repository (so `two-node.yaml` works anywhere)."""
    given = Path(path)
    if given.exists():
        return given
    for candidate in (REPO_ROOT / given, REPO_ROOT / "topologies" / given):
        if candidate.exists():
            return candidate
    return given  # load_topology reports it missing, naming the path the user gave


def _wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def terminate(pids: Sequence[int], grace: float = STOP_GRACE) -> list[int]:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL what is left; returns the pids signalled."""
    signalled: list[int] = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
        except ProcessLookupError:
            continue
    if not _wait_until(lambda: not any(alive(p) for p in signalled), grace):
        for pid in signalled:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        _wait_until(lambda: not any(alive(p) for p in signalled), 2.0)
    return signalled


class Lab:
    """A running lab: its plan, run directory and state. Create with `Lab.up` or `Lab.attach`."""

    def __init__(self, plan: LabPlan, state: LabState) -> None:
        self.plan = plan
        self.state = state
        self._base = Path.cwd()  # where a container's relative bind sources are (the topology's folder)

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def run_dir(self) -> Path:
        return run_dir(self.name)

    # -- bringing up -------------------------------------------------------------------------

    @classmethod
    def up(
        cls,
        topology: str | Path | Topology,
        name: str | None = None,
        *,
        seed: int = 0,
        start_daemons: bool = True,
    ) -> Lab:
        """Validate, plan and realise a topology; on any failure remove everything it created."""
        source: str | None = None
        if isinstance(topology, Topology):
            topo = topology
        else:
            path = resolve_topology_path(topology)
            source = str(path.resolve()) if path.exists() else str(path)
            topo = load_topology(path)
        if name is not None:
            topo = topo.renamed(name)
        plan = build_plan(topo, seed=seed)

        problem = kernel.privilege_problem()
        if problem:
            raise LabError(problem)
        if ownership.lab_namespaces(plan.name) or read_state(plan.name) is not None:
            raise LabError(f"lab {plan.name} is already up (or left over): run `tcplab down {plan.name}`")
        problem = requirements.up_problem(plan)  # before anything exists: nothing to roll back
        if problem:
            raise LabError(problem)

        state = LabState(lab=plan.name, topology=source, seed=seed, plan=plan.summary())
        state.namespaces = [n.netns for n in plan.nodes.values()]
        lab = cls(plan, state)
        lab._base = Path(source).parent if source else Path.cwd()
        try:
            lab.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_state(state)  # first, so a killed `up` still leaves a record
            (lab.run_dir / kernel.HOSTS_FILE).write_text(kernel.hosts_file(plan))
            lab._realise()
            lab._apply_impairments()
            if start_daemons:
                lab._start_daemons()
            lab._wait_containers()
            write_state(state)
        except BaseException as exc:  # Ctrl-C included: never leave half a lab behind
            log.debug("up %s failed (%s): rolling back", plan.name, exc)
            try:
                Lab.down(plan.name)
            except Exception as cleanup:
                log.error("rollback of %s incomplete: %s", plan.name, cleanup)
            raise
        log.info("lab %s is up (%d nodes, %d links)", plan.name, len(plan.nodes), len(plan.links))
        return lab

    def _realise(self) -> None:
        plan = self.plan
        for node in plan.nodes.values():
            if node.container is not None:
                pid = container.start(plan.name, node.name, node.container, self._base)
                try:
                    kernel.attach_namespace(node.netns, pid)
                except kernel.RealiseError:
                    exited = container.exited_error(plan.name, node.name)  # the usual reason
                    if exited is None:
                        raise
                    raise exited from None
            else:
                kernel.create_namespace(node.netns)
            kernel.set_sysctls(node.netns, kernel.IPV6_SYSCTLS)  # before any link: see there
            kernel.bring_up_lo(node.netns)
        for link in plan.links:
            a, b = plan.node(link.a.node), plan.node(link.b.node)
            kernel.create_veth(link, a.netns, b.netns)
            kernel.configure_iface(a.netns, plan.name, link.a)
            kernel.configure_iface(b.netns, plan.name, link.b)
        for node in plan.nodes.values():
            if node.tun is not None:
                kernel.create_tun(node.netns, plan.name, node.tun)
            kernel.set_sysctls(node.netns, kernel.forwarding_sysctls(kernel.node_ifnames(node)))
            kernel.add_routes(node.netns, node.routes)
            kernel.add_routes(node.netns, node.routes6)
        for node in plan.nodes.values():
            late = kernel.wait_until_ready(node.netns, node.interfaces)
            if late:
                log.warning("%s: %s not ready yet (carrier, IPv6)", node.netns, ", ".join(late))

    def _apply_impairments(self) -> None:
        wanted = [
            (link, end)
            for link in self.plan.links
            for end in (link.a, link.b)
            if end.egress is not None and not end.egress.is_noop
        ]
        if not wanted:
            return
        apply = _impair_apply()
        if apply is None:
            raise LabError(
                "this topology has impairments but no impairment backend is installed (lab.kernel.impair)"
            )
        for link, end in wanted:
            assert end.egress is not None
            node = self.plan.node(end.node)
            seed = self.plan.seed_for(link.index, end is link.a)
            backend = apply(node.netns, end.ifname, end.egress, seed, self.run_dir)
            self.state.impairments[f"{end.node}->{end.peer_node} ({link.name})"] = backend
            write_state(self.state)

    def _start_daemons(self) -> None:
        stack_nodes = [n for n in self.plan.nodes.values() if n.tun is not None]
        for node in stack_nodes:
            config = self.run_dir / f"{node.name}.json"
            config.write_text(json.dumps(self.plan.daemon_config(node.name, str(self.run_dir)), indent=2))
        if not stack_nodes:
            return
        if importlib.util.find_spec(DAEMON_MODULE) is None:
            log.warning("%s is not available yet: stack nodes run without their daemon", DAEMON_MODULE)
            return
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        procs: dict[str, subprocess.Popen[bytes]] = {}
        for node in stack_nodes:
            with open(self.run_dir / f"{node.name}.log", "ab") as logfile:
                procs[node.name] = subprocess.Popen(
                    [
                        sys.executable, "-m", DAEMON_MODULE,
                        "--netns", node.netns,
                        "--run-dir", str(self.run_dir),
                        "--node", node.name,
                        "--config", str(self.run_dir / f"{node.name}.json"),
                    ],
                    stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                    start_new_session=True,  # survives the CLI that started it; Ctrl-C does not reach it
                    env=env,
                )  # fmt: skip
            self.state.daemons[node.name] = procs[node.name].pid
            write_state(self.state)

        def ready() -> bool:
            for node_name, proc in procs.items():
                if proc.poll() is not None:
                    log_path = self.run_dir / f"{node_name}.log"
                    raise LabError(f"daemon of {node_name} exited with {proc.returncode}; see {log_path}")
            return all((self.run_dir / f"{n}.sock").exists() for n in procs)

        if not _wait_until(ready, DAEMON_START_TIMEOUT, 0.05):
            missing = [n for n in procs if not (self.run_dir / f"{n}.sock").exists()]
            raise LabError(
                f"daemons of {', '.join(missing)} gave no control socket in {DAEMON_START_TIMEOUT:g}s"
            )

    def _wait_containers(self) -> None:
        """Every container node still runs (and listens on its `ports`) once its links are up."""
        for node in self.plan.nodes.values():
            if node.container is not None:
                container.wait_ready(self.plan.name, node.name, node.container)

    # -- finding a running lab ---------------------------------------------------------------

    @classmethod
    def attach(cls, name: str) -> Lab:
        """The running lab `name`, from its state file."""
        state = read_state(name)
        if state is None:
            raise LabError(f"no lab {name} is up (no state in {run_dir(name)})")
        topo_path = state.topology
        if topo_path is None:
            raise LabError(f"lab {name} was started from a model, not a file: attach needs the file")
        topo = load_topology(topo_path)
        if topo.name != name:
            topo = topo.renamed(name)
        return cls(build_plan(topo, seed=state.seed), state)

    @staticmethod
    def running() -> list[str]:
        """Names of labs that are up, by state file or by discovery."""
        found = set(labs_with_state()) | set(ownership.lab_namespaces())
        return sorted(found | set(container.labs_with_containers()))

    # -- tearing down ------------------------------------------------------------------------

    @classmethod
    def down(cls, name: str) -> dict[str, Any]:
        """Stop the lab's processes, delete its namespaces, stray marked links and run directory.

        Idempotent, and correct without the state file: namespaces are found by prefix, processes
        by the namespace they are in (plus state pids that are still this lab's).
        """
        state = read_state(name)
        state_pids = {name: list(state.daemons.values())} if state else {}
        containers = container.remove_lab_containers(name)  # before their processes are hunted
        found = ownership.discover(name, state_pids).get(name, ownership.Found(name))
        killed = terminate(sorted(found.pids))
        # A process may have entered a namespace while we waited: look once more.
        killed += terminate(sorted(ownership.pids_in(found.namespaces)))
        namespaces = sorted(set(found.namespaces) | set(state.namespaces if state else []))
        ids = {i: ns for ns in namespaces if (i := ownership.netns_id(ns)) is not None}
        for ns in namespaces:
            kernel.remove_namespace(ns)
        # A process that entered a namespace while we tore down keeps it alive, unnamed: find it
        # by the namespace's inode and stop it, until a sweep finds nobody.
        for _ in range(5):
            late = sorted(ownership.pids_in_ids(ids))
            if not late:
                break
            killed += terminate(late)
        strays = kernel.remove_marked_links(name)
        shutil.rmtree(run_dir(name), ignore_errors=True)
        return {
            "lab": name, "namespaces": namespaces, "killed": killed, "stray_links": strays,
            "containers": containers,
        }  # fmt: skip

    @classmethod
    def down_all(cls) -> list[dict[str, Any]]:
        return [cls.down(name) for name in cls.running()]

    def close(self) -> None:
        Lab.down(self.name)

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- using -------------------------------------------------------------------------------

    def address_of(self, node: str) -> str:
        return str(self.plan.address_of(node))

    def address6_of(self, node: str) -> str:
        return str(self.plan.address6_of(node))

    def netns_of(self, node: str) -> str:
        return self.plan.node(node).netns

    def exec(
        self, node: str, argv: Sequence[str], check: bool = True, timeout: float | None = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the node's namespace and wait for it (output captured as text)."""
        self.plan.node(node)  # a clear error for an unknown node
        return exec_in(self.name, node, argv, check=check, timeout=timeout)

    def spawn(self, node: str, argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start a command inside the node's namespace without waiting; `down` stops it."""
        self.plan.node(node)
        return subprocess.Popen(nsenter_argv(self.name, node, argv), **popen)

    def status(self) -> dict[str, Any]:
        state = read_state(self.name) or self.state
        return lab_status(self.name, state, self.plan)


def nsenter_argv(lab: str, node: str, argv: Sequence[str]) -> list[str]:
    """`argv` prefixed to run in the node's network namespace, where node names resolve (see
    `lab.kernel.netns.hosts_file`); mounts stay the caller's but /etc/hosts, /sys the caller's."""
    ns = netns_name(lab, node)
    if not kernel.namespace_exists(ns):
        raise LabError(f"lab {lab} has no node {node} (no namespace {ns}): is the lab up?")
    hosts = run_dir(lab) / kernel.HOSTS_FILE
    if hosts.is_file():
        argv = kernel.with_hosts(hosts, argv)
    return ["nsenter", f"--net={ownership.NETNS_DIR / ns}", "--", *argv]


def exec_in(
    lab: str, node: str, argv: Sequence[str], check: bool = True, timeout: float | None = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run `argv` in a node's namespace by names alone (what the CLI uses; no plan needed)."""
    return subprocess.run(
        nsenter_argv(lab, node, argv), capture_output=True, text=True, check=check, timeout=timeout
    )
