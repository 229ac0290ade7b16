"""The deterministic payload: offsets, digests without materializing, the streaming verifier."""

from __future__ import annotations

import hashlib

import pytest

from lab.node.apps import payload


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    assert payload.payload(1000, seed=1) == payload.payload(1000, seed=1)
    assert payload.payload(1000, seed=1) != payload.payload(1000, seed=2)


def test_chunks_are_offset_consistent_across_chunk_sizes() -> None:
    whole = payload.payload(3 * payload.PERIOD + 17)
    assert b"".join(payload.chunks(len(whole), chunk_size=1000)) == whole
    assert b"".join(payload.chunks(500, offset=payload.PERIOD - 100)) == whole[payload.PERIOD - 100 :][:500]
    assert all(len(c) <= 1000 for c in payload.chunks(len(whole), chunk_size=1000))


def test_sha256_matches_materialized_digest() -> None:
    for n in (0, 1, payload.PERIOD, 2 * payload.PERIOD + 5, 5_000_000):
        assert payload.sha256(n, 3) == hashlib.sha256(payload.payload(n, 3)).hexdigest()


def test_verifier_accepts_the_stream_in_any_pieces() -> None:
    data = payload.payload(200_000, seed=5)
    verifier = payload.PayloadVerifier(seed=5)
    for cut in range(0, len(data), 7_777):
        verifier.feed(data[cut : cut + 7_777])
    assert verifier.ok and verifier.offset == len(data)
    assert verifier.hexdigest() == payload.sha256(len(data), 5)


def test_verifier_without_digest_still_checks_every_byte() -> None:
    data = bytearray(payload.payload(150_000, seed=2))
    good = payload.PayloadVerifier(seed=2, digest=False)
    good.feed(bytes(data))
    assert good.ok and good.offset == 150_000 and good.hexdigest() == "-"
    data[99_999] ^= 0x80
    bad = payload.PayloadVerifier(seed=2, digest=False)
    bad.feed(bytes(data[:70_000]))
    bad.feed(bytes(data[70_000:]))
    assert bad.first_mismatch == 99_999 and not bad.ok


def test_verifier_reports_first_wrong_offset() -> None:
    data = bytearray(payload.payload(150_000))
    data[123_456] ^= 0x01
    data[140_000] ^= 0x01
    verifier = payload.PayloadVerifier()
    verifier.feed(bytes(data[:100_000]))
    verifier.feed(bytes(data[100_000:]))
    assert verifier.first_mismatch == 123_456 and not verifier.ok


def test_window_longer_than_period_is_refused() -> None:
    with pytest.raises(ValueError):
        payload.window(0, payload.PERIOD + 1)
