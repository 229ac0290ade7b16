"""The impairment profile of one link direction, validated and immutable.

Values are stored in SI units (seconds, fractions, bit/s, packets). From a topology file they are
written with units (``delay: 20ms``, ``loss: 2%``, ``rate: 10mbit``); a bare number is refused.
Code that already holds SI values (a serialised profile handed to the emulator, say) validates
with ``context={"si": True}``, or uses `Impairment.from_si` / `Impairment.from_json`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from lab.model.units import (
    format_duration,
    format_percent,
    format_rate,
    parse_duration,
    parse_percent,
    parse_rate,
)

# pyroute2 and the kernel carry netem/tbf rates as u32 bytes per second.
MAX_RATE_BITS = (2**32 - 1) * 8


def _si(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("si"))


def _number(value: object, info: ValidationInfo) -> bool:
    """True when `value` is an already-SI number that this validation context allows through."""
    return _si(info) and isinstance(value, (int, float)) and not isinstance(value, bool)


class Impairment(BaseModel):
    """Delay, jitter, loss, duplication, reordering, corruption, rate and queue limit of a link
    direction, with netem's meaning: reordered packets skip the delay, jitter is uniform in
    [delay - jitter, delay + jitter], `limit` is the queue length in packets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    rate: float | None = None
    limit: int | None = None

    @field_validator("delay", "jitter", mode="before")
    @classmethod
    def _duration(cls, value: object, info: ValidationInfo) -> object:
        return value if _number(value, info) else parse_duration(value)

    @field_validator("loss", "duplicate", "reorder", "corrupt", mode="before")
    @classmethod
    def _percent(cls, value: object, info: ValidationInfo) -> object:
        return value if _number(value, info) else parse_percent(value)

    @field_validator("rate", mode="before")
    @classmethod
    def _rate(cls, value: object, info: ValidationInfo) -> object:
        if value is None or _number(value, info):
            return value
        return parse_rate(value)

    @field_validator("limit", mode="before")
    @classmethod
    def _limit(cls, value: object) -> object:
        # A queue limit is a count of packets, so a plain integer is the natural spelling.
        if isinstance(value, bool) or not (value is None or isinstance(value, int)):
            raise ValueError(f"limit is a number of packets, like 1000; got {value!r}")
        return value

    @field_validator("delay", "jitter", mode="after")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    @field_validator("loss", "duplicate", "reorder", "corrupt", mode="after")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{format_percent(value)} is outside 0%..100%")
        return value

    @field_validator("rate", mode="after")
    @classmethod
    def _rate_range(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= MAX_RATE_BITS:
            raise ValueError(f"rate must be above 0 and at most {format_rate(MAX_RATE_BITS)}")
        return value

    @field_validator("limit", mode="after")
    @classmethod
    def _limit_range(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("limit must be at least 1 packet")
        return value

    @model_validator(mode="after")
    def _reorder_needs_delay(self) -> Impairment:
        if self.reorder > 0 and self.delay <= 0:
            raise ValueError("reorder needs a delay (reordered packets are the ones sent without it)")
        return self

    @classmethod
    def from_si(cls, **values: Any) -> Impairment:
        """Build from SI numbers (seconds, fractions, bit/s), as code rather than a user writes them."""
        return cls.model_validate(values, context={"si": True})

    @classmethod
    def from_json(cls, text: str | bytes) -> Impairment:
        """The inverse of `model_dump_json()` (which writes SI numbers)."""
        return cls.model_validate_json(text, context={"si": True})

    @property
    def is_noop(self) -> bool:
        """True when the profile changes nothing, so the link needs no emulation at all."""
        return (
            self.delay == 0 and self.jitter == 0 and self.loss == 0 and self.duplicate == 0
            and self.reorder == 0 and self.corrupt == 0 and self.rate is None and self.limit is None
        )

    def describe(self) -> str:
        """A short human summary such as '20ms ±5ms, 2% loss, 10mbit'."""
        parts: list[str] = []
        if self.delay or self.jitter:
            jitter = f" ±{format_duration(self.jitter)}" if self.jitter else ""
            parts.append(format_duration(self.delay) + jitter)
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            value = getattr(self, name)
            if value:
                parts.append(f"{format_percent(value)} {name}")
        if self.rate is not None:
            parts.append(format_rate(self.rate))
        if self.limit is not None:
            parts.append(f"limit {self.limit}")
        return ", ".join(parts) if parts else "none"
