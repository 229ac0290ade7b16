"""Errors raised by the stack's codecs (the host catches them, counts the drop and carries on),
and the OSError the stack reports to applications, as a kernel socket does."""

from __future__ import annotations

import os


class ParseError(ValueError):
    """A packet or option list that cannot be parsed. `reason` is a short stable counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def socket_error(code: int, detail: str = "") -> OSError:
    """The error a kernel socket reports for errno `code`, for the application: OSError picks
    the subclass (ConnectionRefusedError for ECONNREFUSED, TimeoutError for ETIMEDOUT, ...), and
    `errno` and `strerror` are set as Python's socket module sets them; `detail` says what
    happened: "[Errno 111] Connection refused (ICMP port unreachable)"."""
    text = os.strerror(code)
    return OSError(code, f"{text} ({detail})" if detail else text)
