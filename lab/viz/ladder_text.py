"""The ladder diagram of one TCP connection as text for terminals (the model: lab.viz.ladder).

One row per segment (at its departure: at its arrival at the traced host when the departure is
inferred) and one per state change; retransmissions are drawn `====>` and tagged with the reason,
a lost segment stops half-way in an X.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.viz.ladder import LEFT, RIGHT, Arrow, build_ladder, ladder_caption
from lab.viz.load import TraceSource


def _tag(a: Arrow) -> str:
    tags = []
    if a.retransmit:
        tags.append(f"retransmission: {a.retransmit}")
    if a.lost:
        tags.append("LOST")
    return f"  [{', '.join(tags)}]" if tags else ""


@dataclass
class _TextRow:
    time: float
    left: str = ""
    right: str = ""
    arrow: Arrow | None = None


def render_ladder_text(
    source: TraceSource,
    peer: TraceSource | None = None,
    conn: str | None = None,
    names: tuple[str, str] | None = None,
) -> str:
    """The ladder as text: time, left end's states, arrows, right end's states; one row per segment
    (at its departure) or state change. Retransmissions are drawn `====>`, a lost segment stops
    half-way in an X."""
    lad = build_ladder(source, peer, conn, names)
    rows: list[_TextRow] = []
    for p in lad.points:
        if p.state is not None:
            rows.append(_TextRow(p.time, left=p.state.new if p.side == LEFT else "",
                                 right=p.state.new if p.side == RIGHT else ""))
        elif p.arrow is not None and not p.arrow.duplicate:
            a = p.arrow
            # at its departure; at its arrival here when the departure is inferred
            if (p.what == "depart" and not p.inferred) or (p.what == "arrive" and a.depart_inferred):
                rows.append(_TextRow(p.time, arrow=a))
    init_r = lad.initial[1] or ("" if lad.both_traced else "(not traced)")
    state_w = max([len(lad.initial[0] or ""), len(init_r), 8] + [len(r.left) for r in rows])
    mid_w = max([len(r.arrow.seg.label()) + 10 for r in rows if r.arrow] + [40])
    out = [f"{'time (s)':>10}  {lad.names[0]:>{state_w}}  {'':{mid_w}}  {lad.names[1]}".rstrip()]
    out.append(f"{'':>10}  {lad.initial[0] or '':>{state_w}} |{'':{mid_w}}| {init_r}".rstrip())
    for r in rows:
        middle = " " * mid_w
        if r.arrow is not None:
            a = r.arrow
            middle = _text_arrow(a.seg.label(), a.sender, a.lost, bool(a.retransmit), mid_w)
        line = f"{r.time - lad.origin:>10.6f}  {r.left:>{state_w}} |{middle}| {r.right}".rstrip()
        out.append(line + (_tag(r.arrow) if r.arrow is not None else ""))
    out.append("")
    out.append(ladder_caption(lad))
    return "\n".join(out) + "\n"


def _text_arrow(label: str, sender: int, lost: bool, retx: bool, width: int) -> str:
    dash = "=" if retx else "-"
    if sender == LEFT:
        if lost:
            body = f" {label} "
            stop = max(len(body) + 3, width // 2)
            return (body + dash * (stop - len(body) - 1) + "X").ljust(width)
        return f" {label} ".ljust(width - 1, dash) + ">"
    if lost:
        body = f" {label} "
        stop = max(len(body) + 3, width // 2)
        return ("X" + dash * (stop - len(body) - 1) + body).rjust(width)
    return "<" + f" {label} ".rjust(width - 1, dash)

