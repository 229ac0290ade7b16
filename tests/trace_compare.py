"""Record the stack's JSON-lines traces for a fixed set of runs, and compare two recordings.

A refactoring of the stack must not change what it does: every state change with its cause, every
segment, drop, retransmission, RTT and cwnd event. This tool records, on the virtual clock only:

- `demo.json`: the stdout of `tcplab demo --sim --json` (run as a subprocess);
- `lossy-transfer.jsonl`: the whole trace of both hosts of one seeded two-way transfer over a
  lossy, reordering, duplicating simulated link;
- `drill/NAME.jsonl`: the whole trace of each `tests/drill/*.pkt` script run by the drill runner,
  ending with a line giving the script's result.

    python -m tests.trace_compare record DIR [--only demo,lossy,drill]
    python -m tests.trace_compare compare DIR_A DIR_B

`compare` exits 0 when both directories hold the same files with the same bytes, else 1 and names
the first differing line of each file that differs.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stack.config import TcpConfig
from stack.sim.link import LinkProfile
from stack.sim.network import Network
from stack.socket import Stack
from stack.trace import JsonLinesSink, Trace

ROOT = Path(__file__).resolve().parent.parent
DRILL_DIR = ROOT / "tests" / "drill"
KINDS = ("demo", "lossy", "drill")
LOSSY_LINK = LinkProfile(delay=0.01, jitter=0.002, loss=0.03, duplicate=0.01, reorder=0.02)
LOSSY_BYTES = 200_000


def record_demo(out: Path) -> None:
    cmd = [sys.executable, "-c", "from lab.cli import app; app()", "demo", "--sim", "--json"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    out.write_text(done.stdout + f"# exit {done.returncode}\n", encoding="utf-8")


def record_lossy(
    out: Path, seed: int = 7, nbytes: int = LOSSY_BYTES, config: TcpConfig | None = None
) -> None:
    """Both ends send `nbytes` and read all the other sent, then close: a two-way transfer."""
    buf = io.StringIO()
    sink = JsonLinesSink(buf)
    config = config or TcpConfig()
    with Network(seed) as net:
        a = net.add_host("a", "10.0.0.1", config=config, trace=Trace([sink]))
        b = net.add_host("b", "10.0.0.2", config=config, trace=Trace([sink]))
        net.connect("a", "b", LOSSY_LINK)
        sa, sb = Stack(a.runtime), Stack(b.runtime)
        payload = bytes(random.Random(seed).randbytes(nbytes))

        async def main() -> tuple[int, int]:
            got: list[int] = []

            async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write(payload)
                writer.write_eof()
                got.append(len(await reader.read()))
                await writer.drain()
                writer.close()

            server = await sb.start_server(serve, port=9)
            reader, writer = await sa.open_connection("10.0.0.2", 9)
            writer.write(payload)
            writer.write_eof()
            n = len(await reader.read())
            writer.close()
            while any(h.connections for h in (a.host, b.host)):
                await asyncio.sleep(1.0)
            server.close()
            return n, got[0] if got else -1

        result = net.run(main(), timeout=3600)
    buf.write(json.dumps({"result": list(result)}) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(buf.getvalue(), encoding="utf-8")


@contextmanager
def _traced_drill_hosts(sink: JsonLinesSink) -> Iterator[Any]:
    """The drill runner builds its Host itself: hand it one with a trace sink."""
    from drill import runner

    real = getattr(runner, "Host")  # noqa: B009 (the name the runner builds its host with)

    def host(*args: Any, **kwargs: Any) -> Any:
        return real(*args, trace=Trace([sink]), **kwargs)

    setattr(runner, "Host", host)  # noqa: B010
    try:
        yield runner
    finally:
        setattr(runner, "Host", real)  # noqa: B010


def record_drill(out_dir: Path, scripts: list[Path] | None = None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for script in scripts if scripts is not None else sorted(DRILL_DIR.glob("*.pkt")):
        buf = io.StringIO()
        sink = JsonLinesSink(buf)
        with _traced_drill_hosts(sink) as runner:
            result = runner.run_file(script)
        failure = result.failure
        buf.write(json.dumps({"passed": result.passed, "line": failure.line if failure else None,
                              "message": failure.message if failure else None}) + "\n")
        (out_dir / f"{script.stem}.jsonl").write_text(buf.getvalue(), encoding="utf-8")


def record(out: Path, only: tuple[str, ...] = KINDS) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if "demo" in only:
        record_demo(out / "demo.json")
    if "lossy" in only:
        record_lossy(out / "lossy-transfer.jsonl")
    if "drill" in only:
        record_drill(out / "drill")


def compare(a: Path, b: Path) -> list[str]:
    """Differences between two recordings, one line each; empty when identical."""
    names_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    names_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    problems = [f"only in {a}: {n}" for n in sorted(names_a - names_b)]
    problems += [f"only in {b}: {n}" for n in sorted(names_b - names_a)]
    for name in sorted(names_a & names_b):
        left, right = (a / name).read_bytes(), (b / name).read_bytes()
        if left == right:
            continue
        la, lb = left.splitlines(), right.splitlines()
        i = next((i for i, (x, y) in enumerate(zip(la, lb, strict=False)) if x != y), min(len(la), len(lb)))
        problems.append(f"{name}: line {i + 1} differs ({len(la)} vs {len(lb)} lines)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.trace_compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="record the traces into DIR")
    rec.add_argument("dir", type=Path)
    rec.add_argument("--only", default=",".join(KINDS), help="comma-separated subset of " + ",".join(KINDS))
    cmp_ = sub.add_parser("compare", help="compare two recordings byte for byte")
    cmp_.add_argument("a", type=Path)
    cmp_.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "record":
        only = tuple(k for k in args.only.split(",") if k)
        bad = [k for k in only if k not in KINDS]
        if bad:
            parser.error(f"unknown kind {bad[0]!r}; choose from {','.join(KINDS)}")
        record(args.dir, only)
        files = sorted(p for p in args.dir.rglob("*") if p.is_file())
        print(f"recorded {len(files)} files in {args.dir}")
        return 0
    problems = compare(args.a, args.b)
    for line in problems:
        print(line)
    count = sum(1 for p in args.a.rglob("*") if p.is_file())
    print(f"{'identical' if not problems else 'DIFFERENT'}: {count} files in {args.a} vs {args.b}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
