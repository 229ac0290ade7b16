"""`tcplab impair`: a running link's impairments change live, and `tcplab status` shows them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.lab import Lab

pytestmark = pytest.mark.root
LAB = "impcli"


@pytest.fixture
def lab() -> Iterator[Lab]:
    running = Lab.up("topologies/two-node.yaml", LAB, start_daemons=False)
    try:
        yield running
    finally:
        Lab.down(LAB)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout + (result.stderr if result.stderr_bytes else "")


def test_impair_changes_both_directions_and_status_shows_it(lab: Lab) -> None:
    code, out = run("impair", "client-server", "--lab", LAB, "--delay", "15ms", "--loss", "2%", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert set(report["directions"]) == {"client->server", "server->client"}
    assert all(d["profile"] == "15ms, 2% loss" for d in report["directions"].values())
    code, out = run("status", LAB, "--json")
    doc = json.loads(out)
    link = (doc[0] if isinstance(doc, list) else doc)["links"][0]
    assert (link["a_to_b"], link["b_to_a"]) == ("15ms, 2% loss", "15ms, 2% loss")


def test_impair_one_direction_only(lab: Lab) -> None:
    code, out = run("impair", "client-server", "--lab", LAB, "--direction", "b_to_a", "--delay", "5ms",
                    "--json")
    assert code == 0, out
    assert list(json.loads(out)["directions"]) == ["server->client"]


def test_a_bare_number_is_refused_naming_the_option(lab: Lab) -> None:
    code, out = run("impair", "client-server", "--lab", LAB, "--delay", "10")
    assert code != 0
    assert "--delay" in out and "bare number" in out


def test_unknown_link_is_named(lab: Lab) -> None:
    code, out = run("impair", "nope", "--lab", LAB, "--delay", "10ms")
    assert code != 0
    assert "client-server" in out  # the error lists the links there are
