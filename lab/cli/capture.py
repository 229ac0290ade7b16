"""`tcplab capture NODE [LINK]`: a pcap of what a node saw.

With LINK (a link name as `tcplab status` shows it, its index, or an interface name such as eth0
or tun0), tcpdump records that interface inside the node's namespace for --duration seconds (or
until Ctrl-C). Without LINK, a stack node's own pcap sink (every packet its stack sent or
received so far, before any loss on the link) is copied; a kernel or router node gets tcpdump on
its first link. `--check` then reads the file with tshark (checksum validation on) and prints
malformed packets, bad checksums and retransmissions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from lab.cli import root as cli


def register(app: typer.Typer) -> None:
    @app.command()
    def capture(
        node: Annotated[str, typer.Argument(help="The node whose traffic to record.")],
        link: Annotated[
            str | None, typer.Argument(help="Link name, link index or interface (default: see above).")
        ] = None,
        duration: Annotated[float, typer.Option(help="Seconds tcpdump records (a LINK capture).")] = 10.0,
        output: Annotated[Path | None, typer.Option(help="The pcap to write.")] = None,
        lab: Annotated[str | None, typer.Option(help="Lab name (default: the only running lab).")] = None,
        check: Annotated[bool, typer.Option("--check", help="Read the capture back with tshark.")] = False,
        json_out: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Record a node's packets to a pcap: tcpdump on a link, or the stack node's own sink."""
        cli.require_lab_privileges()
        from lab.kernel import capture as cap
        from lab.kernel import tshark
        from lab.lab import Lab

        running = Lab.attach(cli.pick_lab(lab))
        try:
            plan = running.plan.node(node)
        except KeyError as exc:
            cli.fail(str(exc).strip("'\""))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        report: dict[str, Any] = {"lab": running.name, "node": node}
        try:
            if link is None and plan.tun is not None:
                path = output or Path(f"{node}-sink-{stamp}.pcap")
                report.update(source="pcap sink", packets=cap.copy_sink(running.run_dir, node, path))
            else:
                ifname = cap.resolve_ifname(running, node, link)
                path = output or Path(f"{node}-{ifname}-{stamp}.pcap")
                recording = cap.LinkCapture.start(
                    running, node, ifname, path.resolve(), max_seconds=duration + 30
                )
                try:
                    time.sleep(duration)
                except KeyboardInterrupt:
                    pass
                stats = recording.stop()
                report.update(source=f"tcpdump on {ifname}", packets=stats.captured,
                              dropped_by_kernel=stats.dropped_by_kernel)  # fmt: skip
            report["output"] = str(path)
            if check:
                report["check"] = tshark.analyse(path).summary()
        except cap.CaptureError as exc:
            cli.fail(str(exc))
        if json_out:
            cli.print_json(report)
            return
        line = f"{node}: {report['packets']} packets from the {report['source']} -> {report['output']}"
        if report.get("dropped_by_kernel"):
            line += f" ({report['dropped_by_kernel']} dropped by the kernel: incomplete)"
        cli.stdout.print(line, markup=False, highlight=False)
        if check:
            cli.stdout.print(f"tshark: {report['check']}", markup=False, highlight=False)
