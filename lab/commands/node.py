"""The node commands (http, echo, transfer, run, ss, trace): see lab.node_cli."""

from lab.node_cli import register

__all__ = ["register"]
