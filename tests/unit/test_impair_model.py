"""The Impairment model: unit strings in, SI values out, ranges and netem's rules enforced."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from lab.model.impairment import Impairment


def test_units_become_si() -> None:
    imp = Impairment.model_validate(
        {"delay": "20ms", "jitter": "5ms", "loss": "2%", "duplicate": "1%", "reorder": "25%",
         "corrupt": "0.1%", "rate": "10mbit", "limit": 100}
    )
    assert imp.delay == pytest.approx(0.02)
    assert imp.jitter == pytest.approx(0.005)
    assert imp.loss == pytest.approx(0.02)
    assert imp.reorder == pytest.approx(0.25)
    assert imp.corrupt == pytest.approx(0.001)
    assert imp.rate == pytest.approx(10e6)
    assert imp.limit == 100
    assert not imp.is_noop


def test_default_is_noop_and_described() -> None:
    assert Impairment().is_noop
    assert Impairment().describe() == "none"


def test_describe() -> None:
    imp = Impairment.model_validate({"delay": "20ms", "jitter": "5ms", "loss": "2%", "rate": "10mbit"})
    assert imp.describe() == "20ms ±5ms, 2% loss, 10mbit"


def test_frozen_and_hashable() -> None:
    imp = Impairment.model_validate({"delay": "1ms"})
    with pytest.raises(ValidationError):
        setattr(imp, "delay", 2.0)  # noqa: B010 (the frozen model must refuse it)
    assert hash(imp) == hash(Impairment.model_validate({"delay": "1000us"}))


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"delay": 20}, "delay", "bare number is not allowed: write 20ms"),
        ({"loss": "2"}, "loss", "bare number is not allowed: write 2%"),
        ({"rate": 1000000}, "rate", "bare number is not allowed: write 10mbit"),
        ({"loss": "150%"}, "loss", "outside 0%..100%"),
        ({"delay": "-1ms"}, "delay", "not a number with a unit"),
        ({"rate": "0bit"}, "rate", "above 0"),
        ({"limit": 0}, "limit", "at least 1"),
        ({"limit": "100"}, "limit", "number of packets"),
        ({"lossy": "1%"}, "lossy", "Extra inputs"),
    ],
)
def test_errors_name_the_field(data: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Impairment.model_validate(data)
    errors = info.value.errors()
    assert errors[0]["loc"] == (field,)
    assert message in errors[0]["msg"]


def test_reorder_needs_delay() -> None:
    with pytest.raises(ValidationError, match="reorder needs a delay"):
        Impairment.model_validate({"reorder": "10%"})


def test_si_round_trip() -> None:
    imp = Impairment.model_validate({"delay": "20ms", "loss": "10%", "rate": "1mbit", "limit": 50})
    assert Impairment.from_json(imp.model_dump_json()) == imp
    assert Impairment.from_si(delay=0.02, loss=0.1, rate=1e6, limit=50) == imp
    with pytest.raises(ValidationError):
        Impairment.from_si(loss=2.0)  # ranges still hold for SI input


# -- the emulator's per-packet schedule (pure: no queue, no namespace) ----------------------------
def _schedule(**profile: Any) -> Any:
    import random

    from lab.kernel.impair.emulator import LinkSchedule

    return LinkSchedule(Impairment.model_validate(profile), random.Random(7))


def test_schedule_delay_and_jitter_bounds() -> None:
    sched = _schedule(delay="20ms", jitter="5ms", limit=100_000)
    times = [sched.admit(1.0, 100).release - 1.0 for _ in range(2000)]
    assert min(times) >= 0.015 - 1e-9 and max(times) <= 0.025 + 1e-9
    assert abs(sum(times) / len(times) - 0.020) < 0.0005


def test_schedule_loss_is_seeded_and_near_rate() -> None:
    a, b = _schedule(loss="10%", limit=10_000), _schedule(loss="10%", limit=10_000)
    fates_a = [a.admit(0.0, 100).drop_reason for _ in range(5000)]
    fates_b = [b.admit(0.0, 100).drop_reason for _ in range(5000)]
    assert fates_a == fates_b  # same seed, same losses: a failing run replays
    lost = fates_a.count("loss")
    assert abs(lost - 500) < 4 * (5000 * 0.1 * 0.9) ** 0.5


def test_schedule_rate_serialises_and_limit_tail_drops() -> None:
    sched = _schedule(rate="1mbit", limit=3)
    # 111 bytes + 14 of Ethernet = 1000 bits = 1 ms each at 1 Mbit/s.
    fates = [sched.admit(0.0, 111) for _ in range(5)]
    assert [f.release for f in fates[:3]] == pytest.approx([0.001, 0.002, 0.003])
    assert [f.drop_reason for f in fates[3:]] == ["limit", "limit"]
    sched.released()
    assert sched.admit(0.0, 111).release == pytest.approx(0.004)


def test_schedule_duplicate_reorder_corrupt() -> None:
    sched = _schedule(delay="10ms", duplicate="100%", reorder="100%", corrupt="100%", limit=100)
    fate = sched.admit(5.0, 100)
    assert fate.reordered and fate.release == 5.0  # reordered packets skip the delay, as in netem
    assert fate.copy_release is not None and fate.corrupt
    assert sched.held == 1  # the copy waits in the hold; the reordered original left at once


def test_corrupt_flips_one_bit_past_the_ip_header() -> None:
    import random

    from lab.kernel.impair.emulator import corrupt_packet

    packet = bytes([0x45]) + bytes(19) + bytes(range(40))
    for seed in range(50):
        out = corrupt_packet(packet, random.Random(seed))
        diff = [i for i in range(len(packet)) if out[i] != packet[i]]
        assert len(diff) == 1 and diff[0] >= 20
        assert bin(out[diff[0]] ^ packet[diff[0]]).count("1") == 1


# -- the emulator's choices per profile and per packet (pure) -------------------------------------
def test_gso_only_when_no_decision_is_per_wire_packet() -> None:
    from lab.kernel.impair.emulator import HEADER_COPY, copy_range, wants_gso
    from lab.kernel.impair.nfqueue import MAX_COPY_RANGE

    assert wants_gso(Impairment.model_validate({"delay": "20ms", "jitter": "5ms", "reorder": "5%"}))
    for per_packet in ({"loss": "1%"}, {"duplicate": "1%"}, {"corrupt": "1%"}, {"rate": "10mbit"}):
        assert not wants_gso(Impairment.model_validate({"delay": "20ms", **per_packet})), per_packet
    # Payloads are copied to user space only when a copy or a corrupted version is written back.
    assert copy_range(Impairment.model_validate({"delay": "20ms", "loss": "1%"})) == HEADER_COPY
    assert copy_range(Impairment.model_validate({"duplicate": "1%"})) == MAX_COPY_RANGE
    assert copy_range(Impairment.model_validate({"corrupt": "1%"})) == MAX_COPY_RANGE


def test_arrival_trusts_a_plausible_receive_stamp_only() -> None:
    from lab.kernel.impair.pacer import MAX_ARRIVAL_LAG, arrival

    offset, now = 1_700_000_000.0, 50.0  # wall clock = monotonic + offset
    assert arrival(offset + 49.998, offset, now) == pytest.approx(49.998)  # stamped 2 ms ago
    assert arrival(None, offset, now) == now  # no stamp: the time it was read
    assert arrival(offset + 50.5, offset, now) == now  # from the future: not ours to trust
    assert arrival(offset + now - MAX_ARRIVAL_LAG - 0.1, offset, now) == now  # stale
    assert arrival(12345.0, offset, now) == now  # another clock altogether


def test_rules_queue_the_receiving_end_or_the_sending_end() -> None:
    from lab.kernel.impair.emulator import COPY_MARK, rule_args

    pre = rule_args("PREROUTING", "eth0", 7)
    assert pre[:3] == ["PREROUTING", "-i", "eth0"] and pre[-2:] == ["--queue-num", "7"]
    assert "--mark" not in pre  # the copies it writes are routed from here, never received on eth0
    post = rule_args("POSTROUTING", "eth0", 7)
    assert post[:3] == ["POSTROUTING", "-o", "eth0"] and f"{COPY_MARK:#x}/{COPY_MARK:#x}" in post
    with pytest.raises(ValueError, match="no hook 'INPUT'"):
        rule_args("INPUT", "eth0", 7)


def test_lateness_summary() -> None:
    from lab.kernel.impair.pacer import lateness

    assert lateness([]) is None
    summary = lateness([i / 1e5 for i in range(100)])  # 0 .. 0.99 ms
    assert summary == {"p50": 0.5, "p90": 0.9, "max": 0.99}
