"""`tcplab demo` on real namespaces: the same contract as `--sim`, and nothing left behind."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.kernel import ownership
from lab.kernel.state import run_dir
from lab.scenarios.demo_sim import EXPECTED_CLIENT, EXPECTED_SERVER

pytestmark = pytest.mark.root


def test_demo_runs_http_across_two_stacks_and_tears_down() -> None:
    result = CliRunner().invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["mode"] == "lab"
    assert doc["client"]["transitions"] == EXPECTED_CLIENT
    assert doc["server"]["transitions"] == EXPECTED_SERVER
    assert doc["request"]["status"] == 200 and doc["request"]["digest_ok"]
    # The demo's lab is gone: no namespace, no run directory.
    assert doc["lab"] not in ownership.lab_namespaces()
    assert not run_dir(doc["lab"]).exists()
