"""Command modules of the `tcplab` CLI: each defines `register(app)` (see lab/cli.py)."""
