"""Congestion control, pluggable by name: `create("cubic", ...)`, `create("newreno", ...)`."""

from stack.tcp.congestion.base import CongestionControl, available, create, register

__all__ = ["CongestionControl", "available", "create", "register"]
