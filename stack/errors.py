"""Errors raised by the stack's codecs; the host catches them, counts the drop and carries on."""

from __future__ import annotations


class ParseError(ValueError):
    """A packet or option list that cannot be parsed. `reason` is a short stable counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
