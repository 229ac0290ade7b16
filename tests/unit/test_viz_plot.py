"""lab.viz.plot: the congestion plot is written, PNG of the asked size or SVG, loss marked."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

from typer.testing import CliRunner

from lab.cli import app
from lab.viz import demo_traces, write_demo_traces
from lab.viz.plot import plot_connection


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_of_a_lossy_transfer_writes_a_png_of_the_asked_size(tmp_path: Path) -> None:
    traces = demo_traces(body_bytes=100_000, loss=0.05)
    out = plot_connection(traces.server, tmp_path / "cwnd.png", size=(900, 600))
    assert png_size(out) == (900, 600)


def test_plot_as_svg_by_extension(tmp_path: Path) -> None:
    traces = demo_traces()
    out = plot_connection(traces.client, tmp_path / "cwnd.svg")
    assert ET.parse(out).getroot().tag.endswith("svg")


def test_commands_draw_from_trace_files(tmp_path: Path) -> None:
    client, server = write_demo_traces(tmp_path, body_bytes=3000)
    runner = CliRunner()
    result = runner.invoke(app, ["ladder", str(client), "--peer", str(server)])
    assert result.exit_code == 0, result.output
    assert "SYN seq=0 win=65535" in result.output
    svg = tmp_path / "ladder.svg"
    args = ["ladder", str(client), "--peer", str(server), "--format", "svg", "-o", str(svg)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ET.parse(svg)
    png = tmp_path / "plot.png"
    result = runner.invoke(app, ["plot", str(server), "--output", str(png)])
    assert result.exit_code == 0, result.output
    assert png_size(png) == (1000, 650)
    result = runner.invoke(app, ["ladder", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 1
