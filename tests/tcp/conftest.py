"""Collects every (state, event) transition the tests in tests/tcp make, for
test_transitions.py's coverage check (which runs last in this directory); and the `family`
fixture: a test module that uses it (`pytestmark = pytest.mark.usefixtures("family")`) runs each
of its tests twice, over IPv4 and over IPv6, with the same assertions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stack.tcp import transitions
from stack.tcp.state import State
from stack.tcp.transitions import Event

from . import harness

TAKEN: set[tuple[State, Event]] = set()


def _observe(state: State, event: Event) -> None:
    TAKEN.add((state, event))


@pytest.fixture(autouse=True, scope="session")
def _collect_transitions() -> Iterator[None]:
    transitions.OBSERVERS.append(_observe)
    yield
    transitions.OBSERVERS.remove(_observe)


@pytest.fixture(params=[harness.IPV4, harness.IPV6], ids=lambda f: f.name)
def family(request: pytest.FixtureRequest) -> Iterator[harness.Family]:
    saved = harness.FAMILY
    harness.FAMILY = request.param
    try:
        yield request.param
    finally:
        harness.FAMILY = saved
