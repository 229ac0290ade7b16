"""tcplab's user-space TCP/IP stack.

A sans-I/O core (packet codecs, the TCP connection state machine, the host) that never reads a
clock, opens a socket or draws randomness of its own, plus two drivers that feed it: the TUN
driver (`stack.tun`) and the simulated network (`stack.sim`). See `stack.driver` for the pump rule.
"""
