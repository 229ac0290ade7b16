"""Run the CLI in a child Python where some packages are missing, as on a machine that never
installed them: `python -c without("docker") + CLI ...`. The blocked imports fail the way a missing
package does (ModuleNotFoundError naming it); everything else imports normally."""

from __future__ import annotations

import sys

CLI = "from lab.main import main; main()"


def without(*packages: str) -> str:
    """Python source that makes `packages` (top-level names) unimportable in this process."""
    return f"""
import importlib.abc, sys
class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {set(packages)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Missing())
"""


def cli_without(*packages: str) -> list[str]:
    """argv prefix: the `tcplab` console script with `packages` missing."""
    return [sys.executable, "-c", without(*packages) + CLI]
