"""`tcplab drill`: see lab.drill.cli."""

from lab.drill.cli import register

__all__ = ["register"]
