"""What TUN offloads gain for each address family, in one run: the stack's goodput over TUN
(`tests.bench.stack_goodput`, no trace sink, payload verified) with offloads off and on, over
IPv4 (TSO4) and over IPv6 (TSO6), between the two stack nodes of topologies/two-node.yaml.

    python -m tests.bench.offload_families [--seconds 3] [--repeat 3] [--json FILE]   (as root)

Rows run in rounds (every row once per round), so drift on a busy machine hits them alike; each
row shows its median run. Printed: a table and the same-run ratios offloads on / off per family
and IPv6 / IPv4 per mode. The lab is torn down at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

TOPOLOGY = "topologies/two-node.yaml"
# key, label, offload, family
ROWS = (
    ("ipv4_off", "IPv4, offloads off", False, 4),
    ("ipv4_on", "IPv4, offloads on (TSO4)", True, 4),
    ("ipv6_off", "IPv6, offloads off", False, 6),
    ("ipv6_on", "IPv6, offloads on (TSO6)", True, 6),
)
RATIOS = (("ipv4_on", "ipv4_off"), ("ipv6_on", "ipv6_off"), ("ipv6_off", "ipv4_off"),
          ("ipv6_on", "ipv4_on"))


def measure(seconds: float, repeat: int) -> dict[str, Any]:
    """Every row `repeat` times; {key: {"bytes_per_s": median, "runs": [...], ...}}."""
    from lab.lab import Lab
    from tests.bench import stack_goodput

    name = f"offfam{os.getpid() % 100000}"
    lab = Lab.up(TOPOLOGY, name, start_daemons=False)
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, *_ in ROWS}
    try:
        hosts = {4: "server", 6: str(lab.plan.address6_of("server"))}
        for _ in range(repeat):
            for key, _label, offload, family in ROWS:
                print(f"  measuring {key} ...", file=sys.stderr, flush=True)
                try:
                    runs[key].append(stack_goodput.measure(lab, seconds, trace="none", offload=offload,
                                                           host=hosts[family]))
                except Exception as exc:  # one failed run is reported; the others still run
                    runs[key].append({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        Lab.down(name)
    results: dict[str, Any] = {}
    for key, got in runs.items():
        good = sorted((r for r in got if "error" not in r), key=lambda r: r["bytes_per_s"])
        results[key] = dict(good[(len(good) - 1) // 2]) if good else got[-1]
        results[key]["runs"] = [round(r["bytes_per_s"]) for r in good]
        results[key]["all_verified"] = bool(good) and all(r["verified"] for r in good)
    return results


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for a, b in RATIOS:
        ra, rb = results[a].get("bytes_per_s"), results[b].get("bytes_per_s")
        out[f"{a}/{b}"] = ra / rb if ra and rb else None
    return out


def report(results: dict[str, Any], r: dict[str, float | None]) -> str:
    lines = [f"{'measurement':28} {'MB/s':>8} {'Mbit/s':>8} {'retr':>5}  note", "-" * 72]
    for key, label, *_ in ROWS:
        row = results[key]
        if "error" in row:
            lines.append(f"{label:28} FAILED: {row['error'][:60]}")
            continue
        bps = row["bytes_per_s"]
        runs = ", ".join(f"{b / 1e6:.1f}" for b in row["runs"])
        note = f"srtt {(row.get('srtt') or 0) * 1000:.1f} ms, runs {runs} MB/s"
        if not row["all_verified"]:
            note += ", NOT VERIFIED"
        lines.append(f"{label:28} {bps / 1e6:8.2f} {bps * 8 / 1e6:8.1f} {row['retransmits']:5d}  {note}")
    lines.append("ratios: " + ";  ".join(
        f"{k} = {v:.3f}" if v is not None else f"{k} = -" for k, v in r.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.offload_families",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each transfer (0.5 to 30)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every row (median shown)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    if not 0.5 <= args.seconds <= 30 or not 1 <= args.repeat <= 10:
        parser.error("give --seconds 0.5 to 30 and --repeat 1 to 10")
    from lab.kernel.netns import privilege_problem

    problem = privilege_problem()
    if problem is not None:
        print(f"error: this benchmark needs a lab: {problem}", file=sys.stderr)
        return 2
    results = measure(args.seconds, args.repeat)
    r = ratios(results)
    load = os.getloadavg()
    print(f"stack over TUN, no trace sink, {args.seconds:g} s per run, {args.repeat} round(s), "
          f"{os.cpu_count()} cores, load average {load[0]:.1f}")
    print(report(results, r))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "ratios": r, "loadavg": list(load)},
                                        indent=2, default=str))
    return 0 if all("error" not in results[key] for key, *_ in ROWS) else 1


if __name__ == "__main__":
    sys.exit(main())
