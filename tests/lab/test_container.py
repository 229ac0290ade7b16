"""Container nodes on real namespaces: a local image (tests/lab/container_image.py, built once and
cached by tag) serving the stack and fetching from it over impaired links, teardown after kill -9,
and the bad inputs that must stop `up` in one line with nothing left behind.

Skipped, with the reason, when Docker cannot run here (no daemon and none can be started, or the
image cannot be built); the daemon-not-answering test needs only root and the Docker SDK.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.inventory import leftovers
from lab.kernel import container
from lab.lab import Lab
from lab.model.topology import Topology, topology_from_data
from lab.node.apps.payload import sha256

from .container_image import IMAGE, build_image, docker_problem

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from lab.cli import app; app()"]
SERVE = ["python3", "-m", "http.server", "80", "--directory", "/srv"]


@pytest.fixture(scope="module")
def image() -> str:
    problem = docker_problem()
    if problem:
        pytest.skip(f"Docker cannot run here: {problem}")
    try:
        return build_image()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot build the test image {IMAGE}: {exc}")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("TCPLAB_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("TCPLAB_IMPAIR_BACKEND", "userspace")  # what this kernel has; netem is unit-tested
    return {**os.environ}


@pytest.fixture
def names(env: dict[str, str]) -> Iterator[Callable[[str], str]]:
    used: list[str] = []

    def make(stem: str) -> str:
        used.append(f"c{os.getpid() % 10000}-{stem}")
        return used[-1]

    yield make
    for name in used:
        Lab.down(name)
        assert leftovers(name) == {}


def shipped(**web: Any) -> dict[str, Any]:
    """topologies/container.yaml with the web node's fields replaced (no registry: a local image)."""
    data = yaml.safe_load((REPO / "topologies" / "container.yaml").read_text())
    data["nodes"]["web"].update(web)
    return dict(data)


def model(data: dict[str, Any], name: str) -> Topology:
    return topology_from_data({**data, "name": name}, "test")


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


def write_topology(tmp_path: Path, data: dict[str, Any], name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**data, "name": name}))
    return path


def test_stack_fetches_from_a_container_server_over_an_impaired_link(
    image: str, names: Callable[[str], str], env: dict[str, str], tmp_path: Path
) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    blob = os.urandom(200_000)
    (srv / "blob").write_bytes(blob)
    name = names("fetch")
    lab = Lab.up(model(shipped(image=image, command=SERVE, binds=[f"{srv}:/srv:ro"]), name))
    status = lab.status()
    web = status["nodes"]["web"]
    assert (web["kind"], web["image"], web["health"]) == ("container", image, "running")
    assert web["container_id"] and web["netns_present"]
    assert status["impairments"] == {
        "client->web (client-web)": "userspace", "web->client (client-web)": "userspace",
    }  # fmt: skip
    got = cli("http", "client", "http://web/blob", "--lab", name, "--json", env=env)
    assert got.returncode == 0, got.stderr
    assert f'"sha256": "{hashlib.sha256(blob).hexdigest()}"' in got.stdout
    shown = cli("status", name, env=env)
    assert lab.status()["nodes"]["web"]["container_id"] in shown.stdout


def test_container_is_a_client_of_the_stack_server_and_exec_runs_inside_it(
    image: str, names: Callable[[str], str], env: dict[str, str], tmp_path: Path
) -> None:
    data = {
        "nodes": {
            "server": {"kind": "stack", "apps": [{"name": "http-server", "options": {"port": 80}}]},
            "box": {"kind": "container", "image": image, "command": ["sleep", "infinity"],
                    "env": {"GREETING": "hello"}, "binds": ["data:/data:ro"]},
        },
        "links": [{"endpoints": ["box", "server"], "impairments": {"both": {"delay": "5ms", "loss": "1%"}}}],
    }
    name = names("client")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "note").write_text("beside the topology file\n")
    path = write_topology(tmp_path, data, name)
    up = cli("up", str(path), env=env)
    assert up.returncode == 0, up.stderr
    fetch = (
        "import hashlib, sys, urllib.request; "
        "print(hashlib.sha256(urllib.request.urlopen(sys.argv[1], timeout=60).read()).hexdigest())"
    )
    url = f"http://{Lab.attach(name).address_of('server')}/bytes/300000"
    got = cli("exec", "box", "--lab", name, "--", "python3", "-c", fetch, url, env=env)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == sha256(300_000)
    # exec runs in the container's own filesystem: its hostname file, not the host's.
    inside = cli("exec", "box", "--lab", name, "--", "cat", "/etc/hostname", env=env)
    assert inside.stdout.strip() == "box"
    shell = "echo $GREETING; cat /data/note"
    env_and_bind = cli("exec", "box", "--lab", name, "--", "sh", "-c", shell, env=env)
    assert env_and_bind.stdout == "hello\nbeside the topology file\n"  # a relative bind: the file's folder
    failing = cli("exec", "box", "--lab", name, "--", "sh", "-c", "exit 7", env=env)
    assert failing.returncode == 7
    down = cli("down", name, env=env)
    assert down.returncode == 0, down.stderr
    assert "1 containers removed" in down.stderr
    assert container.lab_containers(name) == []


def test_kill_9_of_up_then_down_leaves_no_container(
    image: str, names: Callable[[str], str], env: dict[str, str], tmp_path: Path
) -> None:
    name = names("kill9")
    path = write_topology(tmp_path, shipped(image=image, command=SERVE, binds=[f"{tmp_path}:/srv"]), name)
    up = subprocess.Popen([*CLI, "up", str(path)], env=env, cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not container.lab_containers(name) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert container.lab_containers(name), "up never created the container"
        up.send_signal(signal.SIGKILL)
        up.wait(10)
        down = cli("down", name, env=env)  # no state needed: found by label and namespace
        assert down.returncode == 0, down.stderr
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
    assert leftovers(name) == {}


def one_line_failure(got: subprocess.CompletedProcess[str]) -> str:
    assert got.returncode == 1, got.stdout + got.stderr
    assert "Traceback" not in got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1, got.stderr
    return lines[0]


def test_image_not_present_locally_is_one_line_and_nothing_is_made(
    image: str, names: Callable[[str], str], env: dict[str, str], tmp_path: Path
) -> None:
    name = names("noimage")
    path = write_topology(tmp_path, shipped(image="tcplab-absent:never"), name)
    line = one_line_failure(cli("up", str(path), env=env))
    assert "nodes.web.image" in line and "docker pull tcplab-absent:never" in line
    assert leftovers(name) == {}


def test_container_exiting_at_start_shows_its_last_log_lines(
    image: str, names: Callable[[str], str], env: dict[str, str], tmp_path: Path
) -> None:
    name = names("exits")
    crash = ["python3", "-c", "print('reading /etc/app.conf'); print('no such file: giving up'); exit(3)"]
    path = write_topology(tmp_path, shipped(image=image, command=crash), name)
    line = one_line_failure(cli("up", str(path), env=env))
    assert "exited with 3" in line and "no such file: giving up" in line
    assert leftovers(name) == {}


def test_docker_daemon_not_answering_is_one_line(
    names: Callable[[str], str], env: dict[str, str], tmp_path: Path
) -> None:
    if container.sdk_problem():
        pytest.skip(container.sdk_problem() or "")
    name = names("nodaemon")
    path = write_topology(tmp_path, shipped(), name)
    line = one_line_failure(cli("up", str(path), env={**env, "DOCKER_HOST": f"unix://{tmp_path}/none.sock"}))
    assert "the Docker daemon does not answer" in line and "dockerd" in line
    assert leftovers(name) == {}
