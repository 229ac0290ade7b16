"""`tcplab drill SCRIPT.pkt...`: run packetdrill scripts against the stack.

Registered by `register(app)`, the hook lab.cli.root uses for its command modules; the
interpreter itself is the top-level package `drill`.
Exit status: 0 when every script passed, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from drill.report import ScriptResult, summary
from drill.runner import PROFILES, run_file


def run_scripts(
    scripts: list[Path], *, profile: str = "linux", tolerance_usecs: int | None = None
) -> list[ScriptResult]:
    return [run_file(p, profile=profile, tolerance_usecs=tolerance_usecs) for p in scripts]


def register(app: typer.Typer) -> None:
    @app.command()
    def drill(
        scripts: Annotated[list[Path], typer.Argument(help="packetdrill scripts (.pkt) to run.")],
        json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
        profile: Annotated[
            str, typer.Option(help=f"Stack settings: {' or '.join(PROFILES)} (linux: what scripts assume).")
        ] = "linux",
        tolerance_usecs: Annotated[
            int | None, typer.Option(help="Timing tolerance (default: the script's, else 4000).")
        ] = None,
    ) -> None:
        """Run packetdrill scripts against the stack on a virtual clock (the simulated network)."""
        # No option to run against a lab's stack node over TUN in real time: not offered until built.
        _drill(scripts, json_out, profile, tolerance_usecs)


def _drill(scripts: list[Path], json_out: bool, profile: str, tolerance_usecs: int | None) -> None:
    err = Console(stderr=True, soft_wrap=True)
    if profile not in PROFILES:
        err.print(f"tcplab: unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
        raise typer.Exit(2)
    results = run_scripts(scripts, profile=profile, tolerance_usecs=tolerance_usecs)
    if json_out:
        data = {"results": [r.to_json() for r in results], "summary": summary(results)}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        out = Console(highlight=False, soft_wrap=True)
        for r in results:
            out.print(r.text(), markup=False, style=None if r.passed else "red")
        s = summary(results)
        out.print(f"{s['passed']}/{s['scripts']} passed", markup=False)
    if not all(r.passed for r in results):
        raise typer.Exit(1)
