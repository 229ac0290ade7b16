"""The `tcplab` command line: thin Typer commands over the lab API (lab.lab).

Output rules: tables (rich) on stdout for people, `--json` on stdout for machines, logs and
errors on stderr. Without root or /dev/net/tun, lab commands say so in one line and exit 2.

Adding commands (demo, check, http, echo, transfer, run, ss, trace, impair, drill, ...): put a
module in the package `lab/cli/` that defines

    def register(app: typer.Typer) -> None:
        @app.command()
        def demo(...) -> None: ...

Every module there is imported and registered when this module loads, in name order (`lifecycle`,
the commands on a lab as a whole, first: they lead the help); no edit to this file is needed.
Helpers for them live here: `require_lab_privileges()`, `pick_lab(name)`, `fail(message)`,
`print_json(data)`, `stdout`/`stderr` consoles, `DEFAULT_TOPOLOGY`.
"""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from lab.kernel.netns import privilege_problem
from lab.lab import Lab

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


# -- command modules ---------------------------------------------------------------------------

FIRST = ("lifecycle",)  # up, down, status, exec: registered first, so they lead `tcplab --help`


def _register_command_modules() -> None:
    try:
        package = importlib.import_module("lab.cli")
    except ImportError:
        return
    modules = sorted(pkgutil.iter_modules(package.__path__), key=lambda m: (m.name not in FIRST, m.name))
    for info in modules:
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
