"""The user-space link emulator: netem's profile on one interface's egress, for kernels without netem.

    python -m lab.kernel.impair.emulator --netns NS --ifname IF --queue N --seed S --profile JSON \
        --control DIR

It enters namespace NS, binds NFQUEUE queue N, then adds a mangle POSTROUTING rule (IPv4 and IPv6)
sending every packet that leaves IF, forwarded or locally made, to that queue. Each packet's
verdict is held and given when the profile says the packet leaves: netfilterqueue lets a verdict
be set after the callback returns, so a delayed packet costs a pending queue entry, not a copy.
Duplicates are the one case that needs a second packet: the copy is written through a raw socket
bound to IF with SO_MARK set, and the rule skips marked packets so the copy is not queued again.

The rule has no --queue-bypass on purpose: if the emulator dies, the link goes dark rather than
silently running unimpaired. On SIGTERM the emulator deletes its rules first, then releases the
packets it holds, then exits; after kill -9 the rules stay (the link stays dark) until
`backend.remove` deletes them or the namespace is deleted, which takes them along.

Control directory DIR (owned by `backend`): the emulator writes `pid`, and `stats.json` (counters,
the profile in force and the generation of the last profile update, replaced atomically, at most
every STATS_INTERVAL while anything changes); on SIGHUP it re-reads `profile.json`
({"generation": G, "profile": {...SI values...}}). It exits by itself when NS is deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import heapq
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.model.impairment import Impairment

# Marks the duplicate copies the emulator writes itself, so its rule lets them pass.
COPY_MARK = 0x7C1A0000
ETH_HEADER = 14  # netem's rate counts the link-layer frame; a veth frame has a 14-byte header
DEFAULT_LIMIT = 1000  # netem's default queue limit, in packets
KERNEL_QUEUE_LEN = 16384  # pending verdicts the kernel keeps before it drops
NETLINK_RCVBUF = 32 << 20  # room for bursts while Python is busy
STATS_INTERVAL = 0.1
NETNS_CHECK_INTERVAL = 0.5
SO_MARK = getattr(socket, "SO_MARK", 36)
IPV6_HDRINCL = 36
CLONE_NEWNET = 0x40000000


@dataclass
class Counters:
    """What the emulator did to the packets it saw; written to stats.json."""

    seen: int = 0
    delivered: int = 0
    lost: int = 0
    limit_dropped: int = 0
    duplicated: int = 0
    corrupted: int = 0
    reordered: int = 0


@dataclass
class Fate:
    """One packet's fate: the release times of the original and of a duplicate, or a drop."""

    drop_reason: str | None = None  # "loss" or "limit"
    release: float = 0.0
    copy_release: float | None = None
    corrupt: bool = False
    reordered: bool = False


@dataclass
class LinkSchedule:
    """netem's per-packet decisions, without I/O: seeded RNG in, release times out.

    Order and meaning follow sch_netem: a duplicate may be drawn, then loss (a lost packet with a
    duplicate still sends one copy); reordered packets (probability `reorder`) skip the delay;
    others leave after delay + uniform jitter; with a rate, a packet also waits for the packets
    before it to be serialised (so jitter cannot reorder a rate-limited link, as in netem);
    `limit` caps the packets held at once, tail-dropping the rest.
    """

    profile: Impairment
    rng: random.Random
    held: int = 0
    last_release: float = 0.0
    counters: Counters = field(default_factory=Counters)

    def admit(self, now: float, size: int) -> Fate:
        p, rng = self.profile, self.rng
        self.counters.seen += 1
        limit = p.limit if p.limit is not None else DEFAULT_LIMIT
        if self.held >= limit:
            self.counters.limit_dropped += 1
            return Fate(drop_reason="limit")
        copies = 1
        if p.duplicate and rng.random() < p.duplicate:
            copies += 1
        if p.loss and rng.random() < p.loss:
            copies -= 1
        if copies == 0:
            self.counters.lost += 1
            return Fate(drop_reason="loss")
        fate = Fate(corrupt=bool(p.corrupt) and rng.random() < p.corrupt)
        fate.release = self._release_time(now, size, fate)
        self.held += not fate.reordered  # a reordered original is accepted at once
        if copies == 2:
            self.counters.duplicated += 1
            fate.copy_release = self._release_time(now, size, Fate())
            self.held += 1  # the copy is always sent from the hold, even when due now
        self.counters.corrupted += fate.corrupt
        return fate

    def released(self) -> None:
        """A held packet (original or copy) has left."""
        self.held -= 1
        self.counters.delivered += 1

    def _release_time(self, now: float, size: int, fate: Fate) -> float:
        p, rng = self.profile, self.rng
        if p.reorder and rng.random() < p.reorder:
            fate.reordered = True
            self.counters.reordered += 1
            return now
        delay = p.delay
        if p.jitter:
            delay = max(0.0, delay + rng.uniform(-p.jitter, p.jitter))
        due = now + delay
        if p.rate is not None:
            due = max(due, self.last_release) + (size + ETH_HEADER) * 8 / p.rate
            self.last_release = due
        return due


def corrupt_packet(payload: bytes, rng: random.Random) -> bytes:
    """Flip one random bit past the IP header, where the transport checksum will catch it (netem
    flips one anywhere in the frame; a broken IP header would only test the kernel's parser)."""
    data = bytearray(payload)
    header = (data[0] & 0x0F) * 4 if data and data[0] >> 4 == 4 else 40
    start = header if len(data) > header else 0
    if not data:
        return payload
    index = rng.randrange(start, len(data))
    data[index] ^= 1 << rng.randrange(8)
    return bytes(data)


def rule_args(ifname: str, queue: int) -> list[str]:
    """The mangle POSTROUTING rule body (after -A/-D) that queues IF's egress to `queue`."""
    return [
        "POSTROUTING", "-o", ifname,
        "-m", "mark", "!", "--mark", f"{COPY_MARK:#x}/{COPY_MARK:#x}",
        "-m", "comment", "--comment", f"tcplab-impair {ifname}",
        "-j", "NFQUEUE", "--queue-num", str(queue),
    ]


def iptables(tool: str, action: str, ifname: str, queue: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, "-w", "-t", "mangle", action, *rule_args(ifname, queue)],
        capture_output=True, text=True, check=False,
    )


def enter_netns(netns: str) -> None:
    """setns(2) into a named namespace (os.setns arrives only in Python 3.12); never creates one."""
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def kernel_queue_drops(queue: int) -> int:
    """Packets the kernel dropped on this queue because it was full or the socket overflowed:
    losses the profile did not ask for, which tests must see as zero."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/netfilter/nfnetlink_queue").read_text().splitlines():
            cols = line.split()
            if cols and int(cols[0]) == queue:
                return int(cols[5]) + int(cols[6])  # queue_dropped, user_dropped
    return 0


@dataclass(order=True)
class _Held:
    due: float
    seq: int
    packet: Any = field(compare=False)  # netfilterqueue.Packet, or None for a duplicate copy
    copy: bytes | None = field(compare=False, default=None)


class Emulator:
    """The I/O shell around LinkSchedule: the queue, the rules, timers, signals and stats."""

    def __init__(self, netns: str, ifname: str, queue: int, seed: int, profile: Impairment,
                 control: Path) -> None:
        self.netns, self.ifname, self.queue, self.control = netns, ifname, queue, control
        self.rng = random.Random(seed)
        self.schedule = LinkSchedule(profile, self.rng)
        self.generation = 0
        self.heap: list[_Held] = []
        self.seq = 0
        self.dirty = True
        self.stop = False
        self.reload = False
        self.rules: list[str] = []
        self.raw4 = self._raw_socket(socket.AF_INET)
        self.raw6 = self._raw_socket(socket.AF_INET6)

    def _raw_socket(self, family: int) -> socket.socket:
        s = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
        s.setsockopt(socket.SOL_SOCKET, SO_MARK, COPY_MARK)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
        return s

    # -- packets --------------------------------------------------------------------------------
    def on_packet(self, packet: Any) -> None:
        now = time.monotonic()
        payload: bytes = packet.get_payload()
        fate = self.schedule.admit(now, len(payload))
        self.dirty = True
        if fate.drop_reason is not None:
            packet.drop()
            return
        if fate.copy_release is not None:
            self._hold(fate.copy_release, None, payload)
        if fate.corrupt:
            packet.set_payload(corrupt_packet(payload, self.rng))
        if fate.reordered:
            packet.accept()
            self.schedule.counters.delivered += 1
        else:
            self._hold(fate.release, packet, None)

    def _hold(self, due: float, packet: Any, copy: bytes | None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, _Held(due, self.seq, packet, copy))

    def release_due(self, now: float) -> None:
        while self.heap and self.heap[0].due <= now:
            self._release(heapq.heappop(self.heap))

    def _release(self, held: _Held) -> None:
        self.schedule.released()
        self.dirty = True
        if held.packet is not None:
            held.packet.accept()
            return
        copy = held.copy or b""
        with contextlib.suppress(OSError):
            if copy and copy[0] >> 4 == 4:
                self.raw4.sendto(copy, (socket.inet_ntop(socket.AF_INET, copy[16:20]), 0))
            elif copy:
                self.raw6.sendto(copy, (socket.inet_ntop(socket.AF_INET6, copy[24:40]), 0))

    # -- control --------------------------------------------------------------------------------
    def load_profile(self) -> None:
        data = json.loads((self.control / "profile.json").read_text())
        self.schedule.profile = Impairment.from_si(**data["profile"])
        self.generation = int(data["generation"])
        self.dirty = True

    def write_stats(self, running: bool) -> None:
        write_json(self.control / "stats.json", {
            "running": running,
            "backend": "userspace",
            "netns": self.netns,
            "ifname": self.ifname,
            "queue": self.queue,
            "generation": self.generation,
            "profile": self.schedule.profile.model_dump(),
            "held": self.schedule.held,
            "kernel_dropped": kernel_queue_drops(self.queue),
            **vars(self.schedule.counters),
        })
        self.dirty = False

    def install_rules(self) -> None:
        for tool in ("iptables", "ip6tables"):
            done = iptables(tool, "-A", self.ifname, self.queue)
            if done.returncode != 0:
                raise RuntimeError(f"{tool} could not queue {self.ifname}'s egress: {done.stderr.strip()}")
            self.rules.append(tool)

    def remove_rules(self) -> None:
        while self.rules:
            iptables(self.rules.pop(), "-D", self.ifname, self.queue)

    def run(self) -> None:
        from netfilterqueue import NetfilterQueue

        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

        nfq = NetfilterQueue()
        # Bind before the rule exists, so no packet ever meets a rule without a reader.
        nfq.bind(self.queue, self.on_packet, max_len=KERNEL_QUEUE_LEN, sock_len=NETLINK_RCVBUF)
        try:
            self.install_rules()
            (self.control / "pid").write_text(str(os.getpid()))
            self.write_stats(running=True)
            self._loop(nfq, wake_r)
        finally:
            self.remove_rules()
            # Teardown: hand back everything still held rather than losing it.
            with contextlib.suppress(Exception):
                self.release_due(float("inf"))
            nfq.unbind()
            with contextlib.suppress(OSError):
                self.write_stats(running=False)

    def _loop(self, nfq: Any, wake_fd: int) -> None:
        nfq_fd = nfq.get_fd()
        last_stats = last_ns_check = 0.0
        while not self.stop:
            now = time.monotonic()
            timeout = NETNS_CHECK_INTERVAL
            if self.heap:
                timeout = min(timeout, max(0.0, self.heap[0].due - now))
            if self.dirty:
                timeout = min(timeout, max(0.0, last_stats + STATS_INTERVAL - now))
            ready, _, _ = select.select([nfq_fd, wake_fd], [], [], timeout)
            if wake_fd in ready:
                os.read(wake_fd, 512)
            if nfq_fd in ready:
                nfq.run(block=False)  # reads until the socket is empty
            now = time.monotonic()
            self.release_due(now)
            if self.reload:
                self.reload = False
                self.load_profile()
                self.write_stats(running=True)  # the acknowledgement `backend.update` waits for
                last_stats = now
            if self.dirty and now - last_stats >= STATS_INTERVAL:
                self.write_stats(running=True)
                last_stats = now
            if now - last_ns_check >= NETNS_CHECK_INTERVAL:
                last_ns_check = now
                if not os.path.exists(f"/run/netns/{self.netns}"):
                    self.stop = True

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stop = True

    def _on_reload(self, signum: int, frame: object) -> None:
        self.reload = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.kernel.impair.emulator", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--netns", required=True)
    parser.add_argument("--ifname", required=True)
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--profile", required=True, help="the Impairment as JSON, SI values")
    parser.add_argument("--control", type=Path, required=True)
    args = parser.parse_args(argv)
    profile = Impairment.from_json(args.profile)
    enter_netns(args.netns)
    try:
        Emulator(args.netns, args.ifname, args.queue, args.seed, profile, args.control).run()
    except RuntimeError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
