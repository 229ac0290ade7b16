"""The impairment backends on real namespaces: two namespaces joined by one veth pair, made here.

The user-space emulator is forced (this kernel has no sch_netem; elsewhere the same tests still
exercise the fallback). Traffic is UDP between the two namespaces only, bounded in count, and
every wait polls with a deadline. Measured figures are printed (run with -s to see them).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.kernel.impair import backend
from lab.model.impairment import Impairment

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        shutil.which("iptables") is None or shutil.which("nsenter") is None,
        reason="needs iptables and nsenter (apt-get install iptables util-linux)",
    ),
    pytest.mark.timeout(120),
]

PORT = 9000

# Run inside a namespace: echo UDP datagrams back until COUNT are echoed or IDLE seconds pass.
ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
try:
    for _ in range(int(sys.argv[2])):
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
except TimeoutError:
    pass
"""

# Run inside a namespace: N echo round trips, one at a time; prints the RTTs (seconds) as JSON.
RTT = """
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
rtts = []
for i in range(int(sys.argv[3])):
    token = str(i).encode()
    start = time.monotonic()
    s.sendto(token, (sys.argv[1], int(sys.argv[2])))
    while s.recvfrom(2048)[0] != token:
        pass
    rtts.append(time.monotonic() - start)
print(json.dumps(rtts))
"""

# Run inside a namespace: count datagrams until IDLE seconds pass without one; prints the count.
COUNT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
n = 0
try:
    while True:
        s.recv(2048)
        n += 1
except TimeoutError:
    pass
print(n, flush=True)
"""

# Run inside a namespace: send N datagrams in batches; before each batch wait (bounded) until the
# emulator's stats show it has seen everything sent, so no queue overflows on the way.
BLAST = """
import json, socket, sys, time
host, stats = sys.argv[1], sys.argv[5]
port, total, batch = (int(arg) for arg in sys.argv[2:5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = 0
while sent < total:
    for _ in range(min(batch, total - sent)):
        s.sendto(b"x" * 64, (host, port))
        sent += 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if json.load(open(stats))["seen"] >= sent:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    else:
        sys.exit("the emulator did not see the batch in time")
print(sent)
"""


@dataclass
class Link:
    a: str  # namespace with interface "va", 10.199.0.1
    b: str  # namespace with interface "vb", 10.199.0.2
    run_dir: Path
    prefix: str


def _in_ns(netns: str, code: str, *args: object) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", code, *map(str, args)]


def _make_link(a: str, b: str) -> None:
    from pyroute2 import IPRoute, netns

    netns.create(a)
    netns.create(b)
    with IPRoute(netns=a) as ipr:
        ipr.link("add", ifname="va", kind="veth", peer={"ifname": "vb", "net_ns_fd": b})
    for ns, ifname, address in ((a, "va", "10.199.0.1"), (b, "vb", "10.199.0.2")):
        with IPRoute(netns=ns) as ipr:
            index = ipr.link_lookup(ifname=ifname)[0]
            ipr.addr("add", index=index, address=address, prefixlen=24)
            ipr.link("set", index=index, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


@pytest.fixture
def link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Link]:
    from pyroute2 import netns

    monkeypatch.setenv(backend.ENV_BACKEND, "userspace")
    prefix = f"tlimp{os.getpid() % 100000}"
    made = Link(f"{prefix}a", f"{prefix}b", tmp_path, prefix)
    try:
        _make_link(made.a, made.b)
        yield made
    finally:
        backend.stop_emulators(prefix)
        for ns in (made.a, made.b):
            if ns in netns.listnetns():
                netns.remove(ns)


def _start(cmd: list[str]) -> subprocess.Popen[str]:
    """Start a helper that prints "ready" once bound; return it when it has (bounded wait)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the helper prints it within a Python start-up
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
    return proc


def _rtts(link: Link, count: int = 20) -> list[float]:
    echo = _start(_in_ns(link.b, ECHO, PORT, count * 2, 5))
    try:
        out = subprocess.run(_in_ns(link.a, RTT, "10.199.0.2", PORT, count),
                             capture_output=True, text=True, timeout=60, check=True)
    finally:
        echo.kill()
        echo.wait(timeout=10)
    rtts: list[float] = json.loads(out.stdout)
    return rtts


def _both_ways(link: Link, imp: Impairment) -> None:
    assert backend.apply(link.a, "va", imp, seed=1, run_dir=link.run_dir) == "userspace"
    assert backend.apply(link.b, "vb", imp, seed=2, run_dir=link.run_dir) == "userspace"


def _nfqueue_rules(netns: str) -> list[str]:
    rules: list[str] = []
    for tool in ("iptables", "ip6tables"):
        out = subprocess.run(["nsenter", f"--net=/run/netns/{netns}", tool, "-t", "mangle", "-S"],
                             capture_output=True, text=True, check=True, timeout=10).stdout
        rules += [line for line in out.splitlines() if "NFQUEUE" in line]
    return rules


def test_rtt_is_twice_the_one_way_delay(link: Link) -> None:
    _both_ways(link, Impairment.model_validate({"delay": "20ms"}))
    rtts = _rtts(link)
    median = statistics.median(rtts)
    print(f"\nRTT over 20ms each way: median {median * 1e3:.2f} ms, "
          f"min {min(rtts) * 1e3:.2f} ms, max {max(rtts) * 1e3:.2f} ms ({len(rtts)} echoes)")
    assert 0.040 <= median <= 0.055
    assert min(rtts) >= 0.040  # no packet skips the delay


def test_loss_is_within_binomial_bounds(link: Link) -> None:
    total, rate = 3000, 0.10
    imp = Impairment.model_validate({"loss": "10%"})
    assert backend.apply(link.a, "va", imp, seed=42, run_dir=link.run_dir) == "userspace"
    counter = _start(_in_ns(link.b, COUNT, PORT, 1.5))
    try:
        stats_path = backend.control_dir(link.run_dir, link.a, "va") / "stats.json"
        subprocess.run(_in_ns(link.a, BLAST, "10.199.0.2", PORT, total, 250, stats_path),
                       capture_output=True, text=True, timeout=60, check=True)
        out, _ = counter.communicate(timeout=30)
    finally:
        counter.kill()
        counter.wait(timeout=10)
    received = int(out.split()[-1])
    stats = backend.read_stats(link.run_dir, link.a, "va")
    assert stats is not None
    sigma = (total * rate * (1 - rate)) ** 0.5
    print(f"\nloss 10% over {total} datagrams: received {received} "
          f"(expected {total * (1 - rate):.0f} ± {4 * sigma:.0f} at 4 sigma), "
          f"measured loss {1 - received / total:.2%}; emulator lost {stats['lost']}, "
          f"kernel queue drops {stats['kernel_dropped']}")
    assert stats["kernel_dropped"] == 0  # every loss was the profile's, not an overflow
    assert abs(received - total * (1 - rate)) <= 4 * sigma
    # The receiver saw what the emulator let through, less the few other packets on the link
    # (IPv6 neighbour discovery and the like), which it does not count.
    background = stats["seen"] - total
    assert 0 <= stats["delivered"] - received <= background


def test_update_changes_the_delay_live(link: Link) -> None:
    _both_ways(link, Impairment.model_validate({"delay": "10ms"}))
    before = statistics.median(_rtts(link, 10))
    slower = Impairment.model_validate({"delay": "40ms"})
    assert backend.update(link.a, "va", slower, seed=1, run_dir=link.run_dir) == "userspace"
    stats = backend.read_stats(link.run_dir, link.a, "va")
    assert stats is not None and stats["profile"]["delay"] == pytest.approx(0.040)
    after = statistics.median(_rtts(link, 10))
    print(f"\nupdate: median RTT {before * 1e3:.2f} ms at 10+10 ms, {after * 1e3:.2f} ms at 40+10 ms")
    assert 0.020 <= before <= 0.035
    assert 0.050 <= after <= 0.065


def test_remove_leaves_no_rule_and_no_process(link: Link) -> None:
    _both_ways(link, Impairment.model_validate({"delay": "20ms", "loss": "1%"}))
    assert backend.emulator_pids(link.prefix)
    assert backend.running_backend(link.a, "va", link.run_dir) == "userspace"
    backend.remove(link.a, "va", link.run_dir)
    backend.remove(link.b, "vb", link.run_dir)
    backend.remove(link.b, "vb", link.run_dir)  # idempotent
    assert backend.emulator_pids(link.prefix) == []
    assert _nfqueue_rules(link.a) == [] and _nfqueue_rules(link.b) == []
    assert backend.running_backend(link.a, "va", link.run_dir) is None
    assert statistics.median(_rtts(link, 5)) < 0.010  # the link is plain again


def test_killed_emulator_darkens_the_link_until_removed(link: Link) -> None:
    """kill -9 must not leave the link silently unimpaired: packets stop until `remove`."""
    imp = Impairment.model_validate({"delay": "5ms"})
    assert backend.apply(link.a, "va", imp, seed=1, run_dir=link.run_dir) == "userspace"
    [pid] = backend.emulator_pids(link.a)
    os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while pid in backend.emulator_pids(link.a) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _nfqueue_rules(link.b)  # the rule (at the receiving end) outlived its reader ...
    with pytest.raises(subprocess.CalledProcessError):
        _rtts(link, 1)  # ... so nothing gets through
    backend.remove(link.a, "va", link.run_dir)
    assert _nfqueue_rules(link.a) == [] and _nfqueue_rules(link.b) == []
    assert len(_rtts(link, 3)) == 3


def test_apply_picks_userspace_without_netem(link: Link, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(backend.ENV_BACKEND)
    expected = "netem" if backend.netem_available() else "userspace"
    imp = Impairment.model_validate({"delay": "1ms"})
    assert backend.apply(link.a, "va", imp, seed=1, run_dir=link.run_dir) == expected
    assert backend.running_backend(link.a, "va", link.run_dir) == expected
    backend.remove(link.a, "va", link.run_dir)


def test_forced_netem_without_netem_says_so(link: Link, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend.netem_available():
        pytest.skip("this kernel has sch_netem")
    monkeypatch.setenv(backend.ENV_BACKEND, "netem")
    with pytest.raises(backend.ImpairError, match="netem could not impair"):
        backend.apply(link.a, "va", Impairment.model_validate({"delay": "1ms"}), seed=1, run_dir=link.run_dir)
    monkeypatch.setenv(backend.ENV_BACKEND, "tc")
    with pytest.raises(backend.ImpairError, match="valid values are netem, userspace"):
        backend.choose_backend()


@pytest.mark.parametrize(("profile", "factor"), [({"duplicate": "100%"}, 2), ({"corrupt": "100%"}, 0)])
def test_duplicate_and_corrupt_reach_the_peer(link: Link, profile: dict[str, str], factor: int) -> None:
    """Duplicates arrive twice (the copy goes out through the raw socket); corrupted datagrams fail
    the receiver's UDP checksum, so none is delivered to the application."""
    total = 200
    assert backend.apply(link.a, "va", Impairment.model_validate(profile), seed=3, run_dir=link.run_dir)
    counter = _start(_in_ns(link.b, COUNT, PORT, 1.0))
    try:
        stats_path = backend.control_dir(link.run_dir, link.a, "va") / "stats.json"
        subprocess.run(_in_ns(link.a, BLAST, "10.199.0.2", PORT, total, 50, stats_path),
                       capture_output=True, text=True, timeout=60, check=True)
        out, _ = counter.communicate(timeout=30)
    finally:
        counter.kill()
        counter.wait(timeout=10)
    print(f"\n{profile}: sent {total}, received {out.split()[-1]}")
    assert int(out.split()[-1]) == factor * total


# Run inside a namespace: receive N datagrams (bounded wait); print the first-to-last spread.
SPREAD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(5.0)
print("ready", flush=True)
times = []
for _ in range(int(sys.argv[2])):
    s.recv(2048)
    times.append(time.monotonic())
print(times[-1] - times[0], flush=True)
"""

SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    s.sendto(b"r" * 1000, (sys.argv[1], int(sys.argv[2])))
"""


def test_rate_serialises_packets(link: Link) -> None:
    """At 1 Mbit/s a 1000-byte UDP datagram (1042 bytes on the wire) takes 8.336 ms."""
    count = 60
    imp = Impairment.model_validate({"rate": "1mbit"})
    assert backend.apply(link.a, "va", imp, seed=1, run_dir=link.run_dir) == "userspace"
    receiver = _start(_in_ns(link.b, SPREAD, PORT, count))
    try:
        subprocess.run(_in_ns(link.a, SEND, "10.199.0.2", PORT, count), timeout=30, check=True)
        out, _ = receiver.communicate(timeout=30)
    finally:
        receiver.kill()
        receiver.wait(timeout=10)
    spread, expected = float(out.split()[-1]), (count - 1) * 1042 * 8 / 1e6
    print(f"\nrate 1mbit: {count} datagrams over {spread * 1e3:.1f} ms (ideal {expected * 1e3:.1f} ms)")
    assert expected * 0.95 <= spread <= expected * 1.10


def test_the_emulator_holds_packets_at_the_receiving_end(link: Link) -> None:
    """a's egress is impaired in b's PREROUTING (a held packet no longer belongs to a's socket);
    nothing is queued in a, and `tcplab status` still finds the emulator under a's interface."""
    assert backend.apply(link.a, "va", Impairment.model_validate({"delay": "5ms"}), seed=1,
                         run_dir=link.run_dir) == "userspace"
    assert _nfqueue_rules(link.a) == []
    rules = _nfqueue_rules(link.b)  # one for IPv4, one for IPv6
    assert len(rules) == 2 and all(r.startswith("-A PREROUTING -i vb ") for r in rules), rules
    stats = backend.read_stats(link.run_dir, link.a, "va")
    assert stats is not None and stats["hook"] == {"chain": "PREROUTING", "netns": link.b, "ifname": "vb"}
    assert backend.running_backend(link.a, "va", link.run_dir) == "userspace"


# Run inside a namespace: accept one TCP connection and read until EOF; print the byte count.
SINK = """
import socket, sys
s = socket.create_server(("0.0.0.0", int(sys.argv[1])))
s.settimeout(30)
print("ready", flush=True)
conn, _ = s.accept()
conn.settimeout(30)
n = 0
while data := conn.recv(1 << 20):
    n += len(data)
conn.close()
print(n, flush=True)
"""

# Run inside a namespace: send N bytes over TCP; print the most segments ever unacknowledged
# (tcpi_unacked, read from TCP_INFO after every write) as JSON.
BULK = """
import json, socket, struct, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
chunk, left, most = bytes(1 << 16), int(sys.argv[3]), 0
while left > 0:
    left -= s.send(chunk[:left])
    most = max(most, struct.unpack_from("I", s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 24)[0])
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(json.dumps({"unacked_max": most}))
"""


@pytest.mark.parametrize(("profile", "gso"), [
    ({"delay": "20ms"}, True),
    ({"delay": "20ms", "loss": "0.5%"}, False),
])
def test_a_tcp_sender_is_bound_by_its_window_not_by_held_packets(
    link: Link, profile: dict[str, str], gso: bool
) -> None:
    """Held on the sender's egress, its packets stayed charged to its socket and TCP Small Queues
    kept about 8 segments in flight over a 20 ms link. Held at the receiving end, the sender's
    window alone bounds what is in flight. Delay-only links queue GSO super-packets whole; a
    lossy link gets wire-sized packets, since loss is decided per packet on the wire."""
    total = 8 << 20
    _both_ways(link, Impairment.model_validate(profile))
    sink = _start(_in_ns(link.b, SINK, PORT))
    try:
        out = subprocess.run(_in_ns(link.a, BULK, "10.199.0.2", PORT, total),
                             capture_output=True, text=True, timeout=90, check=True)
        received, _ = sink.communicate(timeout=30)
    finally:
        sink.kill()
        sink.wait(timeout=10)
    unacked = json.loads(out.stdout)["unacked_max"]
    stats = backend.read_stats(link.run_dir, link.a, "va")
    assert stats is not None
    print(f"\n{profile}: {total} bytes, at most {unacked} segments unacknowledged; the emulator saw "
          f"{stats['seen']} packets, {stats['gso_packets']} GSO; late releases (ms) {stats['late_ms']}")
    assert int(received.split()[-1]) == total
    assert unacked > 100
    assert stats["gso"] is gso and (stats["gso_packets"] > 0) is gso
