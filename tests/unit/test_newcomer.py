"""A newcomer's path without a traceback (no root needed): the stack without the lab's packages,
the console script saying which extra to install, one line for each missing tool or module, the
demo's lines kept whole when piped, app options checked like a topology file's, a directory that is
not a node, and no `drill --node` until it exists. Root-only parts: tests/lab/test_newcomer.py."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.kernel import requirements
from lab.kernel.capture import CaptureError
from lab.kernel.tshark import tshark_fields
from lab.model.topology import TopologyError, topology_from_data
from lab.viz.nodes import resolve_trace
from tests.missing import CLI, cli_without, without

REPO = Path(__file__).resolve().parents[2]
LAB_PACKAGES = ("typer", "rich", "pyroute2", "pytun", "matplotlib", "docker",
                "pydantic", "yaml", "h11")  # fmt: skip


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO, **kw)  # type: ignore[call-overload, no-any-return]


def test_the_stack_installs_without_the_labs_packages() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == []
    lab_extra = " ".join(project["optional-dependencies"]["lab"]).lower()
    for package in ("typer", "rich", "pyroute2", "python-pytun", "matplotlib", "docker"):
        assert package in lab_extra
    assert project["scripts"]["tcplab"] == "lab.main:main"


def test_every_stack_module_and_the_readme_example_run_without_the_labs_packages() -> None:
    readme = (REPO / "README.md").read_text()
    example = re.search(r"```python\n(from stack.*?)```", readme, re.S)
    assert example, "the README's Python example is gone"
    code = without(*LAB_PACKAGES) + (
        "import importlib, pkgutil, stack\n"
        "for m in pkgutil.walk_packages(stack.__path__, 'stack.'):\n"
        "    if m.name != 'stack.tun':\n"  # the TUN driver imports pytun when it opens a device only
        "        importlib.import_module(m.name)\n"
    ) + example.group(1)
    done = run([sys.executable, "-c", code])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "500000"


def test_the_command_without_the_labs_packages_names_the_extra_in_one_line() -> None:
    done = run([*cli_without("typer"), "up", "lossy.yaml"])
    assert done.returncode == 2
    expected = "tcplab: the lab's packages are not installed (no typer): pip install 'tcplab[lab]'\n"
    assert done.stderr == expected


def test_a_missing_tool_or_module_is_named_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert requirements.tool_problem("tcpdump") == "tcpdump is not installed: apt-get install tcpdump"
    assert requirements.tool_problem("iperf3") == "iperf3 is not installed: apt-get install iperf3"
    with pytest.raises(CaptureError, match=r"^tshark is not installed \(apt-get install tshark\)$"):
        tshark_fields(Path("x.pcap"), "tcp", ["frame.number"])
    problem = requirements.emulator_problem()
    assert problem is not None and "apt-get install iptables" in problem and "\n" not in problem


def test_demo_lines_stay_whole_when_piped() -> None:
    done = run([sys.executable, "-c", CLI, "demo", "--sim"])
    assert done.returncode == 0, done.stderr
    request = [line for line in done.stdout.splitlines() if line.startswith("GET ")]
    assert len(request) == 1
    whole = r"sha256 [0-9a-f]{16}\.\.\. \(verified\), connect [\d.]+ ms, total [\d.]+ ms$"
    assert re.search(whole, request[0])


def test_app_start_checks_options_like_a_topology_file() -> None:
    data = {"name": "t", "nodes": {"a": {"kind": "stack", "apps": [{"name": "http-server",
                                                                     "options": {"port": 80, "bogus": 1}}]}}}
    with pytest.raises(TopologyError) as info:
        topology_from_data(data, "t.yaml")
    in_file = str(info.value).removeprefix("t.yaml: nodes.a.apps[0]: ")
    argv = ["app", "start", "a", "http-server", "--port", "80", "--option", "bogus=1"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    assert result.output.strip() == f"tcplab: {in_file}"
    assert "bogus" in in_file
    client = CliRunner().invoke(app, ["app", "start", "a", "http-client"])
    assert client.exit_code == 1 and "http-client is a client app" in client.output
    malformed = CliRunner().invoke(app, ["app", "start", "a", "echo-server", "--option", "port"])
    assert malformed.exit_code == 1 and "write KEY=VALUE" in malformed.output


def test_a_directory_is_not_taken_for_a_trace_nor_a_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TCPLAB_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stack").mkdir()
    with pytest.raises(ValueError, match="stack is a directory, not a trace file, nor a running lab's node"):
        resolve_trace(Path("stack"), "interop")


def test_drill_has_no_node_option_until_it_exists() -> None:
    result = CliRunner().invoke(app, ["drill", "--node", "n1", "x.pkt"])
    assert result.exit_code == 2 and "No such option: --node" in result.output
    assert "--node" not in CliRunner().invoke(app, ["drill", "--help"]).output
