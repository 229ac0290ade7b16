"""The drill scripts of tests/drill/default and tests/drill/freebsd, each run under the profile
its directory names (those of tests/drill itself run under `linux`: test_suite.py).

`default/`: behaviours every profile shares, shown with the RFC-textbook settings (no quick-ACK
mode to hide a missing immediate ACK). `freebsd/`: FreeBSD's choices where the RFCs leave one
(stack.config.freebsd_profile), each shown once here so that losing one is a red test even
without the FreeBSD corpus beside the project.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drill.runner import run_file
from tests.drill.test_suite import xfail_reason

HERE = Path(__file__).parent
PROFILES = ("default", "freebsd")
SCRIPTS = [(profile, path) for profile in PROFILES for path in sorted((HERE / profile).glob("*.pkt"))]


def _param(profile: str, path: Path) -> object:
    reason = xfail_reason(path)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(profile, path, id=f"{profile}/{path.stem}", marks=marks)


def test_each_profile_has_scripts() -> None:
    assert {profile for profile, _ in SCRIPTS} == set(PROFILES)


@pytest.mark.parametrize(("profile", "path"), [_param(p, s) for p, s in SCRIPTS])
def test_script(profile: str, path: Path) -> None:
    result = run_file(path, profile=profile)
    assert result.passed, result.text()
