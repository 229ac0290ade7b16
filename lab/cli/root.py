"""The `tcplab` command line: thin Typer commands over the lab API (lab.lab).

Output rules: tables (rich) on stdout for people, `--json` on stdout for machines, logs and
errors on stderr. Without root or /dev/net/tun, lab commands say so in one line and exit 2.

Adding commands (demo, check, http, echo, transfer, run, ss, trace, impair, drill, ...): put a
module in the package `lab/cli/` that defines

    def register(app: typer.Typer) -> None:
        @app.command()
        def demo(...) -> None: ...

Every module there is imported and registered when this module loads, in name order; no edit to
this file is needed. Helpers for them live here: `require_lab_privileges()`, `pick_lab(name)`,
`fail(message)`, `print_json(data)`, `stdout`/`stderr` consoles.
"""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil
import subprocess
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from lab.kernel import container
from lab.kernel.netns import privilege_problem
from lab.kernel.requirements import tool_problem
from lab.kernel.state import read_state
from lab.lab import Lab, LabError, lab_status, nsenter_argv
from lab.model.topology import TopologyError

DEFAULT_TOPOLOGY = "two-node.yaml"

app = typer.Typer(
    name="tcplab",
    help="A TCP/IP stack in Python and a lab that runs it over Linux network namespaces.",
    no_args_is_help=True,
    add_completion=False,
)
# Piped, tables keep whole rows (both address families make them wide), as lab.cli.node does.
stdout = Console() if sys.stdout.isatty() else Console(width=250)
stderr = Console(stderr=True, soft_wrap=True)  # messages stay one line each, piped or not
log = logging.getLogger("tcplab")


# -- helpers for every command module ---------------------------------------------------------


def fail(message: str, code: int = 1) -> NoReturn:
    stderr.print(f"tcplab: {message}", markup=False, highlight=False, soft_wrap=True)  # one whole line
    raise typer.Exit(code)


def one_line_error(exc: BaseException) -> str:
    """An unexpected error as one line; a permission error says which privileges the lab needs."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, PermissionError) or "Operation not permitted" in text or "EPERM" in text:
        text += (
            " (the lab needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN: in a container, "
            "--cap-add SYS_ADMIN --cap-add NET_ADMIN --device /dev/net/tun)"
        )
    return text


def require_lab_privileges() -> None:
    """Exit 2 with one line when the lab cannot run here (no root, no /dev/net/tun)."""
    problem = privilege_problem()
    if problem:
        fail(problem, code=2)


def pick_lab(name: str | None) -> str:
    """The lab a command means: the one named, else the only one up."""
    if name:
        return name
    running = Lab.running()
    if not running:
        fail("no lab is up: start one with `tcplab up`")
    if len(running) > 1:
        fail(f"several labs are up ({', '.join(running)}): choose one with --lab")
    return running[0]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details to stderr.")] = False,
) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format="tcplab: %(message)s",
    )


# -- up / down / status / exec -----------------------------------------------------------------


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
    stdout.print(_status_table(status))
    if status["links"]:
        stdout.print(_links_table(status))


@app.command()
def up(
    topology: Annotated[
        str, typer.Argument(help="Topology file (default: the two-node lab).")
    ] = DEFAULT_TOPOLOGY,
    name: Annotated[
        str | None, typer.Option(help="Run under another lab name (two labs from one file).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the link emulators.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the lab's status as JSON.")] = False,
) -> None:
    """Bring a lab up: namespaces, links, addresses, routes, impairments, node daemons."""
    require_lab_privileges()
    try:
        with stderr.status(f"bringing up {topology}", spinner="dots"):
            lab = Lab.up(topology, name=name, seed=seed)
    except (TopologyError, LabError) as exc:
        fail(str(exc))
    except Exception as exc:  # rolled back already (Lab.up): one line, never a traceback
        fail(f"up failed and was rolled back: {one_line_error(exc)}")
    status = lab.status()
    if json_out:
        print_json(status)
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
    require_lab_privileges()
    if all_labs:
        reports = Lab.down_all()
    elif lab is None and not Lab.running():
        reports = []  # nothing up: down is idempotent, so this is success
    else:
        reports = [Lab.down(pick_lab(lab))]
    if json_out:
        print_json(reports)
        return
    if not reports:
        stderr.print("tcplab: no lab was up")
    for report in reports:
        stderr.print(
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
    require_lab_privileges()
    names = [lab] if lab else Lab.running()
    statuses = [lab_status(n, read_state(n)) for n in names]
    if json_out:
        print_json(statuses)
        return
    if not statuses:
        stderr.print("tcplab: no lab is up")
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
    require_lab_privileges()
    name = pick_lab(lab)
    try:
        if container.is_container_node(name, node):  # inside the container: its files, its tools
            raise typer.Exit(container.exec_stream(name, node, command))
        argv = nsenter_argv(name, node, command)
    except (LabError, container.ContainerError) as exc:
        fail(str(exc))
    if command and "/" not in command[0] and (problem := tool_problem(command[0])):
        fail(problem, code=127)  # what a shell says, plus the package to install
    raise typer.Exit(subprocess.run(argv, check=False).returncode)


# -- command modules ---------------------------------------------------------------------------


def _register_command_modules() -> None:
    try:
        package = importlib.import_module("lab.cli")
    except ImportError:
        return
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue  # __main__ runs the app
        module = importlib.import_module(f"lab.cli.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)


_register_command_modules()

if __name__ == "__main__":
    app()

__all__ = ["app", "fail", "pick_lab", "print_json", "require_lab_privileges", "stderr", "stdout"]
