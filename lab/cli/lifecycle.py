"""`tcplab up|down|status|exec`: the commands on a lab as a whole.

    tcplab up [TOPOLOGY] [--name NAME] [--seed N]   namespaces, links, impairments, node daemons
    tcplab down [LAB | --all]                        stop its processes, delete its namespaces
    tcplab status [LAB]                              nodes, daemons, links and impairment backends
    tcplab exec NODE [--lab LAB] -- CMD...           any command inside a node's namespace

Registered first by lab.cli.root, so that they lead `tcplab --help`.
"""

from __future__ import annotations

import subprocess
from typing import Annotated, Any

import typer
from rich.table import Table

from lab.cli import root as cli
from lab.inventory import lab_status
from lab.kernel import container
from lab.kernel.requirements import tool_problem
from lab.kernel.state import read_state
from lab.lab import Lab, LabError, nsenter_argv
from lab.model.topology import TopologyError


def _status_table(status: dict[str, Any]) -> Table:
    table = Table(title=f"lab {status['lab']}", title_justify="left")
    for column in ("node", "kind", "address", "namespace", "interfaces", "daemon / container"):
        table.add_column(column)
    for name, node in status["nodes"].items():
        if node["kind"] == "container":
            daemon = f"{node.get('image')} {node.get('container_id')} ({node.get('health')})"
        elif node["daemon_pid"]:
            daemon = f"{node['daemon_pid']} ({'alive' if node['daemon_alive'] else 'dead'})"
        else:
            daemon = "-"
        ns = node["netns"] if node["netns_present"] else f"{node['netns']} (missing)"
        six = node.get("interfaces6") or {}  # absent in the state of a lab from before IPv6
        faces = "\n".join(" ".join(filter(None, (k, v, six.get(k)))) for k, v in node["interfaces"].items())
        address = "\n".join(filter(None, (node["address"], node.get("address6")))) or "-"
        table.add_row(name, node["kind"], address, ns, faces, daemon)
    return table


def _links_table(status: dict[str, Any]) -> Table:
    table = Table(title="links", title_justify="left")
    for column in ("link", "subnet", "mtu", "a->b", "b->a"):
        table.add_column(column)
    for link in status["links"]:
        subnets = "\n".join(filter(None, (link["subnet"], link.get("subnet6"))))
        table.add_row(link["name"], subnets, str(link["mtu"]), link["a_to_b"], link["b_to_a"])
    backends = status.get("impairments") or {}
    if backends:
        table.caption = "impairment backend: " + ", ".join(f"{k}: {v}" for k, v in backends.items())
    return table


def _show(status: dict[str, Any]) -> None:
    cli.stdout.print(_status_table(status))
    if status["links"]:
        cli.stdout.print(_links_table(status))


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        topology: Annotated[
            str, typer.Argument(help="Topology file (default: the two-node lab).")
        ] = cli.DEFAULT_TOPOLOGY,
        name: Annotated[
            str | None, typer.Option(help="Run under another lab name (two labs from one file).")
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed of the link emulators.")] = 0,
        json_out: Annotated[bool, typer.Option("--json", help="Print the lab's status as JSON.")] = False,
    ) -> None:
        """Bring a lab up: namespaces, links, addresses, routes, impairments, node daemons."""
        cli.require_lab_privileges()
        try:
            with cli.stderr.status(f"bringing up {topology}", spinner="dots"):
                lab = Lab.up(topology, name=name, seed=seed)
        except (TopologyError, LabError) as exc:
            cli.fail(str(exc))
        except Exception as exc:  # rolled back already (Lab.up): one line, never a traceback
            cli.fail(f"up failed and was rolled back: {cli.one_line_error(exc)}")
        status = lab.status()
        if json_out:
            cli.print_json(status)
        else:
            _show(status)

    @app.command()
    def down(
        lab: Annotated[
            str | None, typer.Argument(help="The lab to tear down (default: the only one up).")
        ] = None,
        all_labs: Annotated[bool, typer.Option("--all", help="Tear down every lab.")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print what was removed as JSON.")] = False,
    ) -> None:
        """Tear a lab down: stop its processes, delete its namespaces and run files. Idempotent."""
        cli.require_lab_privileges()
        if all_labs:
            reports = Lab.down_all()
        elif lab is None and not Lab.running():
            reports = []  # nothing up: down is idempotent, so this is success
        else:
            reports = [Lab.down(cli.pick_lab(lab))]
        if json_out:
            cli.print_json(reports)
            return
        if not reports:
            cli.stderr.print("tcplab: no lab was up")
        for report in reports:
            cli.stderr.print(
                f"tcplab: {report['lab']} down: {len(report['namespaces'])} namespaces, "
                f"{len(report['killed'])} processes stopped"
                + (f", {len(report['containers'])} containers removed" if report.get("containers") else ""),
                highlight=False,
            )

    @app.command()
    def status(
        lab: Annotated[str | None, typer.Argument(help="One lab (default: every lab that is up).")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    ) -> None:
        """Show labs: nodes, kinds, addresses, namespaces, daemons, links and impairment backends."""
        cli.require_lab_privileges()
        names = [lab] if lab else Lab.running()
        statuses = [lab_status(n, read_state(n)) for n in names]
        if json_out:
            cli.print_json(statuses)
            return
        if not statuses:
            cli.stderr.print("tcplab: no lab is up")
        for one in statuses:
            _show(one)

    @app.command(
        "exec",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def exec_(
        node: Annotated[str, typer.Argument(help="The node whose namespace runs the command.")],
        command: Annotated[list[str], typer.Argument(help="The command, after --.")],
        lab: Annotated[str | None, typer.Option(help="The lab (needed when several are up).")] = None,
    ) -> None:
        """Run any command inside a node's network namespace: tcplab exec NODE -- CMD..."""
        cli.require_lab_privileges()
        name = cli.pick_lab(lab)
        try:
            if container.is_container_node(name, node):  # inside the container: its files, its tools
                raise typer.Exit(container.exec_stream(name, node, command))
            argv = nsenter_argv(name, node, command)
        except (LabError, container.ContainerError) as exc:
            cli.fail(str(exc))
        if command and "/" not in command[0] and (problem := tool_problem(command[0])):
            cli.fail(problem, code=127)  # what a shell says, plus the package to install
        raise typer.Exit(subprocess.run(argv, check=False).returncode)
