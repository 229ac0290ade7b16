"""Container nodes: a user's image in the lab, run through the Docker SDK (no `docker` command).

A container node is created with networking `none`, so Docker gives it a network namespace holding
only `lo`. That namespace is then attached under the node's usual name (/run/netns/tcplab-LAB-NODE,
from /proc/PID/ns/net of the container's first process), and from there on the lab treats it like
any kernel node: veth ends, addresses, routes, sysctls and impairments go in with pyroute2, and
`down` unmounts the name. Images are never pulled: `up` refuses an image that is not present
locally, before anything is created.

Ownership: every container carries the label `tcplab.lab=LAB` (and `tcplab.node=NODE`), so
teardown finds it by asking Docker, with or without the state file (after a kill -9 of `up`, say).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lab.model.container import ContainerPlan

LABEL_LAB = "tcplab.lab"
LABEL_NODE = "tcplab.node"
DOCKER_TIMEOUT = 30.0  # seconds for one API call
READY_TIMEOUT = 30.0  # seconds for a container's `ports` to listen
STOP_TIMEOUT = 3  # seconds between SIGTERM and SIGKILL in `down`
LOG_LINES = 5  # shown when a container exits at start
_TCP_LISTEN = "0A"  # st column of /proc/net/tcp


class ContainerError(RuntimeError):
    """A container node cannot be created or used; the message names the node and the fix."""


def container_name(lab: str, node: str) -> str:
    return f"tcplab-{lab}-{node}"


# -- the Docker client ---------------------------------------------------------------------------


def _sdk() -> Any:
    """The `docker` package, untyped (imported by name: the repository's docker/ folder would
    otherwise shadow it for the type checker)."""
    return importlib.import_module("docker")


def sdk_problem() -> str | None:
    try:
        _sdk()
    except ImportError:
        return "container nodes need the Docker SDK: pip install 'tcplab[lab]' (or pip install docker)"
    return None


def _endpoint() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def client(timeout: float = DOCKER_TIMEOUT) -> Any:
    """A Docker client whose daemon answered a ping; ContainerError (one line) otherwise."""
    problem = sdk_problem()
    if problem:
        raise ContainerError(problem)
    docker = _sdk()
    try:
        docker_client = docker.from_env(timeout=timeout)
        docker_client.ping()
    except Exception as exc:
        raise ContainerError(
            f"the Docker daemon does not answer at {_endpoint()} ({type(exc).__name__}): start it "
            "(`dockerd &` or `systemctl start docker`; apt-get install docker.io if it is missing)"
        ) from None
    return docker_client


def _reachable_client() -> Any | None:
    """A client when Docker is installed and answering, else None: teardown and status must work
    on machines without Docker, where a lab cannot have made containers."""
    if sdk_problem() is not None:
        return None
    if "DOCKER_HOST" not in os.environ and not Path("/var/run/docker.sock").exists():
        return None
    try:
        return client(timeout=10)
    except ContainerError:
        return None


def lab_containers(lab: str | None = None) -> list[Any]:
    """Containers carrying the ownership label (of `lab`, or of any lab), running or not."""
    docker_client = _reachable_client()
    if docker_client is None:
        return []
    label = f"{LABEL_LAB}={lab}" if lab else LABEL_LAB
    # ignore_removed: a container removed between the listing and its inspection (a `down` or a
    # rolled-back `up` running meanwhile) is gone, not an error.
    return list(docker_client.containers.list(all=True, filters={"label": label}, ignore_removed=True))


def labs_with_containers() -> list[str]:
    return sorted({c.labels.get(LABEL_LAB, "") for c in lab_containers()} - {""})


# -- up ------------------------------------------------------------------------------------------


def preflight(nodes: Mapping[str, ContainerPlan]) -> None:
    """Before anything exists: the SDK, the daemon and every image (never pulled) are there."""
    if not nodes:
        return
    docker_client = client()  # first: it names a missing SDK or a silent daemon
    docker = _sdk()
    for node, spec in nodes.items():
        try:
            docker_client.images.get(spec.image)
        except docker.errors.ImageNotFound:
            raise ContainerError(
                f"nodes.{node}.image: {spec.image} is not present locally and tcplab never pulls: "
                f"`docker pull {spec.image}` or build it"
            ) from None


def _volumes(binds: Sequence[str], base: Path) -> list[str]:
    out = []
    for bind in binds:
        src, _, rest = bind.partition(":")
        out.append(f"{(base / src).resolve()}:{rest}")
    return out


def _last_logs(container: Any) -> str:
    with contextlib.suppress(Exception):
        text = container.logs(tail=LOG_LINES).decode(errors="replace").strip()
        return " | ".join(line.strip() for line in text.splitlines() if line.strip()) or "(no output)"
    return "(no logs)"


def _exited(node: str, container: Any) -> ContainerError:
    state = container.attrs.get("State", {})
    return ContainerError(
        f"container node {node} ({container.image.tags[0] if container.image.tags else container.short_id})"
        f" exited with {state.get('ExitCode')} at start; its last log lines: {_last_logs(container)}"
    )


def start(lab: str, node: str, spec: ContainerPlan, base: Path) -> int:
    """Create and start the node's container; returns the pid whose namespace is the node's."""
    docker_client = client()
    docker = _sdk()
    try:
        container = docker_client.containers.run(
            spec.image,
            command=list(spec.command) if isinstance(spec.command, tuple) else spec.command,
            name=container_name(lab, node),
            hostname=node,
            labels={LABEL_LAB: lab, LABEL_NODE: node},
            environment=dict(spec.env),
            volumes=_volumes(spec.binds, base),
            network_mode="none",  # the lab wires its links into the namespace itself
            detach=True,
        )
    except docker.errors.APIError as exc:
        raise ContainerError(f"container node {node}: Docker refused it: {exc.explanation or exc}") from None
    container.reload()
    pid = int(container.attrs.get("State", {}).get("Pid") or 0)
    if container.status != "running" or pid == 0:
        raise _exited(node, container)
    return pid


def _find(lab: str, node: str) -> Any:
    docker_client = client()
    docker = _sdk()
    try:
        return docker_client.containers.get(container_name(lab, node))
    except docker.errors.NotFound:
        raise ContainerError(f"lab {lab} has no container for node {node}: is the lab up?") from None


def exited_error(lab: str, node: str) -> ContainerError | None:
    """When the container's first process is already gone (its namespace could not be named):
    the exit, with the last log lines, once Docker has recorded it."""
    found = _find(lab, node)
    with contextlib.suppress(Exception):
        found.wait(timeout=5)
    found.reload()
    return _exited(node, found) if found.status != "running" else None


def _listening(pid: int, ports: Sequence[int]) -> bool:
    wanted = {f"{port:04X}" for port in ports}
    found: set[str] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == _TCP_LISTEN:
                    found.add(cols[1].rsplit(":", 1)[1])
    return wanted <= found


def wait_ready(lab: str, node: str, spec: ContainerPlan, timeout: float = READY_TIMEOUT) -> None:
    """Running, and listening on every port of `ports`; a container that exits fails with its logs."""
    container = _find(lab, node)
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        if container.status != "running":
            raise _exited(node, container)
        pid = int(container.attrs["State"]["Pid"])
        if _listening(pid, spec.ports):
            return
        if time.monotonic() >= deadline:
            ports = ", ".join(map(str, spec.ports))
            raise ContainerError(f"container node {node}: nothing listens on port {ports} after {timeout:g}s")
        time.sleep(0.05)


# -- using ---------------------------------------------------------------------------------------


def describe(lab: str, node: str) -> dict[str, Any]:
    """Image, container id and health (Docker's health check where the image has one)."""
    container = None
    with contextlib.suppress(Exception):
        docker_client = _reachable_client()
        if docker_client is not None:
            container = docker_client.containers.get(container_name(lab, node))
    if container is None:
        return {"image": None, "container_id": None, "health": "missing"}
    state = container.attrs.get("State", {})
    health = state.get("Health", {}).get("Status") or state.get("Status", "unknown")
    return {
        "image": container.attrs.get("Config", {}).get("Image"),
        "container_id": container.short_id,
        "health": health,
    }


def is_container_node(lab: str, node: str) -> bool:
    """Per the lab's state file (no Docker call for other nodes)."""
    from lab.kernel.state import read_state

    state = read_state(lab)
    return bool(state and state.plan.get("nodes", {}).get(node, {}).get("kind") == "container")


def exec_stream(lab: str, node: str, argv: Sequence[str]) -> int:
    """Run `argv` inside the node's container (its filesystem, its namespace); output streams to
    ours; returns the command's exit status. No stdin: like `docker exec` without -i."""
    container = _find(lab, node)
    api = container.client.api
    exec_id = api.exec_create(container.id, list(argv))["Id"]
    for out, err in _chunks(api.exec_start(exec_id, stream=True, demux=True)):
        if out:
            sys.stdout.buffer.write(out)
            sys.stdout.flush()
        if err:
            sys.stderr.buffer.write(err)
            sys.stderr.flush()
    code = api.exec_inspect(exec_id).get("ExitCode")
    return int(code) if code is not None else 1


def _chunks(stream: Any) -> Iterator[tuple[bytes | None, bytes | None]]:
    yield from stream


# -- down ----------------------------------------------------------------------------------------


def remove_lab_containers(lab: str) -> list[str]:
    """Stop and remove every container labelled for `lab`; returns their names. Idempotent."""
    removed = []
    for container in lab_containers(lab):
        with contextlib.suppress(Exception):
            container.stop(timeout=STOP_TIMEOUT)
        with contextlib.suppress(Exception):
            container.remove(force=True)
            removed.append(container.name)
    return removed
