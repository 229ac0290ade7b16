"""The TUN driver loops packets to the host's own address back inside (no device needed): only a
packet that really comes from the device with our own source address is martian."""

from __future__ import annotations

import asyncio

from stack.host import Host
from stack.martian import SOURCE_OWN
from stack.tun import TunDriver
from stack.wire.ipv4 import PROTO_TCP, IPv4Packet, build_ipv4, pack_addr
from stack.wire.tcp import SYN, TcpSegment, build_tcp

ADDR = "10.0.0.1"


def syn_to_self() -> bytes:
    seg = TcpSegment(40000, 80, 1, 0, SYN, 1000)
    return build_ipv4(IPv4Packet(ADDR, ADDR, PROTO_TCP, build_tcp(seg, pack_addr(ADDR), pack_addr(ADDR))))


def test_a_packet_to_ourselves_is_looped_back_not_written() -> None:
    loop = asyncio.new_event_loop()
    try:
        host = Host(ADDR)
        host.listen(80)
        driver = TunDriver("tun-unused", host, loop)  # never started: a write would be a drop
        driver.transmit(syn_to_self())
        loop.run_until_complete(asyncio.sleep(0.01))
        assert driver.counters["tx_loopback"] >= 2  # the SYN, then the SYN-ACK it got
        assert driver.counters["tx_drop_stopped"] == 0
        assert host.counters[SOURCE_OWN] == 0
    finally:
        loop.close()


def test_our_own_source_from_the_device_is_martian() -> None:
    loop = asyncio.new_event_loop()
    try:
        host = Host(ADDR)
        host.listen(80)
        driver = TunDriver("tun-unused", host, loop)
        driver.runtime.deliver((syn_to_self(),))  # as _on_readable hands it over
        assert host.counters[SOURCE_OWN] == 1 and driver.counters["tx_loopback"] == 0
    finally:
        loop.close()
