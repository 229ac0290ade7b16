"""The raw TUN ceiling: how many packets per second Python can push through TUN → kernel → veth →
kernel → TUN when nothing else happens per packet. No stack runs: a writer process in the client
namespace writes one 1500-byte IPv4/UDP packet, addressed to the server's stack address, to tun0
over and over; the kernel forwards it over the veth into the server namespace's tun0, where a
reader process reads packets the way `stack.tun.TunDriver` does (non-blocking, one `os.read` each,
same read size). The reader's count over the window is the ceiling; the writer's count is printed
too (the kernel drops what its backlog cannot hold, so the writer can be ahead).

Roles, run inside a node's namespace (the lab must be up without daemons, tun0 unattached):

    python -m tests.bench.tun_ceiling read  --seconds 3 [--start-timeout 5]
    python -m tests.bench.tun_ceiling write --src 10.2.0.1 --dst 10.2.0.2 --seconds 4

`measure(lab, seconds)` runs both and returns the figures.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import struct
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from stack.checksum import internet_checksum
from stack.tun import READ_SIZE, open_tun
from stack.wire.ipv4 import pack_addr
from tests.bench import REPO_ROOT, child_env, finish, last_json_line, role_argv

if TYPE_CHECKING:
    from lab.lab import Lab

PACKET_SIZE = 1500
UDP_PORT = 9  # discard: nobody answers, and the reader reads raw packets anyway
CHECK_EVERY = 512  # packets between clock reads


def build_packet(src: str, dst: str, size: int = PACKET_SIZE) -> bytes:
    """One IPv4/UDP packet of `size` octets with a valid header checksum (UDP checksum 0: none)."""
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 0, 0x4000, 64, 17, 0,
                                   pack_addr(src), pack_addr(dst)))
    struct.pack_into("!H", header, 10, internet_checksum(header))
    udp = struct.pack("!HHHH", UDP_PORT, UDP_PORT, size - 20, 0)
    return bytes(header) + udp + bytes(size - 28)


def read_role(ifname: str, seconds: float, start_timeout: float, read_size: int = READ_SIZE
              ) -> dict[str, Any]:
    """Attach to tun0, say `ready`, count packets for `seconds` from the first one."""
    fd, dev = open_tun(ifname)
    print("ready", flush=True)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    read, clock = os.read, time.monotonic
    if not poller.poll(start_timeout * 1000):
        return {"packets": 0, "bytes": 0, "seconds": 0.0, "error": f"no packet within {start_timeout}s"}
    t0 = clock()
    deadline = t0 + seconds
    packets = nbytes = 0
    now = t0
    while now < deadline:
        try:
            for _ in range(CHECK_EVERY):
                nbytes += len(read(fd, read_size))
                packets += 1
        except BlockingIOError:
            now = clock()
            poller.poll(max(0.0, deadline - now) * 1000)
        now = clock()
    elapsed = now - t0
    del dev  # closes the fd
    return {"packets": packets, "bytes": nbytes, "seconds": elapsed, "read_size": read_size}


def write_role(ifname: str, src: str, dst: str, seconds: float) -> dict[str, Any]:
    """Write the same packet to tun0 as fast as one process can, for `seconds`."""
    fd, dev = open_tun(ifname)
    packet = build_packet(src, dst)
    write, clock = os.write, time.monotonic
    t0 = clock()
    deadline = t0 + seconds
    written = dropped = 0
    now = t0
    while now < deadline:
        for _ in range(CHECK_EVERY):
            try:
                write(fd, packet)
                written += 1
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                    raise
                dropped += 1
        now = clock()
    del dev
    return {"packets": written, "bytes": written * len(packet), "seconds": now - t0, "dropped": dropped}


def measure(lab: Lab, seconds: float = 3.0, read_size: int = READ_SIZE) -> dict[str, Any]:
    """Reader in the server namespace, writer in the client namespace; the figures of both."""
    src, dst = lab.address_of("client"), lab.address_of("server")
    opts: dict[str, Any] = {"cwd": str(REPO_ROOT), "env": child_env(),
                            "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    reader = lab.spawn("server", role_argv("tun_ceiling", "read", "--seconds", str(seconds),
                                               "--read-size", str(read_size)), **opts)
    writer: subprocess.Popen[bytes] | None = None
    try:
        assert reader.stdout is not None
        if reader.stdout.readline().strip() != b"ready":  # bounded: the reader exits on any error
            _, err = finish(reader, 5)
            raise RuntimeError(f"TUN reader did not start: {err[-500:]}")
        writer = lab.spawn("client", role_argv("tun_ceiling", "write", "--src", src, "--dst", dst,
                                               "--seconds", str(seconds + 1.0)), **opts)
        rout, rerr = finish(reader, seconds + 10)
        wout, werr = finish(writer, 10)
    finally:
        for proc in (reader, writer):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
    try:
        got, sent = last_json_line(rout), last_json_line(wout)
    except ValueError as exc:
        raise RuntimeError(f"TUN ceiling: {exc}; reader: {rerr[-300:]} writer: {werr[-300:]}") from None
    if got.get("error"):
        raise RuntimeError(f"TUN ceiling: {got['error']}")
    secs = got["seconds"] or 1e-9
    return {
        "packets": got["packets"],
        "bytes": got["bytes"],
        "seconds": got["seconds"],
        "pps": got["packets"] / secs,
        "bytes_per_s": got["bytes"] / secs,
        "writer_pps": sent["packets"] / (sent["seconds"] or 1e-9),
        "packet_size": PACKET_SIZE,
        "read_size": got.get("read_size"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.tun_ceiling", description=__doc__)
    parser.add_argument("role", choices=["read", "write"])
    parser.add_argument("--ifname", default="tun0")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--start-timeout", type=float, default=5.0)
    parser.add_argument("--read-size", type=int, default=READ_SIZE, help="bytes asked of each read")
    parser.add_argument("--src", default="10.2.0.1")
    parser.add_argument("--dst", default="10.2.0.2")
    args = parser.parse_args(argv)
    if args.role == "read":
        result = read_role(args.ifname, args.seconds, args.start_timeout, args.read_size)
    else:
        result = write_role(args.ifname, args.src, args.dst, args.seconds)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
