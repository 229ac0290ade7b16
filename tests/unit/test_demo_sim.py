"""`tcplab demo --sim`: the contract of issue 2 (exact transitions of both ends, JSON shape)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lab.cli import app
from lab.scenarios.demo_sim import EXPECTED_CLIENT, EXPECTED_SERVER, run_sim_demo


def test_demo_sim_json_has_the_textbook_transitions() -> None:
    result = CliRunner().invoke(app, ["demo", "--sim", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["client"]["transitions"] == [
        "CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED",
    ]
    assert doc["server"]["transitions"] == [
        "LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED",
    ]
    assert doc["request"]["status"] == 200
    assert doc["request"]["digest_ok"] is True


def test_demo_sim_waits_out_time_wait_of_60_seconds() -> None:
    doc = run_sim_demo()
    client_steps = doc["client"]["steps"]
    entered = next(s["time"] for s in client_steps if s["new"] == "TIME_WAIT")
    left = next(s["time"] for s in client_steps if s["old"] == "TIME_WAIT")
    assert left - entered == 60.0  # 2 * MSL with the default MSL of 30 s
    assert client_steps[-1]["cause"] == "timer:time_wait"


def test_demo_sim_is_reproducible_from_its_seed() -> None:
    assert run_sim_demo(seed=7) == run_sim_demo(seed=7)


def test_demo_sim_text_output_names_both_ends() -> None:
    result = CliRunner().invoke(app, ["demo", "--sim"])
    assert result.exit_code == 0, result.output
    assert "as the textbook says" in result.stdout
    for state in set(EXPECTED_CLIENT) | set(EXPECTED_SERVER):
        assert state in result.stdout
