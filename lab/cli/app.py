"""`tcplab app start|list|stop`: server apps on a running stack node, without editing its topology.

    tcplab app start NODE http-server --port 80 [--option root=/srv]...   prints the app's id
    tcplab app list NODE                                                   id, app, options
    tcplab app stop NODE http-server:80

Options are checked by the same function as a topology file's `apps` (lab.node.apps.registry), before
the daemon is asked; `--option KEY=VALUE` values are read as YAML scalars (80 is a number).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from lab.cli import root as cli
from lab.node.control import ControlClient, ControlError

NodeArg = Annotated[str, typer.Argument(help="A stack node of a running lab.")]
LabOpt = Annotated[str | None, typer.Option("--lab", help="The lab (default: the only one up).")]
SocketOpt = Annotated[Path | None, typer.Option("--socket", help="Talk to this control socket instead.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings as an options mapping; a pair without `=` is a one-line error."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            cli.fail(f"--option {pair!r}: write KEY=VALUE, e.g. --option root=/srv")
        try:
            options[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            options[key] = value
    return options


def _call(node: str, lab: str | None, socket: Path | None, op: str, args: dict[str, Any]) -> Any:
    from lab.cli.node import socket_path

    try:
        return ControlClient(socket_path(node, lab, socket), timeout=30).call(op, args)
    except ControlError as exc:
        cli.fail(exc.message if exc.type in ("failed", "bad_args") else str(exc))


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Start, list and stop server apps on a stack node.", no_args_is_help=True)
    app.add_typer(group, name="app")

    @group.command("start")
    def start(
        node: NodeArg,
        name: Annotated[str, typer.Argument(help="The server app: http-server, echo-server, bulk-server.")],
        port: Annotated[int | None, typer.Option(help="The port it listens on (its `port` option).")] = None,
        option: Annotated[
            list[str] | None, typer.Option("--option", help="Another option, KEY=VALUE (repeatable).")
        ] = None,
        lab: LabOpt = None,
        socket: SocketOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Start a server app on NODE's stack, as a topology file's `apps` would."""
        from lab.node.apps.registry import server_problem

        options = parse_options(option or [])
        if port is not None:
            options["port"] = port
        problem = server_problem(name, options)
        if problem:
            cli.fail(problem)
        result = _call(node, lab, socket, "start_app", {"name": name, "options": options})
        if json_out:
            cli.print_json(result)
        else:
            cli.stdout.print(f"started {result['id']} on {node}", markup=False, highlight=False)

    @group.command("list")
    def list_(node: NodeArg, lab: LabOpt = None, socket: SocketOpt = None, json_out: JsonOpt = False) -> None:
        """The apps running on NODE's stack."""
        apps = _call(node, lab, socket, "status", {})["apps"]
        if json_out:
            cli.print_json(apps)
            return
        table = Table(title=f"apps on {node}", title_justify="left")
        for column in ("id", "app", "options"):
            table.add_column(column)
        for app_id, info in sorted(apps.items()):
            options = ", ".join(f"{k}={v}" for k, v in info["options"].items() if v is not None)
            table.add_row(app_id, info["name"], options)
        cli.stdout.print(table)

    @group.command("stop")
    def stop(
        node: NodeArg,
        app_id: Annotated[str, typer.Argument(help="The app's id, as `app list` shows it (http-server:80).")],
        lab: LabOpt = None,
        socket: SocketOpt = None,
    ) -> None:
        """Stop one app on NODE's stack (its open connections are cancelled with it)."""
        _call(node, lab, socket, "stop_app", {"id": app_id})
        cli.stdout.print(f"stopped {app_id} on {node}", markup=False, highlight=False)
