"""The link emulator under load: the kernel's TCP between two `kind: kernel` nodes through the
user-space emulator (forced, even where the kernel has netem), one row per link profile.

Each profile impairs both directions of the one link (so `delay: 5ms` is a 10 ms RTT), then:
ICMP echoes timed in user space measure the RTT (median of PINGS; added latency = median RTT -
2 x delay; `rtt_role`), iperf3
runs RUNS times (median goodput), and the emulators' CPU time over the iperf3 runs is read from
/proc, and `ss -tni` on the sender late in each transfer says what bound it (the receiver's
window, its own send buffer). The unimpaired row, measured in the same lab and the same run, is
the ratio base.

Targets (printed, never asserted): 5 ms >= 1 Gbit/s, 20 ms >= 500 Mbit/s, 20 ms with 1% loss
at least what Mathis et al. allow for that loss (MSS / RTT * sqrt(3/2) / sqrt(p), a Reno model, so
that row runs Reno), and an added latency under 0.5 ms at the median.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.bench import REPO_ROOT, child_env, finish, role_argv

if TYPE_CHECKING:
    from lab.lab import Lab

PORT = 5203
PINGS = 40
MSS = 1448  # Ethernet MTU 1500 less IPv4, TCP and the timestamp option
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Profile:
    key: str
    label: str
    impairment: dict[str, str]
    cc: str = "bbr"  # namespaces allow only bbr and reno; bbr is their default
    target_bits: float | None = None  # goodput target in bit/s, when the issue names one
    mathis_loss: float | None = None  # the loss rate whose Mathis bound is the target
    sysctls: tuple[tuple[str, str], ...] = ()  # set on both nodes for this row, then restored


# The default send buffer (tcp_wmem max 4 MB) caps a flow at about 4 MB per RTT whatever the link:
# these rows lift it, to show what the emulator itself carries.
BIG_BUFFERS = (("net.ipv4.tcp_wmem", "4096 16384 33554432"), ("net.ipv4.tcp_rmem", "4096 131072 33554432"))


PROFILES = (
    Profile("none", "unimpaired (emulator off)", {}),
    Profile("delay_1ms", "delay 1ms", {"delay": "1ms"}),
    Profile("delay_5ms", "delay 5ms", {"delay": "5ms"}, target_bits=1e9),
    Profile("delay_20ms", "delay 20ms", {"delay": "20ms"}, target_bits=500e6),
    Profile("delay_20ms_loss_1pct", "delay 20ms, loss 1%", {"delay": "20ms", "loss": "1%"}, cc="reno",
            mathis_loss=0.01),
    Profile("delay_20ms_loss_1pct_bbr", "delay 20ms, loss 1%", {"delay": "20ms", "loss": "1%"}),
    Profile("loss_1pct", "loss 1%", {"loss": "1%"}, cc="reno", mathis_loss=0.01),
    Profile("delay_5ms_32mb", "delay 5ms, 32 MB socket buffers", {"delay": "5ms"}, sysctls=BIG_BUFFERS),
    Profile("delay_20ms_32mb", "delay 20ms, 32 MB socket buffers", {"delay": "20ms"}, sysctls=BIG_BUFFERS),
)


def topology(name: str) -> Any:
    from lab.model.topology import topology_from_data

    return topology_from_data({
        "name": name,
        "nodes": {"a": {"kind": "kernel"}, "b": {"kind": "kernel"}},
        "links": [{"endpoints": ["a", "b"], "addresses": ["10.79.0.1/24", "10.79.0.2/24"]}],
    }, source="<emulator benchmark>")


def mathis_bytes_per_s(rtt: float, loss: float, mss: int = MSS) -> float:
    """Mathis, Semke, Mahdavi, Ott (1997): the steady-state rate of a Reno flow with random loss p."""
    return mss / rtt * math.sqrt(1.5) / math.sqrt(loss)


def rtt_role(host: str, count: int, interval: float) -> list[float]:
    """ICMP echo round trips timed in user space (what an application waits), one at a time.
    Not ping(8): past 10 ms it prints tenths of a millisecond, and by default it reads the kernel's
    receive timestamp, taken before the emulator at the receiving end holds the reply."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    rtts: list[float] = []
    for seq in range(count):
        body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"tcplab-rtt-probe"
        total = sum(struct.unpack(f"!{len(body) // 2}H", body))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        start = time.perf_counter()
        sock.sendto(body[:2] + struct.pack("!H", ~total & 0xFFFF) + body[4:], (host, 0))
        deadline = start + 2.0
        while (left := deadline - time.perf_counter()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(2048)
            except TimeoutError:
                break
            ihl = (data[0] & 15) * 4
            kind, _, _, got_id, got_seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if kind == 0 and (got_id, got_seq) == (ident, seq):
                rtts.append(time.perf_counter() - start)
                break
        time.sleep(interval)
    return rtts


def _ping(lab: Lab, count: int) -> list[float]:
    probe = lab.spawn("a", role_argv("emulator_link", "rtt", "10.79.0.2", str(count)), cwd=str(REPO_ROOT),
                      env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = finish(probe, count * 2.1 + 30)
    try:
        return [float(rtt) for rtt in json.loads(out.strip().splitlines()[-1])]
    except (ValueError, IndexError):
        raise RuntimeError(f"RTT probe failed: {err[-300:]}") from None


def _iperf3(lab: Lab, seconds: float, cc: str) -> dict[str, Any]:
    server = lab.spawn("b", ["iperf3", "-s", "-1", "-p", str(PORT)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    limits: dict[str, float] = {}
    try:
        for _attempt in range(100):  # the server needs a moment to listen
            if f":{PORT} " in lab.exec("b", ["ss", "-Hltn"], check=False, timeout=10).stdout:
                break
            time.sleep(0.05)
        argv = ["iperf3", "-c", "10.79.0.2", "-p", str(PORT), "-t", f"{seconds:g}", "-C", cc, "-J"]
        client = lab.spawn("a", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(seconds * 0.8)
        if client.poll() is None:  # what the sender was limited by, late in the transfer
            limits = _sender_limits(lab)
        out, err = finish(client, seconds + 30)
        report = json.loads(out or "{}")
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(5)
    end = report.get("end") or {}
    received = end.get("sum_received")
    if not received:
        raise RuntimeError(f"iperf3 reported no result: {report.get('error') or err[-300:]}")
    return {"bits_per_s": float(received["bits_per_second"]),
            "retransmits": int((end.get("sum_sent") or {}).get("retransmits", 0)), **limits}


def _sender_limits(lab: Lab) -> dict[str, float]:
    """From `ss -tni` on the sender: the share of its busy time limited by the receiver's window
    and by its own send buffer, its cwnd and its smoothed RTT (the iperf3 data connection)."""
    return parse_ss(lab.exec("a", ["ss", "-tni", "dst", "10.79.0.2"], check=False, timeout=10).stdout)


def parse_ss(out: str) -> dict[str, float]:
    """The connection of `ss -tni` output that sent the most bytes: rwnd_limited and
    sndbuf_limited as fractions of its busy time, cwnd (segments) and srtt_ms."""
    best: dict[str, float] = {}
    for info in out.split("\n\t"):
        sent = re.search(r"bytes_sent:(\d+)", info)
        if not sent or int(sent.group(1)) < best.get("bytes_sent", 0):
            continue
        best = {"bytes_sent": int(sent.group(1))}
        for key in ("rwnd_limited", "sndbuf_limited"):
            found = re.search(key + r":\d+ms\(([\d.]+)%\)", info)
            best[key] = float(found.group(1)) / 100 if found else 0.0
        for key, pattern in (("cwnd", r"cwnd:(\d+)"), ("srtt_ms", r"rtt:([\d.]+)/")):
            found = re.search(pattern, info)
            if found:
                best[key] = float(found.group(1))
    best.pop("bytes_sent", None)
    return best


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def _impair(lab: Lab, profile: Profile) -> list[int]:
    """Impair both directions of the link with the user-space emulator; the emulators' pids."""
    from lab.kernel.impair import backend
    from lab.model.impairment import Impairment

    if not profile.impairment:
        return []
    imp = Impairment.model_validate(profile.impairment)
    link = lab.plan.links[0]
    for end in (link.a, link.b):
        netns = lab.plan.node(end.node).netns
        backend.remove(netns, end.ifname, lab.run_dir)
        backend.apply(netns, end.ifname, imp, lab.plan.seed_for(link.index, end is link.a), lab.run_dir)
    return backend.emulator_pids(lab.plan.node("a").netns.rsplit("-", 1)[0] + "-")


def _emulator_stats(lab: Lab) -> dict[str, Any]:
    """Each direction's emulator counters (lateness of releases, GSO packets, wake-ups...)."""
    from lab.kernel.impair import backend

    link = lab.plan.links[0]
    out: dict[str, Any] = {}
    for end in (link.a, link.b):
        stats = backend.read_stats(lab.run_dir, lab.plan.node(end.node).netns, end.ifname)
        if stats:
            out[f"{end.node}->{end.peer_node}"] = {key: stats.get(key) for key in (
                "seen", "delivered", "lost", "gso_packets", "wakeups", "sendmsgs", "late_ms", "spun_ms",
                "margin_ms", "hook", "kernel_dropped")}
    return out


def _clear(lab: Lab) -> None:
    from lab.kernel.impair import backend

    link = lab.plan.links[0]
    for end in (link.a, link.b):
        backend.remove(lab.plan.node(end.node).netns, end.ifname, lab.run_dir)


def _sysctls(lab: Lab, values: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Set `values` on both nodes; returns the values they replaced."""
    before = tuple((key, lab.exec("a", ["sysctl", "-n", key], timeout=10).stdout.strip())
                   for key, _ in values)
    for node in ("a", "b"):
        lab.exec(node, ["sysctl", "-q", "-w", *(f"{key}={value}" for key, value in values)], timeout=10)
    return before


def measure_profile(lab: Lab, profile: Profile, seconds: float, runs: int) -> dict[str, Any]:
    restore = _sysctls(lab, profile.sysctls) if profile.sysctls else ()
    pids = _impair(lab, profile)
    try:
        rtts = _ping(lab, PINGS)
        cpu0, t0 = _cpu_seconds(pids), time.monotonic()
        results = [_iperf3(lab, seconds, profile.cc) for _ in range(runs)]
        cpu = (_cpu_seconds(pids) - cpu0) / (time.monotonic() - t0) if pids else None
        stats = _emulator_stats(lab)
    finally:
        _clear(lab)
        if restore:
            _sysctls(lab, restore)
    rates = [r["bits_per_s"] for r in results]
    middle = sorted(results, key=lambda r: r["bits_per_s"])[len(results) // 2]
    rtt = statistics.median(rtts) if rtts else None
    delay = _delay_seconds(profile)
    row: dict[str, Any] = {
        "label": profile.label,
        "impairment": profile.impairment,
        "cc": profile.cc,
        "sysctls": dict(profile.sysctls),
        "bits_per_s": statistics.median(rates),
        "runs_bits_per_s": rates,
        "retransmits": int(statistics.median(r["retransmits"] for r in results)),
        "rtt_median": rtt,
        "rtt_min": min(rtts) if rtts else None,
        "pings": len(rtts),
        "added_latency_median": rtt - 2 * delay if rtt is not None else None,
        "emulator_cpu": cpu,  # CPU seconds per second, both emulators together
        "sender": {k: v for k, v in middle.items() if k not in ("bits_per_s", "retransmits")},
        "emulator_stats": stats,
        "loadavg": os.getloadavg()[0],
    }
    target = profile.target_bits
    if profile.mathis_loss is not None and rtt:
        target = mathis_bytes_per_s(rtt, profile.mathis_loss) * 8
        row["mathis_bits_per_s"] = target
    if target is not None:
        row["target_bits_per_s"] = target
        row["target_met"] = row["bits_per_s"] >= target
    return row


def _delay_seconds(profile: Profile) -> float:
    from lab.model.impairment import Impairment

    return Impairment.model_validate(profile.impairment).delay if profile.impairment else 0.0


def measure(seconds: float = 3.0, runs: int = 3, only: list[str] | None = None) -> dict[str, Any]:
    """Every profile's row in one lab of two kernel nodes; the lab is always torn down."""
    from lab.lab import Lab

    if shutil.which("iperf3") is None:
        raise RuntimeError("needs iperf3 (apt-get install iperf3)")
    previous = os.environ.get("TCPLAB_IMPAIR_BACKEND")
    os.environ["TCPLAB_IMPAIR_BACKEND"] = "userspace"
    name = f"benchemu{os.getpid() % 100000}"
    rows: dict[str, Any] = {}
    lab = Lab.up(topology(name), start_daemons=False)
    try:
        for profile in PROFILES:
            if only and profile.key not in only and profile.key != "none":
                continue
            try:
                rows[profile.key] = measure_profile(lab, profile, seconds, runs)
            except Exception as exc:
                rows[profile.key] = {"label": profile.label, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        Lab.down(name)
        if previous is None:
            os.environ.pop("TCPLAB_IMPAIR_BACKEND", None)
        else:
            os.environ["TCPLAB_IMPAIR_BACKEND"] = previous
    base = rows.get("none", {}).get("bits_per_s")
    for row in rows.values():
        if base and row.get("bits_per_s"):
            row["ratio_unimpaired"] = row["bits_per_s"] / base
    return {"seconds": seconds, "runs": runs, "rows": rows}


def _fmt(value: Any, fmt: str, scale: float = 1.0) -> str:
    return format(value * scale, fmt) if isinstance(value, (int, float)) else "-"


def table(result: dict[str, Any]) -> str:
    head = ("link profile (both directions)", "cc", "Mbit/s", "/unimp", "runs Mbit/s", "retr", "RTT ms",
            "added ms", "emu CPU", "rwnd/sndbuf-limited", "target", "met")
    rows: list[tuple[str, ...]] = [head]
    for row in result.get("rows", {}).values():
        if "error" in row:
            rows.append((row["label"], *("-" * 10), "FAILED: " + row["error"][:60]))
            continue
        target = row.get("target_bits_per_s")
        sender = row.get("sender", {})
        kind = "Mathis " if "mathis_bits_per_s" in row else ">= "
        tname = kind + _fmt(target, ".1f", 1e-6) if target else ""
        rows.append((
            row["label"], row["cc"], _fmt(row["bits_per_s"], ",.1f", 1e-6),
            _fmt(row.get("ratio_unimpaired"), ".4f"),
            " ".join(_fmt(r, ".0f", 1e-6) for r in row["runs_bits_per_s"]), str(row["retransmits"]),
            _fmt(row["rtt_median"], ".3f", 1e3), _fmt(row["added_latency_median"], ".3f", 1e3),
            _fmt(row["emulator_cpu"], ".0%"),
            f"{_fmt(sender.get('rwnd_limited'), '.0%')} / {_fmt(sender.get('sndbuf_limited'), '.0%')}",
            tname,
            {True: "yes", False: "NO"}.get(row.get("target_met"), ""),  # type: ignore[arg-type]
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i in (0, 1, 4, 10) else c.rjust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if len(argv) != 3 or argv[0] != "rtt":
        print("usage: python -m tests.bench.emulator_link rtt HOST COUNT", file=sys.stderr)
        return 2
    print(json.dumps(rtt_role(argv[1], int(argv[2]), 0.02)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
