"""The `tcplab` console script. The stack installs without the lab's packages (`pip install tcplab`);
the command line needs them (`pip install 'tcplab[lab]'`), and says so in one line when they are
missing instead of a traceback."""

from __future__ import annotations

import sys

LAB_EXTRA = "pip install 'tcplab[lab]'"


def main() -> None:
    try:
        from lab.cli import app
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in ("lab", "stack"):
            raise  # our own module: a bug, not a missing install
        sys.stderr.write(f"tcplab: the lab's packages are not installed (no {exc.name}): {LAB_EXTRA}\n")
        raise SystemExit(2) from None
    app()


if __name__ == "__main__":
    main()
