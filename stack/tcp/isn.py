"""Initial sequence numbers per RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, key).

M is a 4-microsecond clock (RFC 9293 3.4.1) computed from the `now` the caller passes in; F is a
keyed BLAKE2s hash of the connection's 4-tuple. The key is injected (random per host in a lab,
fixed by the seed in a simulation), so the core draws no randomness of its own.
"""

from __future__ import annotations

import hashlib

from stack.seq import MASK


class IsnGenerator:
    def __init__(self, key: bytes) -> None:
        self.key = hashlib.blake2s(key or b"tcplab").digest()  # normalise to 32 bytes

    def isn(self, now: float, local_ip: str, local_port: int, remote_ip: str, remote_port: int) -> int:
        tuple_bytes = f"{local_ip}|{local_port}|{remote_ip}|{remote_port}".encode()
        f = int.from_bytes(hashlib.blake2s(tuple_bytes, key=self.key, digest_size=4).digest(), "big")
        m = int(now * 250_000)  # one tick every 4 microseconds
        return (m + f) & MASK
