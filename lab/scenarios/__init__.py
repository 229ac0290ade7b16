"""Scenarios over a lab: `tcplab check`, the demos and the pytest plugin."""
