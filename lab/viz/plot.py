"""cwnd, ssthresh, bytes in flight and srtt of one connection over time, drawn with matplotlib.

Top panel: the congestion window and ssthresh (only while finite) as steps, bytes in flight as
dots (what the stack counted at each congestion-window change; without such events, computed from
the segments: highest sequence number sent minus highest acknowledged). Bottom panel: smoothed
RTT, each RTT sample, and the retransmission timeout. Every retransmission is a red tick across
both panels, and fast-recovery episodes (from "loss" to "recovery_exit") are shaded, so a loss
episode is seen at a glance. The file type follows the output's extension (.png, .svg, .pdf).
"""

from __future__ import annotations

from pathlib import Path

from lab.viz.load import Connection, TraceSource, load_connection

INFINITE_SSTHRESH = 1 << 30  # at or above this ssthresh is "infinite" (the stack uses 2**31 - 1)
LOSS_REASONS = ("loss", "rto")


def _flight_from_segments(c: Connection) -> list[tuple[float, int]]:
    sent_end: int | None = None
    acked: int | None = None
    points: list[tuple[float, int]] = []
    for s in c.segments:
        if s.direction == "out" and s.seq_space:
            end = s.seq + s.seq_space
            sent_end = end if sent_end is None else max(sent_end, end)
        elif s.direction == "in" and s.has_ack:
            acked = s.ack if acked is None else max(acked, s.ack)
        else:
            continue
        if sent_end is not None:
            points.append((s.time, max(0, sent_end - (acked or 0))))
    return points


def _recovery_spans(c: Connection) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for e in c.congestion:
        if e.why in LOSS_REASONS and start is None:
            start = e.time
        elif e.why == "recovery_exit" and start is not None:
            spans.append((start, e.time))
            start = None
    if start is not None:
        end = max([e.time for e in c.congestion] + [s.time for s in c.segments] + [start])
        spans.append((start, end))
    return spans


def plot_connection(
    source: TraceSource,
    output: str | Path,
    conn: str | None = None,
    title: str | None = None,
    size: tuple[int, int] = (1000, 650),
) -> Path:
    """Draw one connection of a trace (the first one without `conn`) to `output` (PNG, SVG, ...
    by extension), `size` pixels at 100 dpi. Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = load_connection(source, conn)
    out = Path(output)
    origin = c.start
    times = [s.time for s in c.segments] + [e.time for e in c.congestion] + [r.time for r in c.rtt]
    span = (max(times) - origin) if times else 0.0
    unit, scale = ("ms", 1000.0) if span < 2.0 else ("s", 1.0)

    def x(t: float) -> float:
        return (t - origin) * scale

    dpi = 100
    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi,
        gridspec_kw={"height_ratios": [3, 2]},
    )
    fig.suptitle(title or f"TCP {c.conn}  (trace of {c.local})", fontsize=11)

    cong = c.congestion
    if cong:
        tx = [x(e.time) for e in cong]
        top.step(tx, [e.cwnd / 1000 for e in cong], where="post", color="#1c5d99", lw=1.8, label="cwnd")
        finite = [(x(e.time), e.ssthresh / 1000) for e in cong if e.ssthresh < INFINITE_SSTHRESH]
        if finite:
            top.step([p[0] for p in finite], [p[1] for p in finite], where="post", color="#e8590c",
                     lw=1.4, ls="--", label="ssthresh")
        top.plot(tx, [e.flight / 1000 for e in cong], ".", color="#2b7a3d", ms=4, label="bytes in flight")
        losses = [e for e in cong if e.why in LOSS_REASONS]
        if losses:
            top.plot([x(e.time) for e in losses], [e.cwnd / 1000 for e in losses], "v", color="#c92a2a",
                     ms=8, label="cwnd cut (loss / rto)")
    else:
        flight = _flight_from_segments(c)
        if flight:
            top.step([x(t) for t, _ in flight], [f / 1000 for _, f in flight], where="post",
                     color="#2b7a3d", lw=1.2, label="bytes in flight (from segments)")
        top.text(0.01, 0.95, "no congestion-window events for this connection in the trace",
                 transform=top.transAxes, va="top", fontsize=9, color="#555")
    top.set_ylabel("kB")
    top.set_ylim(bottom=0)

    rtt = c.rtt
    if rtt:
        rx = [x(r.time) for r in rtt]
        bottom.plot(rx, [r.srtt * 1000 for r in rtt], "-", color="#5f3dc4", lw=1.6, label="srtt")
        bottom.plot(rx, [r.sample * 1000 for r in rtt], ".", color="#868e96", ms=4, label="RTT sample")
        bottom.step(rx, [r.rto * 1000 for r in rtt], where="post", color="#adb5bd", lw=1, ls=":",
                    label=f"rto (up to {max(r.rto for r in rtt) * 1000:.0f} ms)")
        seen = max([r.srtt for r in rtt] + [r.sample for r in rtt]) * 1000
        if max(r.rto for r in rtt) * 1000 > 4 * seen:  # keep srtt readable: rto may go off the top
            bottom.set_ylim(0, 2.5 * seen)
    else:
        bottom.text(0.01, 0.9, "no RTT samples for this connection in the trace",
                    transform=bottom.transAxes, va="top", fontsize=9, color="#555")
    bottom.set_ylabel("ms")
    if bottom.get_ylim()[0] != 0:
        bottom.set_ylim(bottom=0)
    bottom.set_xlabel(f"time ({unit}) since the connection's first event")

    retx_times = sorted({s.time for s in c.segments if s.direction == "out" and s.retransmit}
                        | {r.time for r in c.retransmits})
    for i, t in enumerate(retx_times):
        for ax in (top, bottom):
            ax.axvline(x(t), color="#c92a2a", lw=0.9, alpha=0.7,
                       label="retransmission" if i == 0 and ax is top else None)
    for i, (a, b) in enumerate(_recovery_spans(c)):
        top.axvspan(x(a), x(b), color="#ffc9c9", alpha=0.45, lw=0,
                    label="recovery" if i == 0 else None)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if retx_times:
        top.set_title(f"{len(retx_times)} retransmission(s)", fontsize=9, color="#c92a2a", loc="left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
