"""The emulator benchmark's arithmetic and reports (the measurements themselves need root)."""

from __future__ import annotations

import json

import pytest

from tests.bench import emulator_link, run

SS = (
    "State Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
    "ESTAB 0 0 10.79.0.1:40000 10.79.0.2:5203\n"
    "\t cubic wscale:7,7 rtt:40.1/0.2 cwnd:10 bytes_sent:164 busy:80ms\n"
    "ESTAB 0 2000 10.79.0.1:40002 10.79.0.2:5203\n"
    "\t bbr wscale:10,10 rtt:43.691/2.229 cwnd:8134 bytes_sent:188937693 busy:2804ms "
    "rwnd_limited:36ms(1.3%) sndbuf_limited:340ms(12.1%) unacked:1221\n"
)


def test_mathis_bound() -> None:
    # MSS 1448 B, RTT 40 ms, 1% loss: 1448 / 0.04 * sqrt(1.5) / 0.1 = 443,362 B/s, about 3.5 Mbit/s.
    assert emulator_link.mathis_bytes_per_s(0.040, 0.01) == pytest.approx(443_362, rel=1e-4)


def test_sender_limits_come_from_the_busiest_connection() -> None:
    assert emulator_link.parse_ss(SS) == pytest.approx(
        {"rwnd_limited": 0.013, "sndbuf_limited": 0.121, "cwnd": 8134, "srtt_ms": 43.691})
    assert emulator_link.parse_ss("State Recv-Q\n") == {}


def _row(bits: float, **extra: object) -> dict[str, object]:
    return {"label": "delay 20ms", "cc": "bbr", "bits_per_s": bits, "runs_bits_per_s": [bits],
            "retransmits": 0, "rtt_median": 0.0404, "added_latency_median": 0.0004, "emulator_cpu": 0.2,
            "sender": {"rwnd_limited": 0.0, "sndbuf_limited": 0.2}, **extra}


def test_table_marks_targets_and_failures() -> None:
    result = {"rows": {
        "delay_20ms": _row(6.4e8, target_bits_per_s=5e8, target_met=True),
        "loss": _row(2e6, mathis_bits_per_s=3.5e6, target_bits_per_s=3.5e6, target_met=False),
        "broken": {"label": "delay 5ms", "error": "RuntimeError: iperf3 reported no result"},
    }}
    lines = emulator_link.table(result).splitlines()
    assert "640.0" in lines[2] and ">= 500.0" in lines[2] and lines[2].endswith("yes")
    assert "Mathis 3.5" in lines[3] and lines[3].endswith("NO")
    assert "FAILED: RuntimeError" in lines[4]
    assert "0% / 20%" in lines[2]


def test_the_json_summary_carries_the_emulator_rows() -> None:
    results = {"kernel_tcp": {"bytes_per_s": 1e9}, "hot_spots": {"client": []},
               "emulator": {"rows": {"delay_20ms": _row(6.4e8)}}}
    doc = json.loads(json.dumps(run.summary(results, {}, (1.0, 1.0, 1.0))))
    assert doc["emulator"]["delay_20ms"]["bits_per_s"] == 6.4e8
    assert "hot_spots" not in doc["rows"] and doc["rows"]["kernel_tcp"]["bytes_per_s"] == 1e9
