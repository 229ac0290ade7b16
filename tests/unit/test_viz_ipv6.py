"""The trace tools read IPv6 connection ids ("[fd00::1]:40000>[fd00::2]:7"): the ladder, the
plot, picking a connection by name, the mirror in the peer's trace, finding the peer node's
trace, and the pcap sink carrying IPv4 and IPv6 in one file (LINKTYPE_RAW)."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from lab.viz.ladder import build_ladder
from lab.viz.ladder_text import render_ladder_text
from lab.viz.load import load_pair, pick_connection, read_trace_file
from lab.viz.nodes import peer_trace_file
from lab.viz.plot import plot_connection
from stack.sim import LinkProfile, Network
from stack.socket import Stack
from stack.trace import LINKTYPE_RAW, JsonLinesSink, PcapSink, Trace, conn_id, split_conn_id


def test_conn_id_brackets_ipv6_and_splits_back() -> None:
    cid = conn_id("fd00::1", 40000, "fd00::2", 80)
    assert cid == "[fd00::1]:40000>[fd00::2]:80"
    assert split_conn_id(cid) == (("fd00::1", 40000), ("fd00::2", 80))
    assert split_conn_id(conn_id("10.0.0.1", 1, "10.0.0.2", 2)) == (("10.0.0.1", 1), ("10.0.0.2", 2))


def run_dual_stack_exchange(tmp_path: Path) -> tuple[Path, Path, Path]:
    """a fetches 20 kB from b over IPv6, then 1 kB over IPv4; JSON-lines traces and a pcap of a."""
    files = {n: (tmp_path / f"{n}.trace.jsonl").open("w") for n in "ab"}
    pcap = (tmp_path / "a.pcap").open("wb")
    with Network(seed=4) as net:
        a = net.add_host("a", "10.0.0.1", address6="fd00::1",
                         trace=Trace([JsonLinesSink(files["a"]), PcapSink(pcap)]))
        b = net.add_host("b", "10.0.0.2", address6="fd00::2", trace=Trace([JsonLinesSink(files["b"])]))
        net.connect("a", "b", LinkProfile(delay=0.01, loss=0.05))

        async def main() -> None:
            async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                n = int((await reader.readline()).decode())
                writer.write(b"z" * n)
                writer.close()

            await Stack(b.runtime).start_server(serve, host="::", port=7)
            for address, n in (("fd00::2", 20_000), ("10.0.0.2", 1_000)):
                reader, writer = await Stack(a.runtime).open_connection(address, 7)
                writer.write(f"{n}\n".encode())
                assert len(await reader.read()) == n
                writer.close()
            await asyncio.sleep(130)  # both TIME_WAITs end

        net.run(main(), timeout=600)
    for f in (*files.values(), pcap):
        f.close()
    for node, address, address6 in (("a", "10.0.0.1", "fd00::1"), ("b", "10.0.0.2", "fd00::2")):
        config = {"node": node, "stack_address": address, "stack_address6": address6}
        (tmp_path / f"{node}.json").write_text(json.dumps(config))
    return tmp_path / "a.trace.jsonl", tmp_path / "b.trace.jsonl", tmp_path / "a.pcap"


def test_ladder_plot_and_peer_of_an_ipv6_connection(tmp_path: Path) -> None:
    a_trace, b_trace, _ = run_dual_stack_exchange(tmp_path)
    events = read_trace_file(a_trace)
    first = pick_connection(events)
    assert first.startswith("[fd00::1]:") and first.endswith(">[fd00::2]:7")
    assert pick_connection(events, "[fd00::2]:7") == first  # by a substring naming the peer
    assert peer_trace_file(a_trace) == b_trace  # found through stack_address6
    _here, there = load_pair(a_trace, b_trace, first)
    assert there is not None and there.conn == "[fd00::2]:7>" + first.split(">")[0]
    assert len(build_ladder(a_trace, b_trace, first).arrows) > 10
    text = render_ladder_text(a_trace, b_trace, first)
    assert "SYN" in text and "[fd00::1]" in text
    out = plot_connection(a_trace, tmp_path / "cwnd.png", conn=first)
    assert out.stat().st_size > 1000
    v4 = pick_connection(events, "10.0.0.2:7")
    assert v4.startswith("10.0.0.1:")


def read_pcap(path: Path) -> tuple[int, list[bytes]]:
    data = path.read_bytes()
    linktype = struct.unpack_from("<I", data, 20)[0]
    packets, offset = [], 24
    while offset < len(data):
        caplen = struct.unpack_from("<I", data, offset + 8)[0]
        packets.append(data[offset + 16 : offset + 16 + caplen])
        offset += 16 + caplen
    return linktype, packets


def test_pcap_carries_both_families(tmp_path: Path) -> None:
    _, _, pcap = run_dual_stack_exchange(tmp_path)
    linktype, packets = read_pcap(pcap)
    assert linktype == LINKTYPE_RAW
    versions = {p[0] >> 4 for p in packets}
    assert versions == {4, 6}
    scapy_utils = pytest.importorskip("scapy.utils")
    inet6 = pytest.importorskip("scapy.layers.inet6")
    read = scapy_utils.rdpcap(str(pcap))
    assert sum(1 for p in read if p.haslayer(inet6.IPv6)) == sum(1 for p in packets if p[0] >> 4 == 6)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)")
def test_tshark_reads_both_families_with_good_checksums(tmp_path: Path) -> None:
    _, _, pcap = run_dual_stack_exchange(tmp_path)
    _, packets = read_pcap(pcap)
    prefs = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), *prefs, "-T", "fields", "-e", "ipv6.src",
                          "-e", "ip.src", "-e", "tcp.checksum.status"],
                         capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()
    assert len(out) == len(packets)
    assert sum(1 for line in out if line.startswith("fd00::")) == sum(1 for p in packets if p[0] >> 4 == 6)
    assert all(line.split("\t")[2] == "1" for line in out)  # 1: checksum good (0 bad, 2 unverified)
