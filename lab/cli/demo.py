"""`tcplab demo`: the product's main job in one command.

`tcplab demo --sim` runs on the simulated network (no root needed); plain `tcplab demo` brings up
the default topology on real namespaces, does the same HTTP request across the stack, and tears
the lab down. Both print the response summary and each end's state transitions; `--json` prints
one document with `client.transitions` and `server.transitions`.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lab.cli import root as cli


def show(result: dict[str, Any]) -> None:
    req = result["request"]
    # Piped or in CI: no terminal width to respect, and a digest cut in two cannot be compared.
    out = cli.stdout if sys.stdout.isatty() else Console(soft_wrap=True, width=200)
    where = "simulated network" if result["mode"] == "sim" else f"lab {result.get('lab', '')}"
    out.print(f"[bold]tcplab demo[/bold] on the {where}")
    out.print(
        f"GET {req['url']} -> {req['status']} {req['reason']}, {req['body_length']} bytes, "
        f"sha256 {req['sha256'][:16]}... ({'verified' if req.get('digest_ok') else 'NOT verified'}), "
        f"connect {req['connect_time'] * 1000:.1f} ms, total {req['total'] * 1000:.1f} ms"
    )
    for end in ("client", "server"):
        info = result[end]
        table = Table(title=f"{end} {info['connection']}", title_justify="left")
        table.add_column("time (s)", justify="right")
        table.add_column("from")
        table.add_column("to", style="bold")
        table.add_column("because of")
        for step in info["steps"]:
            table.add_row(f"{step['time']:.6f}", step["old"], step["new"], step["cause"])
        out.print(table)
    verdict = "[green]as the textbook says[/green]" if result["ok"] else "[red]NOT as expected[/red]"
    out.print(f"state sequences: {verdict}")


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        sim: Annotated[
            bool, typer.Option("--sim", help="Run on the simulated network (no root needed).")
        ] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
        seed: Annotated[int, typer.Option(help="Seed of the simulated network.")] = 1,
        topology: Annotated[str, typer.Option(help="Topology for the real demo.")] = cli.DEFAULT_TOPOLOGY,
    ) -> None:
        """One HTTP request across the stack, then the state transitions of both ends."""
        if sim:
            from lab.scenarios.demo_sim import run_sim_demo

            result = run_sim_demo(seed=seed)
        else:
            cli.require_lab_privileges()
            from lab.scenarios.demo_real import run_real_demo

            result = run_real_demo(topology)
        if json_out:
            cli.print_json(result)
        else:
            show(result)
        if not result["ok"]:
            raise typer.Exit(1)
