"""A newcomer's path on real namespaces: each failure of `up` is one line naming the fix and leaves
nothing behind; a lab's node wins over a same-named directory (and says so); one -o across trace,
ladder and plot; apps started and stopped on a running node; `attach` keeps the lab's seed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.inventory import leftovers
from lab.lab import Lab
from lab.viz.load import connections, mirror, read_trace_file
from lab.viz.nodes import node_trace_file
from tests.missing import CLI, cli_without

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]
REPO = Path(__file__).resolve().parents[2]
PY_CLI = [sys.executable, "-c", CLI]
TAG = f"n{os.getpid() % 10000}"


def run(
    argv: list[str], cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **(env or {})})  # fmt: skip


def one_line(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def name() -> Iterator[str]:
    lab = f"{TAG}-up"
    yield lab
    Lab.down(lab)
    assert leftovers(lab) == {}


def test_up_without_iptables_for_the_emulator_names_it_and_leaves_nothing(name: str) -> None:
    done = run([sys.executable, "-c", CLI, "up", "lossy.yaml", "--name", name],
               env={"TCPLAB_IMPAIR_BACKEND": "userspace", "PATH": "/nonexistent"})  # fmt: skip
    line = one_line(done)
    assert "link emulator" in line and "apt-get install iptables" in line
    assert leftovers(name) == {}


def test_up_of_a_container_node_without_the_docker_sdk_names_it(name: str) -> None:
    line = one_line(run([*cli_without("docker"), "up", "container.yaml", "--name", name]))
    assert "Docker SDK" in line and "pip install 'tcplab[lab]'" in line
    assert leftovers(name) == {}


def test_up_without_cap_sys_admin_is_one_line_and_leaves_nothing(name: str) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    drop = ["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--"]
    line = one_line(run([*drop, *PY_CLI, "up", "two-node.yaml", "--name", name]))
    assert "rolled back" in line and "CAP_SYS_ADMIN" in line
    assert leftovers(name) == {}


def test_attach_plans_with_the_seed_of_up(name: str) -> None:
    with Lab.up(REPO / "topologies" / "interop.yaml", name, seed=7, start_daemons=False) as lab:
        attached = Lab.attach(name)
        assert attached.plan.seed == 7
        assert attached.plan.seed_for(0, True) == lab.plan.seed_for(0, True) == 70_000


# -- on one running two-node lab -------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab() -> Iterator[str]:
    lab_name = f"{TAG}-path"
    up = run([*PY_CLI, "up", "two-node.yaml", "--name", lab_name])
    try:
        assert up.returncode == 0, up.stderr
        got = run([*PY_CLI, "http", "client", "http://server/bytes/20000", "--lab", lab_name, "--json"])
        assert got.returncode == 0, got.stderr
        yield lab_name
    finally:
        Lab.down(lab_name)
    assert leftovers(lab_name) == {}


def test_a_running_labs_node_wins_over_a_directory_and_says_so(lab: str, tmp_path: Path) -> None:
    (tmp_path / "client").mkdir()  # like `stack/` beside interop.yaml's node `stack`
    bare = run([*PY_CLI, "ladder", "client", "--lab", lab], cwd=tmp_path)
    assert bare.returncode == 0, bare.stderr
    assert "SYN" in bare.stdout and "FIN" in bare.stdout
    assert "drawing node client of the running lab, not the directory ./client" in bare.stderr
    explicit = run([*PY_CLI, "ladder", "--node", "client", "--lab", lab], cwd=tmp_path)
    assert explicit.returncode == 0 and explicit.stderr == ""
    # The same connection (the ladder's last line names it; later events may have been traced since).
    assert explicit.stdout.strip().splitlines()[-1] == bare.stdout.strip().splitlines()[-1]


def test_both_ends_of_a_connection_that_just_ended_are_on_disk(lab: str) -> None:
    """Daemons flush their traces once a second; reading a node's trace asks them to flush first,
    so a ladder drawn right after a request has the server's end of it too."""
    server_trace = node_trace_file("server", lab)
    before = set(connections(read_trace_file(server_trace)))
    got = run([*PY_CLI, "http", "client", "http://server/bytes/1000", "--lab", lab])
    assert got.returncode == 0, got.stderr
    client_conns = connections(read_trace_file(node_trace_file("client", lab)))
    server_conns = set(connections(read_trace_file(node_trace_file("server", lab)))) - before
    assert len(server_conns) == 1
    assert mirror(server_conns.pop()) in client_conns


def test_one_output_option_for_trace_ladder_and_plot(lab: str, tmp_path: Path) -> None:
    pictures = {
        "trace.svg": ["trace", "client", "--format", "svg", "--lab", lab],
        "ladder.svg": ["ladder", "--node", "client", "--format", "svg", "--lab", lab],
        "plot.png": ["plot", "--node", "client", "--lab", lab],
        "events.txt": ["trace", "client", "--lab", lab],
    }
    for filename, argv in pictures.items():
        out = tmp_path / filename
        done = run([*PY_CLI, *argv, "-o", str(out)])
        assert done.returncode == 0, done.stderr
        assert done.stdout == "" and f"wrote {out}" in done.stderr
        data = out.read_bytes()
        if filename.endswith(".svg"):
            assert b"<svg" in data
        elif filename.endswith(".png"):
            assert data.startswith(b"\x89PNG")
        else:
            assert b"SYN_SENT" in data


def test_app_start_list_stop_on_a_running_node(lab: str) -> None:
    started = run([*PY_CLI, "app", "start", "client", "http-server", "--port", "8080", "--lab", lab])
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "started http-server:8080 on client"
    listed = run([*PY_CLI, "app", "list", "client", "--lab", lab, "--json"])
    assert '"http-server:8080"' in listed.stdout
    got = run([*PY_CLI, "http", "server", "http://client:8080/bytes/5000", "--lab", lab, "--json"])
    assert got.returncode == 0 and '"status": 200' in got.stdout, got.stderr
    again = one_line(run([*PY_CLI, "app", "start", "client", "http-server", "--port", "8080", "--lab", lab]))
    assert "already running" in again
    stopped = run([*PY_CLI, "app", "stop", "client", "http-server:8080", "--lab", lab])
    assert stopped.returncode == 0, stopped.stderr
    assert run([*PY_CLI, "app", "list", "client", "--lab", lab, "--json"]).stdout.strip() == "{}"
    refused = run([*PY_CLI, "http", "server", "http://client:8080/", "--lab", lab, "--timeout", "5"])
    assert refused.returncode != 0
    missing = one_line(run([*PY_CLI, "app", "stop", "client", "http-server:8080", "--lab", lab]))
    assert "no app 'http-server:8080' running" in missing


def test_exec_of_a_missing_tool_names_its_package(lab: str, tmp_path: Path) -> None:
    nsenter = shutil.which("nsenter")
    assert nsenter is not None
    (tmp_path / "nsenter").symlink_to(nsenter)  # a PATH with nsenter and no iperf3
    done = run([*PY_CLI, "exec", "client", "--lab", lab, "--", "iperf3", "-s"], env={"PATH": str(tmp_path)})
    assert one_line(done, code=127) == "tcplab: iperf3 is not installed: apt-get install iperf3"
