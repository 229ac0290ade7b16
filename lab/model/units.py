"""Parsing of the unit-bearing values in topology files: durations, percentages, rates, sizes.

Spellings follow tc(8) so a profile reads the same as the netem/tbf command it becomes:
- durations: ``s``/``sec``, ``ms``/``msec``, ``us``/``usec`` (``20ms``, ``1.5s``, ``250us``);
- percentages: ``2%``, ``0.5%``;
- rates: ``bit``, ``kbit``, ``mbit``, ``gbit``, ``tbit`` are bits per second (SI, 1000-based);
  ``bps``, ``kbps``, ``mbps``, ``gbps`` are *bytes* per second, as in tc (``1mbps`` = 8 Mbit/s);
  IEC forms ``kibit``, ``mibit``, ``gibit`` are 1024-based;
- sizes: ``b``, ``kb``/``k``, ``mb``/``m``, ``gb``/``g`` are bytes, 1024-based as in tc.

A bare number (``20`` or ``"20"``) is rejected: its unit would be a guess. Every error is a
ValueError whose message says what would be valid, so pydantic can show it next to the field name.
"""

from __future__ import annotations

import math
import re

_NUMBER_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z%]*)\s*$")

_DURATION_UNITS: dict[str, float] = {
    "s": 1.0, "sec": 1.0, "secs": 1.0,
    "ms": 1e-3, "msec": 1e-3, "msecs": 1e-3,
    "us": 1e-6, "usec": 1e-6, "usecs": 1e-6,
}
_RATE_UNITS: dict[str, float] = {
    "bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
    "kibit": 1024.0, "mibit": 1024.0**2, "gibit": 1024.0**3,
    "bps": 8.0, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9,
}
_SIZE_UNITS: dict[str, int] = {
    "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3,
}


def _split(value: object, what: str, example: str) -> tuple[float, str]:
    """Split "20ms" into (20.0, "ms"); refuse bare numbers and anything that is not a string."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{what} must be a string with a unit, like {example!r}; got {value!r}")
    if isinstance(value, (int, float)):
        raise ValueError(f"{what} {value!r} has no unit; a bare number is not allowed: write {example}")
    m = _NUMBER_UNIT.match(value)
    if m is None:
        raise ValueError(f"{what} {value!r} is not a number with a unit, like {example!r}")
    number, unit = float(m.group(1)), m.group(2).lower()
    if not unit:
        raise ValueError(f"{what} {value!r} has no unit; a bare number is not allowed: write {example}")
    if not math.isfinite(number):
        raise ValueError(f"{what} {value!r} is not finite")
    return number, unit


def _unknown(what: str, value: str, units: dict[str, float] | dict[str, int]) -> ValueError:
    return ValueError(f"{what} {value!r} has an unknown unit; valid units: {', '.join(units)}")


def parse_duration(value: object) -> float:
    """'20ms' -> 0.02 (seconds)."""
    number, unit = _split(value, "duration", "20ms")
    if unit not in _DURATION_UNITS:
        raise _unknown("duration", str(value), _DURATION_UNITS)
    return number * _DURATION_UNITS[unit]


def parse_percent(value: object) -> float:
    """'2%' -> 0.02 (a fraction); the percent sign is required."""
    number, unit = _split(value, "percentage", "2%")
    if unit != "%":
        raise ValueError(f"percentage {value!r} must end in '%', like '2%'")
    return number / 100.0


def parse_rate(value: object) -> float:
    """'10mbit' -> 10e6 (bits per second); 'bps' units are bytes per second, as in tc."""
    number, unit = _split(value, "rate", "10mbit")
    if unit not in _RATE_UNITS:
        raise _unknown("rate", str(value), _RATE_UNITS)
    return number * _RATE_UNITS[unit]


def parse_size(value: object) -> int:
    """'64kb' -> 65536 (bytes); sizes are 1024-based, as in tc."""
    number, unit = _split(value, "size", "64kb")
    if unit not in _SIZE_UNITS:
        raise _unknown("size", str(value), _SIZE_UNITS)
    size = number * _SIZE_UNITS[unit]
    if size != int(size):
        raise ValueError(f"size {value!r} is not a whole number of bytes")
    return int(size)


def format_duration(seconds: float) -> str:
    """0.02 -> '20ms', for messages and `describe()`; the inverse of parse_duration."""
    if seconds == 0 or seconds >= 1:
        return f"{seconds:g}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:g}ms"
    return f"{seconds * 1e6:g}us"


def format_percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def format_rate(bits_per_second: float) -> str:
    for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:g}{unit}"
    return f"{bits_per_second:g}bit"
