"""Unit parsing for topology files: tc's spellings, SI results, bare numbers refused."""

from __future__ import annotations

import pytest

from lab.model.units import (
    format_duration,
    format_rate,
    parse_duration,
    parse_percent,
    parse_rate,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20ms", 0.02), ("1.5s", 1.5), ("250us", 250e-6), ("2sec", 2.0), ("10 msec", 0.01), ("0ms", 0.0)],
)
def test_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "fraction"), [("2%", 0.02), ("0.5%", 0.005), ("100%", 1.0)])
def test_percent(text: str, fraction: float) -> None:
    assert parse_percent(text) == pytest.approx(fraction)


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("10mbit", 10e6), ("1gbit", 1e9), ("500kbit", 500e3), ("1000bit", 1000.0),
        ("1.5Mbit", 1.5e6), ("1mbps", 8e6), ("100bps", 800.0), ("1kibit", 1024.0),
    ],
)
def test_rate(text: str, bits: float) -> None:
    assert parse_rate(text) == pytest.approx(bits)


@pytest.mark.parametrize(("text", "size"), [("64kb", 65536), ("1500b", 1500), ("1mb", 1 << 20), ("2k", 2048)])
def test_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("parse", [parse_duration, parse_percent, parse_rate, parse_size])
@pytest.mark.parametrize("bare", [20, 2.5, "20", " 7 "])
def test_bare_number_refused(parse: object, bare: object) -> None:
    assert callable(parse)
    with pytest.raises(ValueError, match="bare number is not allowed"):
        parse(bare)


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (parse_duration, "20 parsecs", "unknown unit"),
        (parse_rate, "10mb", "unknown unit"),  # a size unit is not a rate
        (parse_percent, "2ms", "must end in '%'"),
        (parse_size, "1.5b", "whole number"),
        (parse_duration, "fast", "not a number with a unit"),
        (parse_duration, None, "must be a string"),
        (parse_duration, True, "must be a string"),
    ],
)
def test_errors_say_what_is_valid(parse: object, text: object, message: str) -> None:
    assert callable(parse)
    with pytest.raises(ValueError, match=message):
        parse(text)


def test_format_round_trips() -> None:
    for text in ("20ms", "1.5s", "250us"):
        assert format_duration(parse_duration(text)) == text
    for text in ("10mbit", "1gbit", "500kbit", "900bit"):
        assert format_rate(parse_rate(text)) == text
