"""The user-space link emulator: netem's profile on one link direction, for kernels without netem.

    python -m lab.kernel.impair.emulator --netns NS --ifname IF --queue N --seed S --profile JSON \
        --control DIR [--hook-chain PREROUTING --hook-netns PEER_NS --hook-ifname PEER_IF]

NS/IF is the sending end of the link direction. Where its packets are held matters: a packet held
on the sender's own egress (mangle POSTROUTING in NS) still belongs to the sending socket, so TCP
Small Queues and the socket's write memory stop the sender after a few held packets, and a 20 ms
link carried 2 Mbit/s (netem avoids this by orphaning what it holds). So the backend hooks the
receiving end instead: mangle PREROUTING of the veth peer PEER_IF in PEER_NS, where the kernel has
already orphaned the packet (ip_rcv_core); the sender is then bound by its congestion window and
the receiver's window alone, as over netem. Without a veth peer in a named namespace the emulator
falls back to POSTROUTING of IF in NS, which is correct but throttles a local TCP sender.

It enters the hook's namespace, binds NFQUEUE queue N (`nfqueue`, its own small netlink client),
then adds the rule (IPv4 and IPv6) sending every packet of the direction, forwarded or locally
made, to that queue. Each packet's verdict is held and given when the profile says the packet
leaves, so a delayed packet costs a pending queue entry, not a copy. Per wake-up it reads the
waiting packets (until a release falls due) and sends all verdicts due in one sendmsg (a single
"all up to id N" verdict when they are the oldest held). Profiles that only delay (no loss,
duplication, corruption or rate) take GSO super-packets whole (NFQA_CFG_F_GSO) and copy only
their headers: up to 64 KB per packet, as netem sees them on a GSO-capable device. Other profiles
get MTU-sized packets, because loss, duplication, corruption and rate are decided per packet on
the wire.
Duplicates are the one case that needs a second packet: the copy is written through a raw socket
(on PREROUTING: routed from the receiving namespace; on POSTROUTING: bound to IF with SO_MARK set,
which the rule skips so the copy is not queued again).

Timing: the delay counts from the kernel's receive stamp of the packet (`arrival`), so the time
this process takes to wake up is not added to it; the loop wakes early enough before a release to
have its verdicts built when it is due (`pacer`: a timer wake-up and Python's work took 0.1 to
0.2 ms, which each direction added); and the emulator runs SCHED_FIFO (`raise_priority`) so
releases leave on time on a busy machine. A consequence of the hook: tcpdump
on either end of the link sees a direction's packets before the emulator acts on them (the
receiving interface's tap runs before PREROUTING), so captures show what was sent, lost packets
included, at their sending times; the receiving stack or socket sees them impaired.

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
import math
import os
import random
import signal
import socket
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lab.kernel.impair import nfqueue
from lab.kernel.impair.pacer import Pacer, arrival, lateness
from lab.kernel.impair.schedule import Counters, Fate, LinkSchedule, corrupt_packet
from lab.model.impairment import Impairment

__all__ = ["Counters", "Emulator", "Fate", "Hook", "LinkSchedule", "corrupt_packet", "main", "rule_args"]

# Marks the duplicate copies the emulator writes itself, so its rule lets them pass.
COPY_MARK = 0x7C1A0000
KERNEL_QUEUE_LEN = 16384  # pending verdicts the kernel keeps before it drops
NETLINK_RCVBUF = 32 << 20  # room for bursts while Python is busy
HEADER_COPY = 128  # bytes copied of each packet when the payload itself is not needed
READ_BATCH = 256  # packets read per wake-up at most, so releases are not kept waiting
READ_SLICE = 50e-6  # the least time given to reading per wake-up, however overdue a release is
LATE_SAMPLES = 1000  # recent release wake-ups whose lateness stats.json summarises
SO_TIMESTAMP = 29  # any socket asking for it makes the kernel stamp every received packet
STATS_INTERVAL = 0.1
NETNS_CHECK_INTERVAL = 0.5
SO_MARK = getattr(socket, "SO_MARK", 36)
IPV6_HDRINCL = 36
CLONE_NEWNET = 0x40000000


def wants_gso(profile: Impairment) -> bool:
    """Whether whole GSO super-packets may be queued: only when no decision is per wire packet."""
    return not (profile.loss or profile.duplicate or profile.corrupt or profile.rate is not None)


def copy_range(profile: Impairment) -> int:
    """Bytes of each packet to copy to user space: all of it only when a copy or a corrupted
    version must be written back."""
    return nfqueue.MAX_COPY_RANGE if profile.duplicate or profile.corrupt else HEADER_COPY


def rule_args(chain: str, ifname: str, queue: int) -> list[str]:
    """The mangle rule body (after -A/-D) that queues the direction's packets to `queue`:
    PREROUTING -i IF in the receiving namespace, or POSTROUTING -o IF in the sending one."""
    if chain == "PREROUTING":
        match = ["-i", ifname]
    elif chain == "POSTROUTING":
        match = ["-o", ifname, "-m", "mark", "!", "--mark", f"{COPY_MARK:#x}/{COPY_MARK:#x}"]
    else:
        raise ValueError(f"no hook {chain!r}: PREROUTING or POSTROUTING")
    return [
        chain, *match,
        "-m", "comment", "--comment", f"tcplab-impair {ifname}",
        "-j", "NFQUEUE", "--queue-num", str(queue),
    ]


def iptables(tool: str, action: str, chain: str, ifname: str, queue: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, "-w", "-t", "mangle", action, *rule_args(chain, ifname, queue)],
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


def raise_priority() -> str:
    """Run as the link, not as one more process: SCHED_FIFO at the lowest real-time priority, so a
    release due now is not kept waiting behind the machine's other work (netem runs in softirq,
    ahead of every process). It blocks in select between packets, and the kernel keeps 5% of each
    CPU for normal processes (sched_rt_runtime_us). Falls back to nice -10, then to nothing.
    Returns the policy in force, for stats.json."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        return "fifo"
    except (OSError, AttributeError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
        return "nice -10"
    except OSError:
        return "normal"


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


@dataclass(frozen=True)
class Hook:
    """Where the emulator queues the direction's packets: `chain` of `ifname` in `netns`."""

    chain: str  # "PREROUTING" (the receiving end) or "POSTROUTING" (the sending end)
    netns: str
    ifname: str


# A held release: (due, sequence, packet id or -1 for a duplicate copy, replacement bytes or copy).
_Held = tuple[float, int, int, bytes | None]
_Verdict = tuple[int, int, bytes | None]


class QueueIO(Protocol):
    """What a wake-up needs of the kernel queue (`nfqueue.NfQueue`; a stand-in in tests)."""

    def receive(self, limit: int = ..., until: float = ...) -> list[nfqueue.QueuedPacket]: ...
    def prepare(self, verdicts: list[_Verdict]) -> list[bytes]: ...
    def send(self, datagrams: list[bytes]) -> int: ...


class Emulator:
    """The I/O shell around LinkSchedule: the queue, the rules, timers, signals and stats."""

    def __init__(self, netns: str, ifname: str, queue: int, seed: int, profile: Impairment,
                 control: Path, hook: Hook | None = None) -> None:
        self.netns, self.ifname, self.queue, self.control = netns, ifname, queue, control
        self.hook = hook or Hook("POSTROUTING", netns, ifname)
        self.rng = random.Random(seed)
        self.schedule = LinkSchedule(profile, self.rng)
        self.generation = 0
        self.heap: list[_Held] = []
        self.seq = 0
        self.verdicts: list[_Verdict] = []  # given in one sendmsg at the end of each wake-up
        self.wakeups = 0
        self.sendmsgs = 0
        self.gso_packets = 0
        self.late: deque[float] = deque(maxlen=LATE_SAMPLES)
        self.pacer = Pacer()
        self.scheduling = "normal"
        self.dirty = True
        self.stop = False
        self.reload = False
        self.rules: list[str] = []
        self.raw: dict[int, socket.socket] = {}  # per address family, opened at the first duplicate
        # Kept open so that received packets carry their arrival time (see `arrival`).
        self.stamper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.stamper.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)

    def _raw_socket(self, family: int) -> socket.socket:
        s = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
        s.setsockopt(socket.SOL_SOCKET, SO_MARK, COPY_MARK)
        if self.hook.chain == "POSTROUTING":  # on PREROUTING the copy is routed like the original
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
        return s

    # -- packets --------------------------------------------------------------------------------
    def on_packet(self, packet: nfqueue.QueuedPacket, now: float) -> None:
        fate = self.schedule.admit(now, packet.length)
        self.gso_packets += packet.gso
        if fate.drop_reason is not None:
            self.verdicts.append((packet.id, nfqueue.NF_DROP, None))
            return
        whole = len(packet.payload) == packet.length  # only then can it be copied or changed
        if fate.copy_release is not None:
            self._hold(fate.copy_release, -1, packet.payload if whole else None)
        replacement = corrupt_packet(packet.payload, self.rng) if fate.corrupt and whole else None
        if fate.reordered:
            self.verdicts.append((packet.id, nfqueue.NF_ACCEPT, replacement))
            self.schedule.counters.delivered += 1
        else:
            self._hold(fate.release, packet.id, replacement)

    def _hold(self, due: float, packet_id: int, data: bytes | None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (due, self.seq, packet_id, data))

    def release_due(self, now: float) -> None:
        heap = self.heap
        if not heap or heap[0][0] > now:
            return
        while heap and heap[0][0] <= now:
            _due, _seq, packet_id, data = heapq.heappop(heap)
            self.schedule.released()
            if packet_id >= 0:
                self.verdicts.append((packet_id, nfqueue.NF_ACCEPT, data))
            elif data:
                self._send_copy(data)
        self.dirty = True

    def _send_copy(self, copy: bytes) -> None:
        family, dst = ((socket.AF_INET, copy[16:20]) if copy[0] >> 4 == 4 else (socket.AF_INET6, copy[24:40]))
        with contextlib.suppress(OSError):
            if family not in self.raw:
                self.raw[family] = self._raw_socket(family)
            self.raw[family].sendto(copy, (socket.inet_ntop(family, dst), 0))

    def flush(self, nfq: QueueIO) -> None:
        if self.verdicts:
            self.sendmsgs += nfq.send(nfq.prepare(self.verdicts))
            self.verdicts = []

    # -- control --------------------------------------------------------------------------------
    def load_profile(self) -> None:
        data = json.loads((self.control / "profile.json").read_text())
        self.schedule.profile = Impairment.from_si(**data["profile"])
        self.generation = int(data["generation"])
        self.dirty = True

    def configure(self, nfq: nfqueue.NfQueue) -> None:
        """Copy range and GSO for the profile in force (changed live on a profile update)."""
        profile = self.schedule.profile
        nfq.configure(copy_range(profile), KERNEL_QUEUE_LEN, wants_gso(profile))

    def write_stats(self, running: bool, nfq: nfqueue.NfQueue | None = None) -> None:
        write_json(self.control / "stats.json", {
            "running": running,
            "backend": "userspace",
            "netns": self.netns,
            "ifname": self.ifname,
            "hook": vars(self.hook),
            "queue": self.queue,
            "gso": wants_gso(self.schedule.profile),
            "generation": self.generation,
            "profile": self.schedule.profile.model_dump(),
            "held": self.schedule.held,
            "kernel_dropped": kernel_queue_drops(self.queue),
            **vars(self.schedule.counters),
            "gso_packets": self.gso_packets,
            "wakeups": self.wakeups,
            "sendmsgs": self.sendmsgs,
            "netlink_errors": nfq.errors if nfq else 0,
            "overruns": nfq.overruns if nfq else 0,
            "late_ms": lateness(self.late),
            "spun_ms": round(self.pacer.spun * 1e3, 3),  # CPU spent spinning just before releases
            "margin_ms": round(self.pacer.margin * 1e3, 3),
            "scheduling": self.scheduling,
        })
        self.dirty = False

    def install_rules(self) -> None:
        for tool in ("iptables", "ip6tables"):
            done = iptables(tool, "-A", self.hook.chain, self.hook.ifname, self.queue)
            if done.returncode != 0:
                raise RuntimeError(f"{tool} could not queue {self.hook.chain} of {self.hook.ifname}: "
                                   f"{done.stderr.strip()}")
            self.rules.append(tool)

    def remove_rules(self) -> None:
        while self.rules:
            iptables(self.rules.pop(), "-D", self.hook.chain, self.hook.ifname, self.queue)

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

        try:
            nfq = nfqueue.NfQueue(self.queue, NETLINK_RCVBUF)
        except OSError as exc:
            raise RuntimeError(f"could not bind NFQUEUE {self.queue}: {exc}") from exc
        # Bind before the rule exists, so no packet ever meets a rule without a reader.
        try:
            self.configure(nfq)
            self.install_rules()
            (self.control / "pid").write_text(str(os.getpid()))
            self.write_stats(running=True, nfq=nfq)
            self._loop(nfq, wake_r)
        finally:
            self.remove_rules()
            # Teardown: hand back everything still held or still unread rather than losing it.
            with contextlib.suppress(Exception):
                self.verdicts.extend((p.id, nfqueue.NF_ACCEPT, None) for p in nfq.receive(1 << 30))
                self.release_due(float("inf"))
                self.flush(nfq)
            nfq.close()
            with contextlib.suppress(OSError):
                self.write_stats(running=False, nfq=nfq)

    def step(self, nfq: QueueIO, fds: list[int], limit: float) -> list[int]:
        """One wake-up: wait for a packet, the next release or `limit`; admit what was read; if a
        release is near, build its verdicts first and send them when it is due (`Pacer`).
        Returns the descriptors that were readable."""
        pacer = self.pacer
        ready = pacer.wait(fds, self.heap[0][0] if self.heap else None, limit)
        self.wakeups += 1
        if ready:
            now = pacer.clock()
            realtime_offset = pacer.wall() - now
            # Read until the next release is near, READ_SLICE at least (a batch of MTU-sized
            # packets takes Python milliseconds, and held a due release that long).
            until = max(self.heap[0][0] - pacer.margin, now + READ_SLICE) if self.heap else math.inf
            for packet in nfq.receive(READ_BATCH, until):
                self.on_packet(packet, arrival(packet.timestamp, realtime_offset, pacer.clock()))
            self.dirty = True
        now = pacer.clock()
        if not self.heap or self.heap[0][0] > now + pacer.margin:
            self.flush(nfq)  # drops and reordered packets: nothing is due yet
            return ready
        first = self.heap[0][0]
        self.release_due(max(now, first))
        datagrams = nfq.prepare(self.verdicts)
        self.verdicts = []
        pacer.hold(first)
        self.late.append(pacer.clock() - first)  # how late this wake-up's first release left
        self.sendmsgs += nfq.send(datagrams)
        return ready

    def _loop(self, nfq: nfqueue.NfQueue, wake_fd: int) -> None:
        last_stats = last_ns_check = 0.0
        namespaces = {f"/run/netns/{self.netns}", f"/run/netns/{self.hook.netns}"}
        while not self.stop:
            limit = last_ns_check + NETNS_CHECK_INTERVAL
            if self.dirty:
                limit = min(limit, last_stats + STATS_INTERVAL)
            if wake_fd in self.step(nfq, [nfq.fileno(), wake_fd], limit):
                os.read(wake_fd, 512)
            now = self.pacer.clock()
            if self.reload:
                self.reload = False
                self.load_profile()
                self.configure(nfq)
                self.write_stats(running=True, nfq=nfq)  # the acknowledgement `backend.update` waits for
                last_stats = now
            if self.dirty and now - last_stats >= STATS_INTERVAL:
                self.write_stats(running=True, nfq=nfq)
                last_stats = now
            if now - last_ns_check >= NETNS_CHECK_INTERVAL:
                last_ns_check = now
                if not all(os.path.exists(path) for path in namespaces):
                    self.stop = True

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stop = True

    def _on_reload(self, signum: int, frame: object) -> None:
        self.reload = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.kernel.impair.emulator",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--netns", required=True, help="the sending end's namespace")
    parser.add_argument("--ifname", required=True, help="the sending end's interface")
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--profile", required=True, help="the Impairment as JSON, SI values")
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--hook-chain", choices=["PREROUTING", "POSTROUTING"], default="POSTROUTING")
    parser.add_argument("--hook-netns", help="namespace of the hooked interface (default: --netns)")
    parser.add_argument("--hook-ifname", help="the hooked interface (default: --ifname)")
    parser.add_argument("--no-realtime", dest="realtime", action="store_false",
                        help="stay a normal process (default: SCHED_FIFO, see raise_priority)")
    args = parser.parse_args(argv)
    profile = Impairment.from_json(args.profile)
    hook = Hook(args.hook_chain, args.hook_netns or args.netns, args.hook_ifname or args.ifname)
    enter_netns(hook.netns)
    try:
        emulator = Emulator(args.netns, args.ifname, args.queue, args.seed, profile, args.control, hook)
        emulator.scheduling = raise_priority() if args.realtime else "normal"
        emulator.run()
    except RuntimeError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
