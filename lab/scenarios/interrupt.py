"""Ctrl-C during a check: the lab is always torn down, and a second Ctrl-C cannot cut that short.

`sigint_handled()` wraps the run (KeyboardInterrupt as usual, remembered for `Sigint.checkpoint`);
`sigint_ignored()` wraps teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from types import FrameType


class Sigint:
    """Ctrl-C as the check sees it. The handler raises KeyboardInterrupt as Python's does, and also
    remembers it: Python only prints (and drops) an exception raised while at-fork handlers run,
    and pyroute2 forks for every namespace it touches, so the flag is checked at each step. In a
    forked child (a Ctrl-C from the terminal reaches the whole process group) the handler exits
    the child instead of unwinding the parent's stack there."""

    seen = False
    owner = 0

    @classmethod
    def handler(cls, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != cls.owner:
            os._exit(130)
        cls.seen = True
        raise KeyboardInterrupt

    @classmethod
    def checkpoint(cls) -> None:
        if cls.seen:
            raise KeyboardInterrupt


@contextlib.contextmanager
def sigint_handled() -> Iterator[None]:
    Sigint.seen, Sigint.owner = False, os.getpid()
    try:
        previous = signal.signal(signal.SIGINT, Sigint.handler)
    except ValueError:  # not the main thread: Ctrl-C is not ours to handle
        yield
        return
    try:
        yield
        Sigint.checkpoint()
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Teardown must finish: a second Ctrl-C while it runs is ignored (main thread only)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
