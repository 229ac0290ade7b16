"""The one check of whether the lab can run here (lab.kernel.netns.privilege_problem): the CLI, the
pytest plugin, the `root` marker of this suite and the benchmarks all skip or exit with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.kernel import netns


class _NoSuchPath(type(Path())):  # type: ignore[misc]
    def exists(self, *, follow_symlinks: bool = True) -> bool:
        return False


def test_not_root_is_named_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    problem = netns.privilege_problem()
    assert problem is not None and "needs root" in problem and "\n" not in problem


def test_root_without_tun_names_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr(netns, "Path", _NoSuchPath)
    problem = netns.privilege_problem()
    assert problem is not None and "/dev/net/tun" in problem and "\n" not in problem


def test_root_with_tun_is_no_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    if not Path("/dev/net/tun").exists():
        pytest.skip("this machine has no /dev/net/tun")
    assert netns.privilege_problem() is None
