"""`tcplab check [TOPOLOGY]`: up, the built-in scenarios (lab.scenarios.check), a pass/fail table, down.

Exit codes: 0 when every scenario passes, 1 when one fails, 2 when the lab cannot run here or the
check cannot run on the topology, 130 on Ctrl-C (SIGINT), after teardown.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from lab.cli import root as cli


def _figures(figures: dict[str, Any]) -> str:
    return "\n".join(f"{key}: {value}" for key, value in figures.items())


def show(report: dict[str, Any]) -> None:
    client, server = report["client"], report["server"]
    table = Table(
        title=(f"tcplab check {report['topology']} (lab {report['lab']}): "
               f"{client['node']} {client['address']} -> {server['node']} {server['address']}"),
        title_justify="left",
        show_lines=True,
    )  # fmt: skip
    table.add_column("scenario", style="bold")
    table.add_column("result")
    table.add_column("figures")
    table.add_column("why it failed")
    for row in report["scenarios"]:
        verdict = "[green]pass[/green]" if row["ok"] else "[red]FAIL[/red]"
        table.add_row(f"{row['name']}\n[dim]{row['description']}[/dim]", verdict,
                      _figures(row["figures"]), row["detail"])
    if server.get("apps_started"):
        table.caption = f"started on {server['node']}: {', '.join(server['apps_started'])}"
    cli.stdout.print(table)
    colour = "green" if report["ok"] else "red"
    cli.stdout.print(f"[{colour}]{report['passed']}/{report['total']} scenarios passed[/{colour}]")


def register(app: typer.Typer) -> None:
    @app.command()
    def check(
        topology: Annotated[
            str, typer.Argument(help="Topology file (default: the two-node lab).")
        ] = cli.DEFAULT_TOPOLOGY,
        json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
        name: Annotated[
            str | None, typer.Option(help="Lab name to run under (default: check<pid>).")
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed of the link emulators.")] = 0,
    ) -> None:
        """Up, run the built-in scenarios (handshake and close, echo, HTTP GET/POST with digests,
        bulk over an impaired link, no leftovers), print a pass/fail table, down. What CI runs."""
        cli.require_lab_privileges()
        from lab.lab import LabError
        from lab.model.topology import TopologyError
        from lab.scenarios.check import CheckError, run_check

        try:
            with cli.stderr.status("tcplab check", spinner="dots") as status:
                report = run_check(topology, name=name, seed=seed,
                                   progress=lambda msg: status.update(f"tcplab check: {msg}"))
        except KeyboardInterrupt:
            cli.fail("interrupted: the lab is torn down", code=130)
        except (TopologyError, LabError, CheckError) as exc:
            cli.fail(str(exc), code=2)
        if json_out:
            cli.print_json(report)
        else:
            show(report)
        if not report["ok"]:
            raise typer.Exit(1)
