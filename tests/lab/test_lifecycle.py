"""Lab lifecycle on real namespaces: up, reachability, down, and every teardown path leaving nothing.

Each test uses its own lab name, and a fixture downs it (and checks for leftovers) even on failure.
Reachability is checked with a tiny ICMP echo over a raw socket run inside a node's namespace.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lab.cli
import lab.cli.root
import lab.kernel.netns
from lab.inventory import alive, leftovers
from lab.kernel import ownership
from lab.kernel.state import STATE_FILE, run_dir
from lab.lab import Lab, LabError, _wait_until

from .support import PING

pytestmark = pytest.mark.timeout(60)
root = pytest.mark.root

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"



def reachable(lab_: Lab, node: str, address: str) -> bool:
    return lab_.exec(node, [sys.executable, "-c", PING, address], check=False).returncode == 0





@pytest.fixture(autouse=True)
def run_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TCPLAB_RUN_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


@pytest.fixture
def lab_names() -> Iterator[Callable[[str], str]]:
    """Hands out lab names unique to this test run; downs them all afterwards, whatever happened."""
    used: list[str] = []

    def make(stem: str) -> str:
        name = f"t{os.getpid() % 10000}-{stem}"
        used.append(name)
        return name

    yield make
    for name in used:
        Lab.down(name)
        assert leftovers(name) == {}


@root
def test_two_node_up_status_reach_down(lab_names: Callable[[str], str]) -> None:
    name = lab_names("two")
    lab_ = Lab.up(TOPOLOGIES / "two-node.yaml", name=name)
    status = lab_.status()
    assert set(status["nodes"]) == {"client", "server"}
    assert all(n["netns_present"] for n in status["nodes"].values())
    assert status["nodes"]["server"]["address"] == lab_.address_of("server")
    assert (run_dir(name) / STATE_FILE).is_file()
    assert (run_dir(name) / "server.json").is_file()  # the daemon's config is written either way
    # Stack-node namespaces forward in the kernel: their link addresses answer.
    server_link = str(lab_.plan.node("server").interfaces[0].address.ip)
    assert reachable(lab_, "client", server_link)
    for pid in lab_.state.daemons.values():  # only once lab.node.daemon exists
        assert alive(pid)
    attached = Lab.attach(name)
    assert attached.address_of("server") == lab_.address_of("server")
    assert attached.exec("server", ["true"]).returncode == 0

    report = Lab.down(name)
    assert sorted(report["namespaces"]) == [f"tcplab-{name}-client", f"tcplab-{name}-server"]
    assert leftovers(name) == {}
    again = Lab.down(name)  # idempotent
    assert again["namespaces"] == [] and again["killed"] == []


@root
def test_context_manager_downs_on_exit(lab_names: Callable[[str], str]) -> None:
    name = lab_names("ctx")
    with pytest.raises(RuntimeError, match="inside"), Lab.up(TOPOLOGIES / "interop.yaml", name=name):
        assert ownership.lab_namespaces(name)
        raise RuntimeError("inside the with block")
    assert leftovers(name) == {}


@root
def test_chain_routes_across_the_router(lab_names: Callable[[str], str]) -> None:
    name = lab_names("chain")
    with Lab.up(TOPOLOGIES / "chain.yaml", name=name, start_daemons=False) as lab_:
        right = str(lab_.plan.node("right").interfaces[0].address.ip)
        left = str(lab_.plan.node("left").interfaces[0].address.ip)
        assert reachable(lab_, "left", right)  # two hops, through r1
        assert reachable(lab_, "right", left)
        mtu = lab_.exec("right", ["cat", "/sys/class/net/lo/mtu"], check=False)  # exec works at all
        assert mtu.returncode == 0
        routes = lab_.exec("left", ["ip", "-4", "route"]).stdout
        assert f"{lab_.address_of('right')} via {lab_.plan.node('r1').interfaces[0].address.ip}" in routes


@root
def test_down_without_state_file(lab_names: Callable[[str], str]) -> None:
    name = lab_names("nostate")
    lab_ = Lab.up(TOPOLOGIES / "chain.yaml", name=name, start_daemons=False)
    sleeper = lab_.spawn("r1", ["sleep", "300"])
    assert _wait_until(lambda: sleeper.pid in ownership.pids_in([lab_.netns_of("r1")]), 5.0)
    (run_dir(name) / STATE_FILE).unlink()
    report = Lab.down(name)
    assert len(report["namespaces"]) == 3
    assert sleeper.wait(timeout=5) == -signal.SIGTERM
    assert leftovers(name) == {}


@root
@pytest.mark.parametrize("error", [lab.kernel.netns.RealiseError, KeyboardInterrupt], ids=["error", "ctrl-c"])
def test_failed_up_rolls_back(
    lab_names: Callable[[str], str], monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    name = lab_names("fail")
    calls: list[str] = []

    def broken_routes(ns: str, routes: object) -> None:
        calls.append(ns)
        raise error(f"{ns}: injected failure")

    monkeypatch.setattr(lab.kernel.netns, "add_routes", broken_routes)
    with pytest.raises(error, match="injected"):
        Lab.up(TOPOLOGIES / "chain.yaml", name=name, start_daemons=False)
    assert calls  # the failure came after namespaces and links existed
    assert leftovers(name) == {}


@root
def test_up_refuses_a_lab_that_is_up_and_leaves_it_alone(lab_names: Callable[[str], str]) -> None:
    name = lab_names("twice")
    with Lab.up(TOPOLOGIES / "interop.yaml", name=name, start_daemons=False):
        with pytest.raises(LabError, match="already up"):
            Lab.up(TOPOLOGIES / "interop.yaml", name=name, start_daemons=False)
        assert len(ownership.lab_namespaces(name)[name]) == 2


@root
def test_two_labs_side_by_side(lab_names: Callable[[str], str]) -> None:
    first, second = lab_names("a"), lab_names("b")
    lab_a = Lab.up(TOPOLOGIES / "interop.yaml", name=first, start_daemons=False)
    lab_b = Lab.up(TOPOLOGIES / "interop.yaml", name=second, start_daemons=False)
    # The same addresses in both labs: their namespaces keep them apart.
    assert lab_a.address_of("linux") == lab_b.address_of("linux")
    assert reachable(lab_a, "stack", lab_a.address_of("linux"))
    Lab.down(first)
    assert leftovers(first) == {}
    assert len(ownership.lab_namespaces(second)[second]) == 2
    assert reachable(lab_b, "stack", lab_b.address_of("linux"))


@root
def test_kill_9_then_down_leaves_nothing(lab_names: Callable[[str], str]) -> None:
    name = lab_names("kill")
    lab_ = Lab.up(TOPOLOGIES / "interop.yaml", name=name, start_daemons=False)
    # A parent that starts a child in the namespace and is then killed -9: the orphan stays behind.
    parent = lab_.spawn("linux", ["sh", "-c", "sleep 300 & echo $!; wait"], stdout=-1)
    assert parent.stdout is not None
    orphan = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=5)
    assert alive(orphan)
    Lab.down(name)
    assert _wait_until(lambda: not alive(orphan), 5.0)
    assert leftovers(name) == {}


@root
def test_down_of_unknown_lab_is_a_no_op() -> None:
    report = Lab.down("never-was-up")
    assert report["namespaces"] == [] and report["killed"] == []


@root
def test_impaired_lab_reports_backends_and_stops_emulators(lab_names: Callable[[str], str]) -> None:
    name = lab_names("lossy")
    with Lab.up(TOPOLOGIES / "lossy.yaml", name=name, start_daemons=False) as lab_:
        backends = lab_.status()["impairments"]
        assert len(backends) == 2 and set(backends.values()) <= {"netem", "userspace"}
    assert leftovers(name) == {}


@root
def test_cli_up_status_exec_down(lab_names: Callable[[str], str]) -> None:
    name = lab_names("cli")
    runner = CliRunner()
    result = runner.invoke(lab.cli.app, ["up", str(TOPOLOGIES / "interop.yaml"), "--name", name, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["nodes"]["linux"]["address"] == "10.0.0.2"
    status = json.loads(runner.invoke(lab.cli.app, ["status", name, "--json"]).stdout)
    assert [s["lab"] for s in status] == [name]
    ran = runner.invoke(lab.cli.app, ["exec", "--lab", name, "linux", "--", "true"])
    assert ran.exit_code == 0, ran.output
    ran = runner.invoke(lab.cli.app, ["exec", "--lab", name, "linux", "--", "false"])
    assert ran.exit_code == 1
    assert runner.invoke(lab.cli.app, ["down", name]).exit_code == 0
    assert leftovers(name) == {}
    assert runner.invoke(lab.cli.app, ["down", name]).exit_code == 0


def test_cli_without_privileges_says_so_and_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab.cli.root, "privilege_problem", lambda: "the lab needs root")
    for argv in (["up"], ["down", "--all"], ["status"], ["exec", "x", "--", "true"]):
        result = CliRunner().invoke(lab.cli.app, argv)
        assert result.exit_code == 2, argv
        assert "the lab needs root" in result.stderr


# -- the node-daemon hook, with a stand-in daemon: this module run as `python -m` ----------------


def _fake_daemon(argv: list[str]) -> int:
    """Behaves as lab.node.daemon must at start: enter the namespace, then create DIR/NODE.sock."""
    import argparse
    import ctypes
    import socket
    import time

    parser = argparse.ArgumentParser()
    for option in ("--netns", "--run-dir", "--node", "--config"):
        parser.add_argument(option, required=True)
    args = parser.parse_args(argv)
    if os.environ.get("TCPLAB_FAKE_DAEMON_FAIL"):
        print("failing on purpose", file=sys.stderr)
        return 3
    assert json.loads(Path(args.config).read_text())["node"] == args.node
    fd = os.open(f"/run/netns/{args.netns}", os.O_RDONLY)
    if ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) != 0:
        return 4
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(Path(args.run_dir) / f"{args.node}.sock"))
    sock.listen()
    while True:
        time.sleep(60)


@pytest.fixture
def fake_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lab.lab.DAEMON_MODULE", "tests.lab.test_lifecycle")


@root
@pytest.mark.usefixtures("fake_daemon")
def test_daemons_start_then_kill_9_and_down(lab_names: Callable[[str], str]) -> None:
    name = lab_names("daemons")
    lab_ = Lab.up(TOPOLOGIES / "two-node.yaml", name=name)
    pids = lab_.state.daemons
    assert set(pids) == {"client", "server"}
    status = lab_.status()
    assert all(status["nodes"][n]["daemon_alive"] for n in pids)
    assert set(ownership.pids_in(ownership.lab_namespaces(name)[name])) >= set(pids.values())
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    assert _wait_until(lambda: not any(alive(p) for p in pids.values()), 5.0)
    Lab.down(name)
    assert leftovers(name) == {}


@root
@pytest.mark.usefixtures("fake_daemon")
def test_a_daemon_that_dies_fails_up_and_rolls_back(
    lab_names: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = lab_names("deadd")
    monkeypatch.setenv("TCPLAB_FAKE_DAEMON_FAIL", "1")
    with pytest.raises(LabError, match=r"daemon of \w+ exited with 3"):
        Lab.up(TOPOLOGIES / "two-node.yaml", name=name)
    assert leftovers(name) == {}


if __name__ == "__main__":
    sys.exit(_fake_daemon(sys.argv[1:]))
