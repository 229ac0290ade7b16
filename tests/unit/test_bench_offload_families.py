"""The per-family offload benchmark's arithmetic and report (the lab part runs as root, in
`python -m tests.bench.offload_families`): ratios are on/off per family, a failed or unverified
row says so instead of showing a figure."""

from __future__ import annotations

from typing import Any

from tests.bench import offload_families


def _row(bps: float, verified: bool = True) -> dict[str, Any]:
    return {"bytes_per_s": bps, "runs": [round(bps)], "all_verified": verified, "retransmits": 0,
            "srtt": 0.002}


def test_ratios_are_same_run_quotients_per_family() -> None:
    results = {"ipv4_off": _row(20e6), "ipv4_on": _row(100e6), "ipv6_off": _row(10e6),
               "ipv6_on": _row(80e6)}
    r = offload_families.ratios(results)
    assert r["ipv4_on/ipv4_off"] == 5.0 and r["ipv6_on/ipv6_off"] == 8.0
    assert r["ipv6_on/ipv4_on"] == 0.8


def test_failed_and_unverified_rows_are_reported_as_such() -> None:
    results = {"ipv4_off": _row(20e6), "ipv4_on": {"error": "RuntimeError: boom", "runs": []},
               "ipv6_off": _row(10e6, verified=False), "ipv6_on": _row(80e6)}
    r = offload_families.ratios(results)
    assert r["ipv4_on/ipv4_off"] is None
    text = offload_families.report(results, r)
    assert "FAILED: RuntimeError: boom" in text
    assert "IPv6, offloads off" in text and "NOT VERIFIED" in text
    assert "ipv6_on/ipv6_off = 8.000" in text and "ipv4_on/ipv4_off = -" in text
