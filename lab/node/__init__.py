"""The node: its daemon, the control protocol, scripts and the applications it runs."""
