"""The script's IP version and addresses: packetdrill's --ip_version, --local_ip and --remote_ip.

packetdrill's three flavours (its config.c), which the runner follows:

    --ip_version       socket()   bind/connect addresses                  on the wire
    ipv4 (default)     AF_INET    192.168.0.1, 192.0.2.1                  IPv4
    ipv4-mapped-ipv6   AF_INET6   ::ffff:192.168.0.1, ::ffff:192.0.2.1    IPv4
    ipv6               AF_INET6   fd3d:fa7b:d17d::1, 2001:db8::1          IPv6

The IPv6 addresses are packetdrill's: a unique local address (RFC 4193) for the stack under test,
the documentation prefix (RFC 3849) for the script's end. (Live packetdrill picks a random local
address in fd3d:fa7b:d17d::/48; the runner's stack owns its address, so it keeps ::1, and runs
repeat.) A `socket(..., ...)` whose family is elided gets the flavour's family. The stack gets
both an IPv4 and an IPv6 address, so that an AF_INET6 socket of an IPv4-mapped script exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from stack.inet import AF_INET, AF_INET6, canonical, is_ipv6, mapped

IP_VERSIONS = ("ipv4", "ipv4-mapped-ipv6", "ipv6")
LOCAL_IP = "192.168.0.1"  # packetdrill's local address (the stack under test)
REMOTE_IP = "192.0.2.1"  # packetdrill's remote address (the script)
LOCAL_IP6 = "fd3d:fa7b:d17d::1"
REMOTE_IP6 = "2001:db8::1"


@dataclass(frozen=True)
class Addresses:
    """The flavour of a run: its version, and the wire addresses of both ends."""

    version: str = "ipv4"
    local_ip: str = LOCAL_IP  # on the wire (IPv4 for ipv4-mapped-ipv6)
    remote_ip: str = REMOTE_IP
    local_ip6: str = LOCAL_IP6  # the stack's IPv6 address (its local_ip under ipv6)

    @property
    def wire6(self) -> bool:
        return self.version == "ipv6"

    @property
    def socket_family(self) -> int:
        """What `socket(..., SOCK_STREAM, ...)` makes."""
        return AF_INET if self.version == "ipv4" else AF_INET6

    def connect_ip(self, family: int) -> str:
        """The remote address a socket of `family` connects to: "::ffff:192.0.2.1" for an
        AF_INET6 socket over IPv4 (RFC 4291 2.5.5.2)."""
        return mapped(self.remote_ip) if family == AF_INET6 else self.remote_ip


def addresses(version: str = "ipv4", local_ip: str | None = None, remote_ip: str | None = None) -> Addresses:
    """The flavour `version`, with the script's own addresses if it names them; ValueError with a
    one-line message for an unknown version or an address of the wrong family."""
    if version not in IP_VERSIONS:
        raise ValueError(f"--ip_version={version}: choose from {', '.join(IP_VERSIONS)}")
    v6 = version == "ipv6"
    ends = []
    for name, given, default in (("local_ip", local_ip, LOCAL_IP6 if v6 else LOCAL_IP),
                                 ("remote_ip", remote_ip, REMOTE_IP6 if v6 else REMOTE_IP)):  # fmt: skip
        ip = canonical(given) if given is not None else default  # canonical: ValueError if not an address
        if is_ipv6(ip) != v6:
            family = "IPv6" if v6 else "IPv4"
            raise ValueError(f"--{name}={given}: not an {family} address (--ip_version={version})")
        ends.append(ip)
    local, remote = ends
    return Addresses(version, local, remote, local if v6 else LOCAL_IP6)
