"""The run directory of a lab and its state.json, written atomically.

Default parent: /run/tcplab (tmpfs: a reboot forgets labs, as it forgets their namespaces);
TCPLAB_RUN_DIR overrides the parent. The state file is a convenience, never the only record:
teardown also works by discovery (lab.kernel.ownership) when it is missing or stale.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_RUN_ROOT = Path("/run/tcplab")
STATE_FILE = "state.json"


def run_root() -> Path:
    return Path(os.environ.get("TCPLAB_RUN_DIR") or DEFAULT_RUN_ROOT)


def run_dir(lab: str) -> Path:
    return run_root() / lab


class LabState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    lab: str
    topology: str | None = None  # the file it came from, when there was one
    seed: int = 0  # of the link emulators (`up --seed`), so `attach` plans the same seeds
    created: float = Field(default_factory=time.time)
    namespaces: list[str] = Field(default_factory=list)
    daemons: dict[str, int] = Field(default_factory=dict)  # node -> pid
    impairments: dict[str, str] = Field(default_factory=dict)  # "link a->b" -> backend in effect
    plan: dict[str, Any] = Field(default_factory=dict)  # LabPlan.summary()


def write_state(state: LabState, directory: Path | None = None) -> Path:
    """Write state.json atomically: a reader sees the old file or the new one, never half of one."""
    directory = directory or run_dir(state.lab)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".state.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(state.model_dump_json(indent=2))
            f.flush()
            os.fsync(f.fileno())
        target = directory / STATE_FILE
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_state(lab: str) -> LabState | None:
    """The lab's state, or None when there is none (or it is unreadable: discovery takes over)."""
    path = run_dir(lab) / STATE_FILE
    try:
        return LabState.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def labs_with_state() -> list[str]:
    root = run_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / STATE_FILE).is_file())
