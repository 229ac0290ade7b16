"""Shared test set-up: tests marked `root` need root, namespaces and /dev/net/tun; skip them
(with the reason) anywhere that does not offer those, so `pytest` stays green without privileges.
The reason is the lab's own one-line check (lab.kernel.netns.privilege_problem), which the CLI,
the pytest plugin and the benchmarks use too."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _skip_root_tests_without_privileges(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("root") is not None:
        from lab.kernel.netns import privilege_problem  # pyroute2: only where a root test runs

        problem = privilege_problem()
        if problem:
            pytest.skip(problem)
