"""Applications a lab user runs between nodes: echo, HTTP/1.1, bulk transfer.

Every app is written against `lab.node.apps.net.Net`, an asyncio-streams-shaped interface, so the
same code runs over kernel sockets (`KernelNet`), the stack on the simulated network, and the
stack over TUN on a lab node. Apps read time only from the running loop (virtual in simulation).
"""
