"""Small inline-SVG charts for the HTML report: no JavaScript, no external files.

Every piece of text that reaches the SVG goes through ``esc`` (labels come from records: host
names, error types), and numbers are formatted by us. Each bar carries a ``<title>``, which
browsers show as a tooltip.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

FONT = "font-family:system-ui,sans-serif;font-size:11px"


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="{FONT}"><title>{esc(title)}</title>'
        + "".join(body) + "</svg>"
    )


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is >= value (at least 1)."""
    if value <= 1:
        return 1
    step = 1.0
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def stacked_bars(
    title: str,
    bar_labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[int]]],
    x_ticks: Sequence[tuple[int, str]],
    width: int = 860,
    height: int = 240,
) -> str:
    """Vertical stacked bars: one bar per label, one colour per series (name, colour, values)."""
    left, right, top, bottom = 48, 10, 10, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(bar_labels), 1)
    totals = [sum(s[2][i] for s in series) for i in range(len(bar_labels))]
    ymax = _nice_max(max(totals, default=0))
    bar_w = plot_w / n
    body = _y_axis(left, top, plot_w, plot_h, ymax)
    for i, label in enumerate(bar_labels):
        y = top + plot_h
        x = left + i * bar_w
        for name, colour, values in series:
            v = values[i]
            if not v:
                continue
            h = plot_h * v / ymax
            y -= h
            body.append(
                f'<rect x="{x:.2f}" y="{y:.2f}" width="{max(bar_w - 1, 0.5):.2f}" height="{h:.2f}" '
                f'fill="{esc(colour)}"><title>{esc(label)}: {esc(name)} {v:,}</title></rect>'
            )
    last = len(bar_labels) - 1
    for index, text in x_ticks:
        # The first and last labels line up with the plot's edges so that they are not cut off.
        anchor, x = ("start", left) if index == 0 else ("end", left + plot_w) if index == last else (
            "middle", left + (index + 0.5) * bar_w)
        body.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="{anchor}">{esc(text)}</text>')
    body += _legend([(name, colour) for name, colour, _ in series], left, height - 14)
    return _svg(width, height, title, body)


def bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[int],
    colour: str = "#4e79a7",
    width: int = 860,
    height: int = 240,
    x_title: str = "",
) -> str:
    """Vertical bars with a label under each (a histogram when labels are ranges)."""
    left, right, top, bottom = 48, 10, 10, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(labels), 1)
    ymax = _nice_max(max(values, default=0))
    bar_w = plot_w / n
    body = _y_axis(left, top, plot_w, plot_h, ymax)
    every = max(1, round(n / 12))  # at most about a dozen labels fit under the axis
    for i, (label, v) in enumerate(zip(labels, values)):
        x = left + i * bar_w
        h = plot_h * v / ymax
        body.append(
            f'<rect x="{x:.2f}" y="{top + plot_h - h:.2f}" width="{max(bar_w - 1, 0.5):.2f}" '
            f'height="{h:.2f}" fill="{esc(colour)}"><title>{esc(label)}: {v:,}</title></rect>'
        )
        if i % every == 0:
            body.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 14}" '
                        f'text-anchor="middle">{esc(label)}</text>')
    if x_title:
        body.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle">{esc(x_title)}</text>')
    return _svg(width, height, title, body)


def hbars(title: str, items: Sequence[tuple[str, int]], colour: str = "#59a14f", width: int = 860) -> str:
    """Horizontal bars, one row per (label, value), longest first as given."""
    row_h, label_w, right = 20, 280, 70
    height = max(len(items), 1) * row_h + 10
    vmax = max((v for _, v in items), default=0) or 1
    body = []
    for i, (label, v) in enumerate(items):
        y = 5 + i * row_h
        w = (width - label_w - right) * v / vmax
        shown = label if len(label) <= 42 else label[:41] + "…"
        body.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{esc(shown)}</text>')
        body.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 0.5):.2f}" height="{row_h - 6}" '
                    f'fill="{esc(colour)}"><title>{esc(label)}: {v:,}</title></rect>')
        body.append(f'<text x="{label_w + w + 4:.2f}" y="{y + 14}">{v:,}</text>')
    return _svg(width, height, title, body)


def _y_axis(left: int, top: int, plot_w: float, plot_h: float, ymax: float) -> list[str]:
    out = []
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        value = ymax * frac
        text = f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{text}</text>')
    return out


def _legend(entries: Sequence[tuple[str, str]], x: int, y: int) -> list[str]:
    out = []
    for name, colour in entries:
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{esc(colour)}"/>')
        out.append(f'<text x="{x + 14}" y="{y}">{esc(name)}</text>')
        x += 24 + 7 * len(name)
    return out
