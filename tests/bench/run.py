"""Run every benchmark once and print one table of figures and ratios measured in the same run.

    python -m tests.bench.run [--seconds 3] [--repeat 3] [--json FILE] [--no-profile] [--sim-only]
                              [--emulator-only] [--no-emulator] [--emulator-runs 3]
    make bench

As root (with /dev/net/tun) it brings up a two-node lab (`topologies/two-node.yaml`, daemons
started by the benchmark itself), measures in order: the kernel's TCP on the veth, then in rounds
the raw TUN ceiling and the stack over TUN (trace files off, trace files on, no trace at all; then
with TUN offloads, no trace and trace files on), the stack under cProfile (hot spots); tears the
lab down; then wrk against the stack's HTTP server (its own lab, `tests.bench.http_wrk`). Then, in
a lab of two kernel nodes, the link emulator: iperf3 and ping through one profile after another
(`emulator_link`), with the unimpaired link of the same run as its ratio base. Then the stack on
the simulated network and the memory of idle connections. With --repeat N there are N rounds and
the table gives each row's median (the JSON keeps every run).
Without root it runs only the simulated-network benchmarks and says so.

The tables are printed, then the same figures as one JSON line (`BENCH_JSON {...}`); --json FILE
also writes every figure, profiles included, to FILE.

Ratios: stack goodput / TUN ceiling (bytes per second) and stack goodput / kernel TCP. Compare
ratios across runs, not absolute figures: the machines are shared and drift.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python tests/bench/run.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lab.kernel.netns import privilege_problem
from tests.bench import conn_memory, emulator_link, sim_goodput

TOPOLOGY = "topologies/two-node.yaml"
STACK_ROWS = (
    ("stack_files_off", "files-off", "stack over TUN, trace files off"),
    ("stack_files_on", "files-on", "stack over TUN, trace files on"),
    ("stack_no_trace", "none", "stack over TUN, no trace sink"),
)
# The same with tun0's checksum/TSO offloads on (stack.tundev): super-segments of up to 64 KB;
# and with the checksum offload alone (`offload: checksum`), segment by segment.
OFFLOAD_ROWS: tuple[tuple[str, str, str, bool | str], ...] = (
    ("stack_offload_no_trace", "none", "stack over TUN, offloads on, no trace sink", True),
    ("stack_offload_files_on", "files-on", "stack over TUN, offloads on, trace files on", True),
    ("stack_csum_no_trace", "none", "stack over TUN, checksum offload only, no trace", "checksum"),
)
# With --accel: the same stack compiled by mypyc (tests.bench.accel), an accelerator only.
ACCEL_ROWS: tuple[tuple[str, str, str, bool | str], ...] = (
    ("stack_no_trace_compiled", "none", "stack over TUN, no trace sink, compiled (mypyc)", False),
    ("stack_offload_no_trace_compiled", "none", "stack over TUN, offloads on, compiled (mypyc)", True),
)
# Same-run ratios beyond /TUN and /kernel: what trace files cost, what offloads and compiling gain.
PAIR_RATIOS = (
    ("stack_files_on", "stack_no_trace"),
    ("stack_offload_files_on", "stack_offload_no_trace"),
    ("stack_offload_no_trace", "stack_no_trace"),
    ("stack_csum_no_trace", "stack_no_trace"),
    ("stack_no_trace_compiled", "stack_no_trace"),
    ("stack_offload_no_trace_compiled", "stack_offload_no_trace"),
)


def _attempt(results: dict[str, Any], key: str, fn: Callable[[], dict[str, Any]]) -> None:
    """Run one measurement; a failure is recorded in its row and the others still run."""
    print(f"  measuring {key} ...", file=sys.stderr, flush=True)
    try:
        results[key] = fn()
    except Exception as exc:
        results[key] = {"error": f"{type(exc).__name__}: {exc}"}
        traceback.print_exc(file=sys.stderr)


def measure_stack_rows(results: dict[str, Any], lab: Any, seconds: float, repeat: int,
                       accel: Path | None = None) -> None:
    """The TUN ceiling and every stack row `repeat` times, in rounds (drift on a busy machine hits
    the rows of a round alike); each row's figures are those of its median run, with every run's
    goodput in `runs`. With accel (the compiled stack's directory), ACCEL_ROWS too."""
    from tests.bench import stack_goodput, tun_ceiling

    rows: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("tun_ceiling", functools.partial(tun_ceiling.measure, lab, seconds))]
    rows += [(key, functools.partial(stack_goodput.measure, lab, seconds, trace=mode))
             for key, mode, _ in STACK_ROWS]
    rows += [(key, functools.partial(stack_goodput.measure, lab, seconds, trace=mode, offload=offload))
             for key, mode, _, offload in OFFLOAD_ROWS]
    if accel is not None:
        rows += [(key, functools.partial(stack_goodput.measure, lab, seconds, trace=mode, offload=offload,
                                         accel=accel)) for key, mode, _, offload in ACCEL_ROWS]
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _ in rows}
    for _ in range(repeat):
        for key, run in rows:
            one: dict[str, Any] = {}
            _attempt(one, key, run)
            runs[key].append(one[key])
    for key, got in runs.items():
        good = sorted((r for r in got if "error" not in r), key=lambda r: r["bytes_per_s"])
        if not good:
            results[key] = got[-1]
            continue
        results[key] = dict(good[(len(good) - 1) // 2])
        results[key]["runs"] = [round(r["bytes_per_s"]) for r in good]
        results[key]["failed_runs"] = len(got) - len(good)


def run_lab(seconds: float, kernel_tool: str, profile: bool, profile_dir: Path, repeat: int = 1,
            accel: Path | None = None) -> dict[str, Any]:
    from lab.lab import Lab
    from tests.bench import kernel_tcp, stack_goodput

    results: dict[str, Any] = {}
    name = f"bench{os.getpid() % 100000}"
    lab = Lab.up(TOPOLOGY, name, start_daemons=False)
    try:
        _attempt(results, "kernel_tcp", lambda: kernel_tcp.measure(lab, seconds, kernel_tool))
        measure_stack_rows(results, lab, seconds, repeat, accel)
        if profile:
            _attempt(results, "stack_profiled", lambda: stack_goodput.profile(lab, seconds, profile_dir))
    finally:
        Lab.down(name)
    prof = results.get("stack_profiled", {}).get("profiles", {})
    if prof:
        results["hot_spots"] = {node: stack_goodput.hot_spots(path, 15) for node, path in prof.items()}
        results["stack_tcp_cumulative"] = {
            node: stack_goodput.cumulative_spots(path, "stack/tcp/", 10) for node, path in prof.items()}
    return results


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    def rate(key: str) -> float | None:
        value = results.get(key, {}).get("bytes_per_s")
        return float(value) if value else None

    ceiling, kernel = rate("tun_ceiling"), rate("kernel_tcp")
    out: dict[str, float | None] = {}
    for key in [row[0] for row in STACK_ROWS + OFFLOAD_ROWS + ACCEL_ROWS]:  # the sim has no TUN or kernel
        stack = rate(key)
        out[f"{key}/tun_ceiling"] = stack / ceiling if stack and ceiling else None
        out[f"{key}/kernel_tcp"] = stack / kernel if stack and kernel else None
    for a, b in PAIR_RATIOS:
        ra, rb = rate(a), rate(b)
        out[f"{a}/{b}"] = ra / rb if ra and rb else None
    if ceiling and kernel:
        out["tun_ceiling/kernel_tcp"] = ceiling / kernel
    return out


def _num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and value is not None else "-"


def table(results: dict[str, Any], r: dict[str, float | None]) -> str:
    rows: list[tuple[str, ...]] = [("measurement", "MB/s", "Mbit/s", "pkts/s", "/TUN", "/kernel", "retr",
                                    "note")]

    def add(key: str, label: str, pps: Any, note: str) -> None:
        row = results.get(key)
        if row is None:
            return
        if "error" in row:
            rows.append((label, "-", "-", "-", "-", "-", "-", "FAILED: " + row["error"][:60]))
            return
        bps = row.get("bytes_per_s")
        rows.append((
            label,
            _num(bps / 1e6 if bps else None, ".2f"),
            _num(bps * 8 / 1e6 if bps else None, ".1f"),
            _num(pps, ",.0f"),
            _num(r.get(f"{key}/tun_ceiling", 1.0 if key == "tun_ceiling" else None), ".4f"),
            _num(r.get(f"{key}/kernel_tcp", 1.0 if key == "kernel_tcp" else None), ".4f"),
            _num(row.get("retransmits"), "d"),
            note,
        ))

    tun = results.get("tun_ceiling", {})
    add("tun_ceiling", "raw TUN ceiling (1500 B, TUN>veth>TUN)", tun.get("pps"),
        f"writer {_num(tun.get('writer_pps'), ',.0f')} pkts/s")
    kern = results.get("kernel_tcp", {})
    add("kernel_tcp", f"kernel TCP on the veth ({kern.get('tool', '?')})", None, kern.get("note", ""))
    for key, _mode, label, *_ in STACK_ROWS + OFFLOAD_ROWS + ACCEL_ROWS:
        row = results.get(key, {})
        segs = row.get("segments_out")
        pps = segs / row["seconds"] if segs and row.get("seconds") else None
        note = f"srtt {_num((row.get('srtt') or 0) * 1000, '.1f')} ms"
        cpu = row.get("cpu") or {}
        if cpu:  # sender/receiver daemons: share of the run on a CPU / waiting for one
            note += ", cpu " + " ".join(f"{c.get('on_cpu', 0):.0%}+{c.get('run_queue', 0):.0%}q"
                                        for c in cpu.values())
        if key.endswith("_compiled") and not row.get("compiled"):
            note += ", NOT COMPILED"
        if row.get("verified") is False:
            note += ", NOT VERIFIED"
        if row.get("trace_file_bytes"):
            note += f", {row['trace_file_bytes'] / 1e6:.1f} MB of trace files"
        if len(row.get("runs", ())) > 1:
            note += f", median of {len(row['runs'])}"
        add(key, label, pps, note)
    prof = results.get("stack_profiled", {})
    if prof and "error" not in prof:
        rows.append(("stack over TUN under cProfile", _num(prof["bytes_per_s"] / 1e6, ".2f"), "-", "-", "-",
                     "-", _num(prof.get("retransmits"), "d"), "profiling overhead included"))
    sim = results.get("sim", {})
    add("sim", "stack on stack.sim (CPU only, 1 process)", None,
        f"{_num(sim.get('us_per_segment'), '.0f')} us/segment, both ends + apps")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i in (0, 7) else cell.rjust(w) for i, (cell, w) in
                       enumerate(zip(row, widths, strict=True))).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def memory_text(results: dict[str, Any]) -> str:
    """The connection-memory figure (tests.bench.conn_memory), one line."""
    mem = results.get("conn_memory")
    if not mem:
        return "memory: not measured"
    if "error" in mem:
        return f"memory: FAILED: {mem['error'][:80]}"
    return (f"memory: {mem['bytes_per_connection'] / 1000:.2f} KB per idle established connection "
            f"({mem['established']:,} + {mem['server_side']:,} on two simulated hosts, tracemalloc)")


def http_text(results: dict[str, Any]) -> str:
    """wrk against the stack's HTTP server (tests.bench.http_wrk), one line."""
    w = results.get("http_wrk")
    if not w:
        return "http: not measured"
    if "error" in w:
        return f"http: FAILED: {w['error'][:80]}"
    ka, fresh = w["keepalive"], w["new_connections"]
    return (f"http (wrk on a kernel node, {w['connections']} connections, trace files on): "
            f"keep-alive {_num(ka['requests_per_s'], ',.0f')} requests/s "
            f"({ka['socket_errors']} socket errors); new connections "
            f"{_num(fresh['requests_per_s'], ',.0f')}/s ({fresh['socket_errors']} socket errors)")


def pair_ratio_text(r: dict[str, float | None]) -> str:
    """The same-run ratios of PAIR_RATIOS, one line."""
    parts = [f"{a} / {b} = {_num(r.get(f'{a}/{b}'), '.3f')}" for a, b in PAIR_RATIOS]
    return "ratios: " + ";  ".join(parts)


def hot_spot_text(results: dict[str, Any], limit: int = 12) -> str:
    out: list[str] = []
    for node, rows in results.get("hot_spots", {}).items():
        role = "sender" if node == "client" else "receiver"
        out.append(f"\nhot spots, {node} daemon ({role}), by own time (cProfile; epoll.poll = idle):")
        for row in rows[:limit]:
            out.append(f"  {row['own_share'] * 100:5.1f}%  {row['own_s']:6.3f} s  {row['calls']:>8,d} calls"
                       f"  {row['function']}")
        tcp = results.get("stack_tcp_cumulative", {}).get(node, [])
        if tcp:
            out.append(f"  stack/tcp on the {role}, by cumulative time:")
            for row in tcp[:6]:
                out.append(f"  {row['cum_share'] * 100:5.1f}%  {row['cum_s']:6.3f} s  "
                           f"{row['calls']:>8,d} calls  {row['function']}")
    return "\n".join(out)


def summary(results: dict[str, Any], r: dict[str, float | None], load: tuple[float, ...]) -> dict[str, Any]:
    """The printed tables as one JSON object: figures, ratios and targets, no profiles."""
    rows = {key: {k: v for k, v in row.items() if k not in ("profiles",)}
            for key, row in results.items()
            if isinstance(row, dict) and key not in ("hot_spots", "stack_tcp_cumulative", "emulator")}
    return {"loadavg": list(load), "cpu_count": os.cpu_count(), "rows": rows, "ratios": r,
            "emulator": results.get("emulator", {}).get("rows", results.get("emulator"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each lab measurement")
    parser.add_argument("--sim-bytes", type=int, default=10_000_000, help="bytes of the simulated transfer")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--kernel-tool", choices=["auto", "iperf3", "python"], default="auto")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each stack row (median shown)")
    parser.add_argument("--wrk-seconds", type=float, default=5.0,
                        help="length of each wrk run against the stack's HTTP server (0: skip)")
    parser.add_argument("--connections", type=int, default=10_000,
                        help="idle connections for the memory figure (0: skip it)")
    parser.add_argument("--profile-dir", type=Path, default=Path("/tmp/tcplab-bench-profile"))
    parser.add_argument("--accel", action="store_true",
                        help="also the stack compiled by mypyc (built first into build/accel)")
    parser.add_argument("--sim-only", action="store_true", help="only the simulated-network benchmark")
    parser.add_argument("--emulator-only", action="store_true", help="only the link emulator benchmark")
    parser.add_argument("--no-emulator", action="store_true", help="skip the link emulator benchmark")
    parser.add_argument("--emulator-runs", type=int, default=3, help="iperf3 runs per emulator profile")
    parser.add_argument("--emulator-profiles", nargs="*", metavar="KEY",
                        help="only these emulator profiles (and the unimpaired base): "
                             + ", ".join(p.key for p in emulator_link.PROFILES))
    args = parser.parse_args(argv)
    if not 0.5 <= args.seconds <= 30:
        parser.error("--seconds: give 0.5 to 30")

    started = time.time()
    problem = None if not args.sim_only else "--sim-only given"
    problem = problem or privilege_problem()
    results: dict[str, Any] = {}
    print("tcplab benchmark", file=sys.stderr)
    if problem is None and not args.emulator_only:
        accel_dir = None
        if args.accel:
            from tests.bench import accel

            print("  compiling the stack with mypyc ...", file=sys.stderr, flush=True)
            accel_dir = accel.build()
        results.update(run_lab(args.seconds, args.kernel_tool, not args.no_profile, args.profile_dir,
                               max(args.repeat, 1), accel_dir))
        if args.wrk_seconds:
            from tests.bench import http_wrk

            _attempt(results, "http_wrk", lambda: http_wrk.measure(args.wrk_seconds))
    if problem is None and not args.no_emulator:
        _attempt(results, "emulator", lambda: emulator_link.measure(
            args.seconds, args.emulator_runs, args.emulator_profiles))
    if not args.emulator_only:
        _attempt(results, "sim", lambda: sim_goodput.measure(args.sim_bytes))
        if args.connections:
            _attempt(results, "conn_memory", lambda: conn_memory.measure(args.connections))
    r = ratios(results)
    load = os.getloadavg()
    print(f"\ntcplab benchmark: {args.seconds:g} s per lab measurement, {os.cpu_count()} cores, "
          f"load average {load[0]:.1f} at start of report")
    if problem is not None:
        print(f"NOTE: lab benchmarks skipped ({problem}); only the simulated network ran, so there are "
              "no TUN or kernel ratios. Run as root on Linux with /dev/net/tun for the full table.")
    if not args.emulator_only:
        print(table(results, r))
        print("/TUN = goodput / raw TUN ceiling (bytes/s);  /kernel = goodput / kernel TCP on the same veth;"
              "  retr = retransmitted segments")
        print(pair_ratio_text(r))
        print(memory_text(results))
        print(http_text(results))
    emulator = results.get("emulator", {})
    if emulator:
        print(f"\nlink emulator (user space, NFQUEUE): kernel TCP a -> b, iperf3 {args.seconds:g} s x "
              f"{args.emulator_runs}, median; RTT: {emulator_link.PINGS} ICMP echoes timed in user space")
        print(emulator_link.table(emulator) if "error" not in emulator else f"FAILED: {emulator['error']}")
        print("/unimp = goodput / the unimpaired link of this run;  added = median RTT - 2 x delay;"
              "  emu CPU = both emulators' CPU time / wall time")
    if results.get("hot_spots"):
        print(hot_spot_text(results))
    print("BENCH_JSON " + json.dumps(summary(results, r, load), default=str))
    if args.json:
        doc = {"started": started, "seconds": args.seconds, "skipped_lab": problem, "results": results,
               "ratios": r, "cpu_count": os.cpu_count(), "loadavg": load}
        args.json.write_text(json.dumps(doc, indent=2, default=str))
        print(f"\nJSON: {args.json}")
    failed = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
