"""`python -m lab.cli ...` is the `tcplab` command."""

from lab.cli import app

app()
