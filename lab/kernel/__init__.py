"""Realisation in the kernel: a plan (lab.model.plan) carried out, and found again afterwards.

- `netns`:     namespaces, veth pairs, addresses, routes, sysctls and TUN devices via pyroute2;
               `privilege_problem()`, the one check of whether the lab can run here.
- `ownership`: what a lab owns, found without its state file (namespaces, marks, processes).
- `state`:     the lab's run directory and its state.json, written atomically.
- `capture`:   tcpdump on a node's interface, a copy of a stack node's own pcap.
- `tshark`:    a capture read back: checksums, retransmissions, SYN options, against the trace.
- `impair/`:   impairment backends: tc netem where the kernel has it, an NFQUEUE emulator where not.
"""
