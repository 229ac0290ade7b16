"""The netem path: an Impairment as the exact pyroute2 `IPRoute.tc` requests, for kernels with sch_netem.

One root netem qdisc carries the whole profile, rate included (netem's own rate, TCA_NETEM_RATE),
rather than netem plus a tbf child: then `limit` means one thing, the packets the link holds, in
netem and in the user-space emulator alike (tbf's limit is in bytes and would be a second queue).
A root qdisc sees every frame the interface sends, so IPv6 is impaired as IPv4 is (ARP too).

Units as pyroute2 0.9 (tcmsg/sched_netem.py) takes them: delay and jitter in microseconds (it
converts to ticks), loss/duplicate/prob_reorder/prob_corrupt in percent, rate as an integer in
bytes per second (an integer is passed through unchanged; the kernel field is u32 bytes/s), limit
in packets. Building the requests is pure, so unit tests check them without a kernel.
"""

from __future__ import annotations

from typing import Any

from lab.model.impairment import Impairment

Request = tuple[str, str, dict[str, Any]]  # (command, kind, keyword arguments of IPRoute.tc)

NETEM_HANDLE = "1:"
DEFAULT_LIMIT = 1000  # netem's own default, made explicit so `replace` resets it on update


def netem_kwargs(ifindex: int, imp: Impairment) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "index": ifindex,
        "handle": NETEM_HANDLE,
        "delay": round(imp.delay * 1e6),
        "jitter": round(imp.jitter * 1e6),
        "loss": imp.loss * 100,
        "duplicate": imp.duplicate * 100,
        "limit": imp.limit if imp.limit is not None else DEFAULT_LIMIT,
    }
    # pyroute2 adds the REORDER/CORRUPT/RATE attributes only when these keys are non-zero/present.
    if imp.reorder:
        kwargs["prob_reorder"] = imp.reorder * 100
    if imp.corrupt:
        kwargs["prob_corrupt"] = imp.corrupt * 100
    if imp.rate is not None:
        kwargs["rate"] = round(imp.rate / 8)
    return kwargs


def netem_requests(ifindex: int, imp: Impairment) -> list[Request]:
    """Requests that install, or replace in place, the root netem qdisc for `imp`.

    `replace` both creates and updates, so applying and `tcplab impair` send the same request and
    a change never leaves the link briefly unimpaired."""
    return [("replace", "netem", netem_kwargs(ifindex, imp))]


def netem_remove_requests(ifindex: int) -> list[Request]:
    """Requests that delete the root netem qdisc (the interface falls back to its default)."""
    return [("del", "netem", {"index": ifindex, "handle": NETEM_HANDLE})]


def run_requests(netns: str, ifname: str, build: Any) -> None:
    """Run the requests `build(ifindex)` returns against IF inside NS."""
    from pyroute2 import IPRoute

    with IPRoute(netns=netns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise LookupError(f"no interface {ifname!r} in namespace {netns!r}")
        for command, kind, kwargs in build(found[0]):
            args = dict(kwargs)
            ipr.tc(command, kind, args.pop("index"), args.pop("handle"), **args)


def apply_netem(netns: str, ifname: str, imp: Impairment) -> None:
    run_requests(netns, ifname, lambda ifindex: netem_requests(ifindex, imp))


def remove_netem(netns: str, ifname: str) -> None:
    run_requests(netns, ifname, netem_remove_requests)
