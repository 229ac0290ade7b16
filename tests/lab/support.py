"""Shared by the lab tests: an ICMP echo (ping) run with the namespace's Python, since the
machines have no `ping` binary. `python -c PING ADDRESS` exits 0 when ADDRESS answers within 2 s."""

PING = r"""
import os, socket, struct, sys, time
dst = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xFFFF
body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"tcplab-daemon"
body += b"\0" * (len(body) % 2)
total = sum(struct.unpack(f"!{len(body) // 2}H", body))
while total >> 16:
    total = (total & 0xFFFF) + (total >> 16)
s.sendto(body[:2] + struct.pack("!H", ~total & 0xFFFF) + body[4:], (dst, 0))
deadline = time.monotonic() + 2.0
while (left := deadline - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        data, addr = s.recvfrom(2048)
    except socket.timeout:
        break
    ihl = (data[0] & 15) * 4
    kind, _, _, got_id, _ = struct.unpack("!BBHHH", data[ihl : ihl + 8])
    if kind == 0 and got_id == ident and addr[0] == dst:
        sys.exit(0)
sys.exit(1)
"""
