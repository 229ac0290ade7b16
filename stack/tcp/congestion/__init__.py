"""Congestion control, pluggable by name: `create("cubic", ...)`, `create("newreno", ...)`."""

# Imported for their @register side effect: importing the package makes both names available.
from stack.tcp.congestion import cubic, newreno
from stack.tcp.congestion.base import CongestionControl, available, create, register, switch

__all__ = ["CongestionControl", "available", "create", "cubic", "newreno", "register", "switch"]
