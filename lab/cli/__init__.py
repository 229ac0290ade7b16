"""The `tcplab` command line: one Typer app (lab.cli.root), one module per command group.

Each module here that defines `register(app)` is loaded by lab.cli.root, in name order.
"""

from lab.cli.root import app

__all__ = ["app"]
