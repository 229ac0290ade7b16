"""The `family` fixture: a test module that uses it (`pytestmark = pytest.mark.usefixtures("family")`)
runs each of its tests twice, over IPv4 and over IPv6, with the same assertions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import harness


@pytest.fixture(params=[harness.IPV4, harness.IPV6], ids=lambda f: f.name)
def family(request: pytest.FixtureRequest) -> Iterator[harness.Family]:
    saved = harness.FAMILY
    harness.FAMILY = request.param
    try:
        yield request.param
    finally:
        harness.FAMILY = saved
