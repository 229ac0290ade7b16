"""Driver 1: the stack on a Linux TUN device, pumped by asyncio (see `stack.driver` for the rule).

The TUN file descriptor is non-blocking and registered with `loop.add_reader`. When it becomes
readable the driver reads every packet that is ready (until EAGAIN, or `max_batch` packets so one
busy link cannot starve the loop; the reader fires again at once if more are waiting), hands the
batch to `StackRuntime.deliver`, which feeds the host and pumps: transmit, wake, re-arm the timer.

Transmit is one `os.write` per IP packet. A full device queue (EAGAIN, ENOBUFS) or a device that
is going away is a drop, counted in `counters`, never an exception: TCP recovers from loss.
A packet to the host's own address never goes to the device: it is looped back inside (as Linux
sends it through `lo`), so a packet that arrives from the device with our own source address is
always forged, and the host drops it as martian (stack.martian).
Malformed packets are the host's business (it drops and counts them under their reason).

The device is opened with IFF_TUN | IFF_NO_PI: raw IP packets (IPv4 or IPv6, told apart by the
version nibble: the host does), no packet-information header.
With `offload=True` it is opened through `stack.tundev` with IFF_VNET_HDR and checksum/TSO4/TSO6
offloads: every read and write then carries a virtio-net header, which the Host (made with
`offload=True`) reads and writes; a read may return a 64 KB super-segment of either family.
Opening attaches to an existing (persistent) device of that name, or creates one, in the network
namespace of the calling thread.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections import Counter
from typing import TYPE_CHECKING

from stack.driver import StackRuntime
from stack.wire import vnet

if TYPE_CHECKING:
    from stack.host import Host

READ_SIZE = 65536  # larger than any MTU we configure: one read returns one whole packet
READ_SIZE_OFFLOAD = 65536 + 64  # a whole 64 KB super-segment and its virtio-net header
MAX_BATCH = 512

_DROP_ERRNOS = {
    errno.EAGAIN: "tx_drop_full",
    errno.ENOBUFS: "tx_drop_nobufs",
    errno.EIO: "tx_drop_eio",  # the device has no carrier / is being torn down
    errno.EINVAL: "tx_drop_invalid",
    errno.EBADFD: "tx_drop_badfd",
    errno.EBADF: "tx_drop_badf",
}


def open_tun(name: str) -> tuple[int, object]:
    """Open (attach to or create) TUN device `name`; returns (non-blocking fd, device object).

    The device object must stay referenced while the fd is used (closing it closes the fd).
    """
    import pytun  # local import: only the TUN driver needs the C extension

    dev = pytun.TunTapDevice(name=name, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
    fd = int(dev.fileno())
    os.set_blocking(fd, False)
    return fd, dev


class TunDriver:
    """Runs a Host over TUN device `name` on `loop`. `runtime` is the StackRuntime to give to
    `stack.socket.Stack`; `counters` counts packets, bytes, batches and drops of the device path."""

    def __init__(
        self, name: str, host: Host, loop: asyncio.AbstractEventLoop, *, max_batch: int = MAX_BATCH
    ) -> None:
        self.name = name
        self.host = host
        self.offload = host.offload  # the device speaks the host's framing
        self.read_size = READ_SIZE_OFFLOAD if host.offload else READ_SIZE
        self.loop = loop
        self.max_batch = max_batch
        self.runtime = StackRuntime(host, loop, self.transmit)
        self._counters: Counter[str] = Counter()
        # Sent packets and octets: plain integers, one add each per packet (a Counter's item is
        # a dictionary update, 3% of a sending daemon's time per segment).
        self._tx_packets = 0
        self._tx_bytes = 0
        self._fd: int | None = None
        self._dev: object | None = None

    @property
    def counters(self) -> Counter[str]:
        """Packets, octets, batches and drops of the device path so far (a copy)."""
        counters = self._counters.copy()
        counters["tx_packets"] += self._tx_packets
        counters["tx_bytes"] += self._tx_bytes
        return +counters  # without the zero counts, as before a first packet

    @property
    def fd(self) -> int | None:
        return self._fd

    @property
    def running(self) -> bool:
        return self._fd is not None

    def start(self) -> None:
        """Open the device and start reading. Call from the loop's thread."""
        if self._fd is not None:
            return
        if self.offload:
            from stack.tundev import open_tun_offload

            self._fd, self._dev = open_tun_offload(self.name, tso=self.host.tso)
        else:
            self._fd, self._dev = open_tun(self.name)
        self.loop.add_reader(self._fd, self._on_readable)

    def stop(self) -> None:
        """Stop reading and close the device (idempotent). Later transmits count as drops."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        self.loop.remove_reader(fd)
        dev, self._dev = self._dev, None
        close = getattr(dev, "close", None)
        if callable(close):
            close()
        else:
            os.close(fd)

    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        batch: list[bytes] = []
        read = os.read
        size = self.read_size
        try:
            for _ in range(self.max_batch):
                batch.append(read(fd, size))
        except BlockingIOError:
            pass
        except OSError as exc:
            self._counters[f"rx_error_{errno.errorcode.get(exc.errno or 0, exc.errno)}"] += 1
        if not batch:
            return
        c = self._counters
        c["rx_batches"] += 1
        c["rx_packets"] += len(batch)
        c["rx_bytes"] += sum(map(len, batch))
        self.runtime.deliver(batch)

    def transmit(self, packet: bytes) -> None:
        ip = vnet.HEADER_LEN if self.offload else 0  # where the IP header starts
        if packet[ip + 16 : ip + 20] == self.host.address_raw and packet[ip] >> 4 == 4:  # IPv4 to us
            self._counters["tx_loopback"] += 1
            self.loop.call_soon(self.runtime.deliver, (packet,), True)  # not inside this pump
            return
        fd = self._fd
        if fd is None:
            self._counters["tx_drop_stopped"] += 1
            return
        try:
            os.write(fd, packet)
        except OSError as exc:
            reason = _DROP_ERRNOS.get(exc.errno or 0, f"tx_drop_errno_{exc.errno}")
            self._counters[reason] += 1
            self._counters["tx_drops"] += 1
            return
        self._tx_packets += 1
        self._tx_bytes += len(packet)
