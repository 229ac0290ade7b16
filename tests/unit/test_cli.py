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
    "up", "down", "status", "exec",  # lab.cli.root
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
