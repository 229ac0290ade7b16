"""Open a TUN device with the virtio-net header and checksum/TSO offloads, through ioctl directly
(python-pytun exposes neither IFF_VNET_HDR nor TUNSETOFFLOAD).

This is how gVisor's netstack (pkg/tcpip/link/fdbased) and wireguard-go (tun/tun_linux.go) go
past one packet per system call: with IFF_VNET_HDR every read and write starts with a
`stack.wire.vnet` header; TUNSETOFFLOAD tells the kernel we accept packets whose checksum is
partial (TUN_F_CSUM) and TCP super-segments of up to 64 KB of either family (TUN_F_TSO4,
TUN_F_TSO6), so it stops cutting them for us, and may hand us the same. The numbers come from
include/uapi/linux/if_tun.h.
"""

from __future__ import annotations

import fcntl
import os
import struct

from stack.wire.vnet import HEADER_LEN

# ioctl requests: _IOW('T', nr, int) = (1 << 30) | (4 << 16) | (ord('T') << 8) | nr.
TUNSETIFF = 0x400454CA  # nr 202: attach to / create the device named in a struct ifreq
TUNSETOFFLOAD = 0x400454D0  # nr 208: the argument is the TUN_F_* bits themselves, not a pointer
TUNSETVNETHDRSZ = 0x400454D8  # nr 216: the argument points to an int

IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000

TUN_F_CSUM = 0x01  # we take packets with a partial checksum (NEEDS_CSUM)
TUN_F_TSO4 = 0x02  # ... and IPv4 TCP super-segments (GSO_TCPV4)
TUN_F_TSO6 = 0x04  # ... and IPv6 TCP super-segments (GSO_TCPV6)

OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
CHECKSUM_ONLY = TUN_F_CSUM  # segments stay wire-sized both ways; the kernel completes checksums
_IFREQ = struct.Struct("16sH22x")  # ifr_name, ifr_flags, the rest of the union


class _Device:
    """Owns the fd (the TUN driver keeps a device object and calls close())."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def open_tun_offload(name: str, tso: bool = True) -> tuple[int, _Device]:
    """Open (attach to or create) TUN device `name` with IFF_VNET_HDR, a 10-octet header and
    checksum + TSO4 + TSO6 offloads (tso=False: the checksum offload alone, so the kernel cuts
    super-segments before it hands them to us); returns (non-blocking fd, device object). Raises
    OSError."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), IFF_TUN | IFF_NO_PI | IFF_VNET_HDR))
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", HEADER_LEN))
        fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOADS if tso else CHECKSUM_ONLY)
        os.set_blocking(fd, False)
    except OSError:
        os.close(fd)
        raise
    return fd, _Device(fd)
