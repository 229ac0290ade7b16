"""What runs on a lab, end to end: the scenarios the CLI and the tests call.

- `check`:         `tcplab check`: up, handshake/echo/HTTP/bulk scenarios with verdicts, down;
                   `roles` picks its client and server, `kernel_server` serves on a kernel node,
                   `interrupt` keeps teardown whole under Ctrl-C.
- `demo_sim`:      `tcplab demo --sim`: one HTTP request on the simulated network (no root).
- `demo_real`:     `tcplab demo`: the same request over a real lab's namespaces and TUN.
- `pytest_plugin`: the `tcplab` pytest11 entry point: the `tcplab_lab` fixture and trace helpers.
"""
