"""`tcplab drill SCRIPT.pkt...` / `tcplab drill --corpus DIR`: run packetdrill scripts against the stack.

Registered by `register(app)`, the hook lab.cli.root uses for its command modules; the
interpreter itself is the top-level package `drill`.
Exit status: 0 when every script passed, 1 when one failed or was unsupported, 2 on a usage
error. With --corpus every script under DIR runs (in parallel processes) and a summary follows:
counts, per directory with --json, the top unsupported constructs and failure reasons.
`--ip_version ipv4|ipv4-mapped-ipv6|ipv6` runs the scripts over that IP version whatever their
own `--ip_version` line says, as packetdrill's command line overrides a script's options.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from drill.addresses import IP_VERSIONS
from drill.corpus import corpus_summary, find_scripts, run_corpus, summary_text
from drill.report import ScriptResult, summary
from drill.runner import PROFILES, run_file


def run_scripts(
    scripts: list[Path],
    *,
    profile: str = "linux",
    tolerance_usecs: int | None = None,
    defines: frozenset[str] = frozenset(),
    ip_version: str | None = None,
) -> list[ScriptResult]:
    return [
        run_file(p, profile=profile, tolerance_usecs=tolerance_usecs, defines=defines, ip_version=ip_version)
        for p in scripts
    ]


def register(app: typer.Typer) -> None:
    @app.command()
    def drill(
        scripts: Annotated[
            list[Path] | None, typer.Argument(help="packetdrill scripts (.pkt) to run.")
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
        profile: Annotated[
            str, typer.Option(help=f"Stack settings: {' or '.join(PROFILES)} (linux: what scripts assume).")
        ] = "linux",
        tolerance_usecs: Annotated[
            int | None, typer.Option(help="Timing tolerance (default: the script's, else 4000).")
        ] = None,
        corpus: Annotated[
            Path | None, typer.Option(help="Run every .pkt script under this directory and summarise.")
        ] = None,
        define: Annotated[
            list[str] | None, typer.Option(help="Make `#ifdef NAME` blocks active (repeatable).")
        ] = None,
        jobs: Annotated[int | None, typer.Option(help="Processes for --corpus (default: CPUs).")] = None,
        ip_version: Annotated[
            str | None,
            typer.Option(
                "--ip_version", "--ip-version",
                help=f"Run over {', '.join(IP_VERSIONS)}, whatever the scripts' own --ip_version says.",
            ),
        ] = None,
    ) -> None:
        """Run packetdrill scripts against the stack on a virtual clock."""
        defines = frozenset(define or ())
        if ip_version is not None and ip_version not in IP_VERSIONS:
            choices = ", ".join(IP_VERSIONS)
            Console(stderr=True).print(f"tcplab: --ip_version {ip_version}: choose from {choices}")
            raise typer.Exit(2)
        if corpus is not None:
            _corpus(corpus, json_out, profile, tolerance_usecs, defines, jobs, ip_version)
        else:
            _drill(scripts or [], json_out, profile, tolerance_usecs, defines, ip_version)


def _corpus(
    root: Path,
    json_out: bool,
    profile: str,
    tolerance: int | None,
    defines: frozenset[str],
    jobs: int | None,
    ip_version: str | None,
) -> None:
    err = Console(stderr=True, soft_wrap=True)
    if profile not in PROFILES:
        err.print(f"tcplab: unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
        raise typer.Exit(2)
    if not root.is_dir() or not find_scripts(root):
        err.print(f"tcplab: --corpus {root}: not a directory holding .pkt scripts")
        raise typer.Exit(2)
    results = run_corpus(
        root, profile=profile, tolerance_usecs=tolerance, defines=defines, jobs=jobs, ip_version=ip_version
    )
    data = corpus_summary(results)
    if json_out:
        out = {"results": [r.to_json() for r in results], "summary": data}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sys.stdout.write(summary_text(data) + "\n")
    if data["passed"] != data["scripts"]:
        raise typer.Exit(1)


def _drill(
    scripts: list[Path],
    json_out: bool,
    profile: str,
    tolerance_usecs: int | None,
    defines: frozenset[str],
    ip_version: str | None,
) -> None:
    err = Console(stderr=True, soft_wrap=True)
    if not scripts:
        err.print("tcplab: drill needs scripts (.pkt) or --corpus DIR")
        raise typer.Exit(2)
    if profile not in PROFILES:
        err.print(f"tcplab: unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
        raise typer.Exit(2)
    results = run_scripts(
        scripts, profile=profile, tolerance_usecs=tolerance_usecs, defines=defines, ip_version=ip_version
    )
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
