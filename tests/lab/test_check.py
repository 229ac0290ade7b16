"""`tcplab check`: the five scenarios pass on the default lab (table and --json), a failing
scenario makes the exit code non-zero, the client/server pair is sensible on every shipped
topology, and every run leaves nothing of its lab behind."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lab.scenarios.check
import lab.scenarios.roles
from lab.cli import app
from lab.inventory import leftovers
from lab.kernel import ownership
from lab.lab import Lab
from lab.model.build import build_plan
from lab.model.topology import load_topology

pytestmark = pytest.mark.timeout(90)

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
SCENARIOS = ["handshake-close", "echo", "http-digest", "bulk-impaired", "no-leftovers"]





@pytest.fixture
def lab_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A lab name of this test alone, in a run directory of its own; downed whatever happened."""
    monkeypatch.setenv("TCPLAB_RUN_DIR", str(tmp_path / "run"))
    name = f"ck{os.getpid() % 10000}"
    yield name
    Lab.down(name)


@pytest.mark.parametrize("topology", sorted(p.name for p in TOPOLOGIES.glob("*.yaml")))
def test_roles_on_every_shipped_topology(topology: str) -> None:
    plan = build_plan(load_topology(TOPOLOGIES / topology))
    if any(node.kind == "container" for node in plan.nodes.values()):
        # The check's servers are the stack's apps or Linux's; a container runs its own software.
        with pytest.raises(lab.scenarios.roles.CheckError, match="no other host to talk to"):
            lab.scenarios.roles.pick_roles(plan)
        return
    roles = lab.scenarios.roles.pick_roles(plan)
    assert plan.node(roles.client).kind == "stack"
    assert roles.client != roles.server
    assert roles.path_links, "a path from client to server"
    expected = {
        "two-node.yaml": ("client", "server", "stack"),
        "lossy.yaml": ("client", "server", "stack"),
        "interop.yaml": ("stack", "linux", "kernel"),
        "chain.yaml": ("left", "right", "stack"),
        "dumbbell.yaml": ("s1", "d1", "stack"),
    }.get(topology)
    if expected:
        assert (roles.client, roles.server, roles.server_kind) == expected
    # The path really joins them: consecutive links share a node.
    ends = [{plan.links[i].a.node, plan.links[i].b.node} for i in roles.path_links]
    assert roles.client in ends[0] and roles.server in ends[-1]


@pytest.mark.root
def test_check_passes_on_the_default_lab_and_leaves_nothing(lab_name: str) -> None:
    result = CliRunner().invoke(app, ["check", "--json", "--name", lab_name])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["passed"] == doc["total"] == 5
    rows = {row["name"]: row for row in doc["scenarios"]}
    assert list(rows) == SCENARIOS
    assert all(row["ok"] for row in rows.values()), rows
    hs = rows["handshake-close"]["figures"]
    assert hs["client"].split() == lab.scenarios.check.EXPECTED_CLIENT
    assert hs["server"].split() == lab.scenarios.check.EXPECTED_SERVER
    assert rows["echo"]["figures"]["received"] == lab.scenarios.check.ECHO_BYTES
    bulk = rows["bulk-impaired"]["figures"]
    assert bulk["bytes"] == lab.scenarios.check.BULK_BYTES and bulk["goodput_mbps"] > 0
    assert isinstance(bulk["retransmits"], int) and "live" in bulk["link"]
    assert leftovers(lab_name) == {}


@pytest.mark.root
def test_a_failing_scenario_makes_the_exit_code_non_zero(
    lab_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An expectation the server never meets; a smaller transfer keeps the test short.
    monkeypatch.setattr(lab.scenarios.check, "EXPECTED_SERVER", ["LISTEN", "ESTABLISHED", "CLOSED"])
    monkeypatch.setattr(lab.scenarios.check, "BULK_BYTES", 200_000)
    result = CliRunner().invoke(app, ["check", "--name", lab_name])
    assert result.exit_code == 1, result.output
    assert result.stdout.count("FAIL") == 1  # the handshake-close row alone
    assert "4/5 scenarios passed" in result.stdout
    assert leftovers(lab_name) == {}


@pytest.mark.root
def test_a_lab_of_that_name_already_up_is_refused_and_left_alone(lab_name: str) -> None:
    Lab.up("two-node.yaml", lab_name, start_daemons=False)
    result = CliRunner().invoke(app, ["check", "--name", lab_name])
    assert result.exit_code == 2
    assert "already up" in result.output
    assert ownership.lab_namespaces(lab_name).get(lab_name), "the check must not down someone's lab"
    Lab.down(lab_name)
    assert leftovers(lab_name) == {}
