"""Deterministic simulated network: a virtual-time asyncio loop, seeded links, and hosts on them."""
