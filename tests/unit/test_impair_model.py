"""The Impairment model: unit strings in, SI values out, ranges and netem's rules enforced."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from lab.impair.model import Impairment


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
