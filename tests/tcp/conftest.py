"""Collects every (state, event) transition the tests in tests/tcp make, for
test_transitions.py's coverage check (which runs last in this directory)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stack.tcp import transitions
from stack.tcp.state import State
from stack.tcp.transitions import Event

TAKEN: set[tuple[State, Event]] = set()


def _observe(state: State, event: Event) -> None:
    TAKEN.add((state, event))


@pytest.fixture(autouse=True, scope="session")
def _collect_transitions() -> Iterator[None]:
    transitions.OBSERVERS.append(_observe)
    yield
    transitions.OBSERVERS.remove(_observe)
