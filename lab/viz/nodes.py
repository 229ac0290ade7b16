"""Find a lab node's trace file, and the trace of the node at the other end of its connections,
so `tcplab ladder NODE`, `tcplab plot NODE` and `tcplab trace NODE --format ladder` draw a
running (or just finished) lab's exchanges with both ends traced where both are stack nodes."""

from __future__ import annotations

import json
from pathlib import Path

from stack.trace import split_conn_id


def node_trace_file(node: str, lab: str | None = None) -> Path:
    """DIR/NODE.trace.jsonl of the named (or only running) lab; ValueError if there is none."""
    from lab.kernel.state import run_dir
    from lab.lab import Lab
    from lab.node.control import flush_traces

    labs = [lab] if lab else Lab.running()
    if not labs:
        raise ValueError(f"{node!r} is neither a trace file nor a node of a running lab")
    if len(labs) > 1:
        raise ValueError(f"several labs are up ({', '.join(labs)}): name one with --lab")
    path = run_dir(labs[0]) / f"{node}.trace.jsonl"
    if not path.exists():
        raise ValueError(f"node {node!r} of lab {labs[0]} has no trace ({path}): is it a stack node?")
    flush_traces(path.parent)
    return path


def peer_trace_file(trace: Path) -> Path | None:
    """The trace of the stack node at the far end of the first connection in `trace`, when that
    node belongs to the same lab (its trace sits in the same run directory)."""
    remote_ip = None
    with trace.open() as f:
        for line in f:
            if '"StateChange"' in line:
                conn = json.loads(line)["conn"]
                remote_ip = split_conn_id(conn)[1][0]  # "[fd00::2]:80" -> "fd00::2"
                break
    if remote_ip is None:
        return None
    for cfg in trace.parent.glob("*.json"):
        try:
            data = json.loads(cfg.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and remote_ip in (data.get("stack_address"), data.get("stack_address6")):
            other = trace.parent / f"{data.get('node')}.trace.jsonl"
            if other.exists() and other != trace:
                return other
    return None


def resolve_trace(arg: Path, lab: str | None, node: str | None = None) -> tuple[Path, str | None]:
    """The trace to draw, and a note for the user when a name could mean two things.

    `node` (the --node option) always means a lab node. Otherwise a regular file is a trace file;
    anything else that looks like a name (no suffix, no slash) is a node of the running lab, even
    when a directory of that name is here (`stack/` in this repository, `stack` in interop.yaml).
    """
    if node is not None:
        return node_trace_file(node, lab), None
    if arg.is_file():
        return arg, None
    if not arg.suffix and "/" not in str(arg):
        try:
            path = node_trace_file(str(arg), lab)
        except ValueError as exc:
            if arg.exists():
                raise ValueError(f"{arg} is a directory, not a trace file, nor a running lab's node") from exc
            raise
        note = None
        if arg.exists():
            note = f"{arg}: drawing node {arg} of the running lab, not the directory ./{arg} (--node says so)"
        return path, note
    if arg.exists():
        raise ValueError(f"{arg} is a directory, not a trace file")
    raise ValueError(f"no trace file {arg}")
