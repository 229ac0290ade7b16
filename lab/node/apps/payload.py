"""Deterministic payload bytes: byte i of stream `seed` is a pure function of (seed, i).

The stream repeats a pseudo-random pattern whose period is a prime (65521), not a power of
two, so data misplaced by a window- or buffer-sized amount does not land on identical bytes.
Everything works in bounded memory: the pattern is cached per seed and chunks are slices of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import lru_cache

PERIOD = 65521
NO_DIGEST = "-"  # what stands for a digest nobody took (the bulk protocol's "none")


@lru_cache(maxsize=16)
def _pattern2(seed: int) -> bytes:
    """Two periods back to back, so any window of length <= PERIOD is one slice."""
    block = hashlib.shake_256(b"tcplab-payload:%d" % seed).digest(PERIOD)
    return block + block


def window(offset: int, length: int, seed: int = 0) -> bytes:
    """Bytes [offset, offset+length) of the stream; length <= PERIOD."""
    if not 0 <= length <= PERIOD:
        raise ValueError(f"window length must be in [0, {PERIOD}], got {length}")
    start = offset % PERIOD
    return _pattern2(seed)[start : start + length]


def chunks(n: int, seed: int = 0, offset: int = 0, chunk_size: int = PERIOD) -> Iterator[bytes]:
    """Yield the n bytes starting at offset, in chunks of at most chunk_size bytes."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    size = max(1, min(chunk_size, PERIOD))
    end = offset + n
    while offset < end:
        length = min(size, end - offset)
        yield window(offset, length, seed)
        offset += length


def payload(n: int, seed: int = 0) -> bytes:
    """The first n bytes, materialized: only for small n."""
    return b"".join(chunks(n, seed))


@lru_cache(maxsize=64)
def sha256(n: int, seed: int = 0) -> str:
    """Hex sha256 of the first n bytes, computed chunk by chunk (never materialized)."""
    h = hashlib.sha256()
    for chunk in chunks(n, seed):
        h.update(chunk)
    return h.hexdigest()


class PayloadVerifier:
    """Checks a received stream against the expected bytes as it arrives, and hashes it
    (digest=False: the byte check alone, see `hexdigest`).

    `first_mismatch` is the stream offset of the first wrong byte (None while all match),
    which says far more about a transport bug than a digest mismatch alone.
    """

    def __init__(self, seed: int = 0, digest: bool = True) -> None:
        self.seed = seed
        self.offset = 0
        self.first_mismatch: int | None = None
        self._hash = hashlib.sha256() if digest else None

    def feed(self, data: bytes) -> None:
        if self._hash is not None:
            self._hash.update(data)
        if self.first_mismatch is None:
            pos = 0
            while pos < len(data):
                length = min(PERIOD, len(data) - pos)
                expected = window(self.offset + pos, length, self.seed)
                # Compared as bytes: memoryview == bytes goes item by item, 60x slower than memcmp.
                got = data[pos : pos + length]
                if got != expected:
                    bad = next(i for i in range(length) if got[i] != expected[i])
                    self.first_mismatch = self.offset + pos + bad
                    break
                pos += length
        self.offset += len(data)

    @property
    def ok(self) -> bool:
        return self.first_mismatch is None

    def hexdigest(self) -> str:
        """The SHA-256 of what was fed; NO_DIGEST when made with digest=False."""
        return NO_DIGEST if self._hash is None else self._hash.hexdigest()
