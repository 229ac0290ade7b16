"""`tcplab ladder`, `tcplab plot`, `tcplab demo-traces`: pictures of TCP drawn from trace files.

    tcplab ladder TRACE.jsonl|--node NODE [--peer OTHER.jsonl] [--format text|svg] [-o FILE] [--conn ID]
    tcplab plot TRACE.jsonl|--node NODE [-o FILE.png] [--conn ID]

A bare name that is not a file (`tcplab ladder stack`) means the running lab's node, and says so
when a directory of that name is here; `--node` says it explicitly.
    tcplab demo-traces DIR [--loss P] [--body N]   # the sim demo's two traces, no root needed

`--demo` on `ladder` and `plot` draws the sim demo's exchange directly (client's trace, with the
server's as the peer). The drawing functions are in lab.viz.ladder and lab.viz.plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lab.cli import root as cli
from lab.viz.load import TraceError, TraceSource


def register(app: typer.Typer) -> None:
    @app.command()
    def ladder(
        trace: Annotated[Path | None, typer.Argument(help="A trace file (JSON lines) or a lab node.")] = None,
        peer: Annotated[Path | None, typer.Option(help="The other end's trace.")] = None,
        lab: Annotated[str | None, typer.Option(help="The lab, when TRACE names a node.")] = None,
        node: Annotated[str | None, typer.Option(help="A running lab's node (instead of TRACE).")] = None,
        fmt: Annotated[str, typer.Option("--format", help="text or svg.")] = "text",
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here, not stdout.")] = None,
        conn: Annotated[str | None, typer.Option(help="Connection (local>remote, or a unique part).")] = None,
        demo: Annotated[bool, typer.Option("--demo", help="Draw the sim demo's exchange.")] = False,
        loss: Annotated[float, typer.Option(help="With --demo: loss probability on the link.")] = 0.0,
        body: Annotated[int, typer.Option(help="With --demo: response body octets.")] = 1000,
        seed: Annotated[int, typer.Option(help="With --demo: seed of the simulated network.")] = 1,
    ) -> None:
        """The sequence (ladder) diagram of one connection of a trace."""
        from lab.viz.ladder_svg import render_ladder_svg
        from lab.viz.ladder_text import render_ladder_text

        if fmt not in ("text", "svg", "ladder"):
            cli.fail(f"unknown format {fmt!r}: use text or svg")
        source, other = _sources(trace, peer, demo, loss, body, seed, lab, node)
        render = render_ladder_svg if fmt == "svg" else render_ladder_text
        try:
            drawing = render(source, other, conn)
        except TraceError as exc:
            cli.fail(str(exc))
        if output is None:
            typer.echo(drawing, nl=False)
        else:
            output.write_text(drawing, encoding="utf-8")
            cli.stderr.print(f"wrote {output}", markup=False, highlight=False)

    @app.command()
    def plot(
        trace: Annotated[Path | None, typer.Argument(help="A trace file (JSON lines) or a lab node.")] = None,
        lab: Annotated[str | None, typer.Option(help="The lab, when TRACE names a node.")] = None,
        node: Annotated[str | None, typer.Option(help="A running lab's node (instead of TRACE).")] = None,
        output: Annotated[Path, typer.Option("--output", "-o", help="PNG, SVG or PDF, by extension.")] = Path(
            "tcp.png"
        ),
        conn: Annotated[str | None, typer.Option(help="Connection (local>remote, or a unique part).")] = None,
        demo: Annotated[bool, typer.Option("--demo", help="Plot the sim demo's server.")] = False,
        loss: Annotated[float, typer.Option(help="With --demo: loss probability on the link.")] = 0.05,
        body: Annotated[int, typer.Option(help="With --demo: response body octets.")] = 100_000,
        seed: Annotated[int, typer.Option(help="With --demo: seed of the simulated network.")] = 1,
    ) -> None:
        """cwnd, ssthresh, srtt and bytes in flight of one connection over time."""
        from lab.viz.plot import plot_connection

        if demo:
            from lab.viz import demo_traces

            source: TraceSource = demo_traces(seed=seed, body_bytes=body, loss=loss).server
        elif trace is None and node is None:
            cli.fail("name a trace file or --node NODE (or use --demo)")
        else:
            source = _node_or_file(trace, lab, node)
        if output.suffix.lower() not in (".png", ".svg", ".pdf"):
            cli.fail(f"{output}: the extension must be .png, .svg or .pdf")
        try:
            written = plot_connection(source, output, conn)
        except TraceError as exc:
            cli.fail(str(exc))
        cli.stderr.print(f"wrote {written}", markup=False, highlight=False)

    @app.command("demo-traces")
    def demo_traces_cmd(
        directory: Annotated[Path, typer.Argument(help="Where to write client/server.trace.jsonl.")],
        loss: Annotated[float, typer.Option(help="Loss probability on the link (both ways).")] = 0.0,
        body: Annotated[int, typer.Option(help="Response body octets.")] = 1000,
        seed: Annotated[int, typer.Option(help="Seed of the simulated network.")] = 1,
    ) -> None:
        """Run the sim demo's exchange and write both ends' traces (no root needed)."""
        from lab.viz import write_demo_traces

        for path in write_demo_traces(directory, seed=seed, body_bytes=body, loss=loss):
            cli.stdout.print(str(path), markup=False, highlight=False)


def _node_or_file(trace: Path | None, lab: str | None, node: str | None = None) -> Path:
    from lab.viz.nodes import resolve_trace

    try:
        path, note = resolve_trace(trace or Path(), lab, node)
    except ValueError as exc:
        cli.fail(str(exc))
    if note:
        cli.stderr.print(f"tcplab: {note}", markup=False, highlight=False, soft_wrap=True)
    return path


def _sources(
    trace: Path | None, peer: Path | None, demo: bool, loss: float, body: int, seed: int,
    lab: str | None = None, node: str | None = None,
) -> tuple[TraceSource, TraceSource | None]:
    if demo:
        from lab.viz import demo_traces

        traces = demo_traces(seed=seed, body_bytes=body, loss=loss)
        return traces.client, traces.server
    if trace is None and node is None:
        cli.fail("name a trace file or --node NODE (or use --demo)")
    path = _node_or_file(trace, lab, node)
    if peer is None and path != trace:  # a node: draw the far end from its own trace when it has one
        from lab.viz.nodes import peer_trace_file

        peer = peer_trace_file(path)
    return path, peer
