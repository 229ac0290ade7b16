"""The node: what runs inside a stack node's namespace, and how the outside talks to it.

- `daemon`:  `python -m lab.node.daemon`: owns tun0, runs the stack, its apps and the control
             endpoint; trace and log go to the run directory. Its parts:
  - `tun_setup`:  entering the node's namespace and configuring tun0 (IPv4, IPv6, MTU);
  - `supervisor`: the apps the daemon keeps running (servers) or runs to a result (clients);
  - `ring`:       the in-memory trace ring and the `trace` op that reads it.
- `control`: the control protocol (JSON lines over a Unix socket, mode 0600), server and client.
- `scripts`: a user's Python script run against the node's stack (`tcplab run`).
- `apps/`:   echo, HTTP/1.1 (h11) server and client, bulk transfer, registered by name; written
             against one streams interface, so they also run on kernel sockets and in simulation.
"""
