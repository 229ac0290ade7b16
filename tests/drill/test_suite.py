"""Every packetdrill script of tests/drill/ run against the stack on virtual time (one test each).

A script whose first lines hold `// xfail: <reason>` documents a stack behaviour we believe wrong:
it is expected to fail (strictly: if the stack is fixed, the test says so until the header goes).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drill.runner import run_file

HERE = Path(__file__).parent
SCRIPTS = sorted(HERE.glob("*.pkt"))
_XFAIL = re.compile(r"^//\s*xfail:\s*(.+)$", re.MULTILINE)


def xfail_reason(path: Path) -> str | None:
    head = "\n".join(path.read_text(encoding="utf-8").splitlines()[:5])
    match = _XFAIL.search(head)
    return match.group(1).strip() if match else None


def _param(path: Path) -> object:
    reason = xfail_reason(path)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(path, id=path.stem, marks=marks)


def test_the_suite_is_large_enough() -> None:
    assert len(SCRIPTS) >= 60


@pytest.mark.parametrize("path", [_param(p) for p in SCRIPTS])
def test_script(path: Path) -> None:
    result = run_file(path, profile="linux")
    assert result.passed, result.text()
