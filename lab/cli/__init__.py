"""The `tcplab` command line: one Typer app, one module per command group.

- `root`:     the app (the console script `tcplab` and `python -m lab.cli`) and the helpers every
              command uses.
- `lifecycle`: the commands on a lab as a whole: up, down, status, exec.
- `capture`, `check`, `demo`, `impair`, `viz` (ladder, plot, demo-traces), `drill`, and `node`
  (http, echo, transfer, run, ss, trace through a node daemon's control socket).
Each module defining `register(app)` is loaded by `root`, `lifecycle` first, then in name order.
"""

from lab.cli.root import app

__all__ = ["app"]
