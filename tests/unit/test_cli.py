"""The one `tcplab` entry point: every command group's module is registered on the app, every
command answers --help, and `python -m lab.cli` is the same command."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.core
import typer.main
from typer.testing import CliRunner

from lab.cli import app

COMMANDS = {
    "up", "down", "status", "exec",  # lab.cli.lifecycle
    "app", "capture", "check", "demo", "impair", "drill",  # one module each
    "ladder", "plot", "demo-traces",  # lab.cli.viz
    "http", "echo", "transfer", "run", "ss", "trace",  # lab.cli.node
}  # fmt: skip


def _commands() -> set[str]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return set(group.commands)


def test_every_command_group_is_registered() -> None:
    assert _commands() == COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_answers_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"tcplab {command}" in " ".join(result.output.split())


def test_python_dash_m_runs_the_same_app() -> None:
    argv = [sys.executable, "-m", "lab.cli", "--help"]
    ran = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr
    for command in COMMANDS:
        assert command in ran.stdout


def test_ss_table_shows_ipv6_endpoints_whole() -> None:
    """Bracketed IPv6 endpoints are text, not rich markup (which would swallow "[fd00::1]")."""
    from rich.console import Console

    from lab.cli.node import ss_table

    result = {
        "address": "10.2.0.1",
        "listeners": [{"local": "*:80", "port": 80, "backlog": 128, "accept_queue": 0}],
        "connections": [{"state": "ESTABLISHED", "local": "[fd00:0:2::1]:80", "remote": "[fd00::2]:40000",
                         "recv_q": 0, "send_q": 0, "rto": 0.2, "srtt": 0.001}],
    }
    console = Console(width=250, record=True)
    console.print(ss_table("server", result))
    row = next(line for line in console.export_text().splitlines() if "ESTABLISHED" in line)
    assert "[fd00:0:2::1]:80" in row and "[fd00::2]:40000" in row
