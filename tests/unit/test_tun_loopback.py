"""The TUN driver loops packets to the host's own address back inside (no device needed): only a
packet that really comes from the device with our own source address is martian."""

from __future__ import annotations

import asyncio
import socket

import pytest

import stack.tun
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


def test_the_driver_counts_what_it_writes_and_what_it_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    """tx_packets and tx_bytes count each packet written to the device (a socket pair stands in
    for it here); writes once the device is closed are drops."""
    device, far_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    monkeypatch.setattr(stack.tun, "open_tun", lambda name: (device.fileno(), device))
    loop = asyncio.new_event_loop()
    try:
        driver = TunDriver("tun-unused", Host(ADDR), loop)
        driver.start()
        packets = [build_ipv4(IPv4Packet(ADDR, "10.0.0.2", PROTO_TCP, bytes(n))) for n in (20, 1000, 1460)]
        for packet in packets:
            driver.transmit(packet)
        assert [far_end.recv(2048) for _ in packets] == packets
        counters = driver.counters
        assert counters["tx_packets"] == 3 and counters["tx_bytes"] == sum(map(len, packets))
        driver.stop()
        driver.transmit(packets[0])
        assert driver.counters["tx_drop_stopped"] == 1 and driver.counters["tx_packets"] == 3
    finally:
        loop.close()
        far_end.close()
