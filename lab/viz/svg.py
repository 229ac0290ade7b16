"""A few lines of hand-written SVG: elements as strings, attributes escaped, numbers rounded."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
CHAR_WIDTH = 0.64  # advance of one monospace character, in ems (DejaVu Sans Mono 0.602; 0.634 hinted)


def text_width(text: str, size: float) -> float:
    return len(text) * size * CHAR_WIDTH


def _value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return str(v)


def attrs(**kw: object) -> str:
    """Keyword arguments as attributes; `class_` -> class, `font_size` -> font-size; None skipped."""
    parts = []
    for key, v in kw.items():
        if v is None:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(f"{name}={quoteattr(_value(v))}")
    return " ".join(parts)


def element(tag: str, body: str | None = None, /, **kw: object) -> str:
    a = attrs(**kw)
    head = f"<{tag} {a}" if a else f"<{tag}"
    if body is None:
        return head + "/>"
    return f"{head}>{body}</{tag}>"


def text(x: float, y: float, content: str, **kw: object) -> str:
    return element("text", escape(content), x=x, y=y, **kw)


def line(x1: float, y1: float, x2: float, y2: float, **kw: object) -> str:
    return element("line", x1=x1, y1=y1, x2=x2, y2=y2, **kw)


def group(children: list[str], **kw: object) -> str:
    return element("g", "".join(children), **kw)


def document(width: float, height: float, children: list[str], style: str = "") -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_value(width)}" height="{_value(height)}" '
        f'viewBox="0 0 {_value(width)} {_value(height)}">'
    )
    css = f"<style>{escape(style)}</style>" if style else ""
    return head + css + "\n" + "\n".join(children) + "\n</svg>\n"
