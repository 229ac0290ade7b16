"""Shared test set-up: tests marked `root` need root, namespaces and /dev/net/tun; skip them
(with the reason) anywhere that does not offer those, so `pytest` stays green without privileges."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _root_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, tun): run the lab tests as root"
    if not Path("/dev/net/tun").exists():
        return "needs /dev/net/tun (TUN/TAP), which this machine does not offer"
    return None


@pytest.fixture(autouse=True)
def _skip_root_tests_without_privileges(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("root") is not None:
        problem = _root_problem()
        if problem:
            pytest.skip(problem)
