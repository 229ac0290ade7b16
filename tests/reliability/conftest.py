"""The `family` fixture: a test module that uses it (`pytestmark = pytest.mark.usefixtures("family")`)
runs each of its tests twice, with connections over IPv4 and over IPv6, with the same assertions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import helpers


@pytest.fixture(params=["ipv4", "ipv6"])
def family(request: pytest.FixtureRequest) -> Iterator[str]:
    saved = helpers.FAMILY
    helpers.FAMILY = request.param
    try:
        yield request.param
    finally:
        helpers.FAMILY = saved
