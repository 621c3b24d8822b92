"""Charts as inline SVG, drawn on the server: no script, no CDN, readable by screen readers.

Each chart is an `<svg role="img">` with a `<title>` and `<desc>` summing it up,
and every bar carries its own `<title>` (shown on hover). The numbers are also in
the table and the CSV next to each chart, so nothing depends on seeing colours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH = 640
HEIGHT = 240
LEFT = 44
BOTTOM = 36
TOP = 16
RIGHT = 12
PALETTE = ("var(--accent)", "#d97706", "#1a7f37", "#7c3aed", "#b42318", "#0e7490", "#64748b")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: list[float]


def nice_step(peak: float, *, whole: bool = False) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) so that 4 steps cover `peak`."""
    if peak <= 0:
        return 1.0
    raw = peak / 4
    exponent = math.floor(math.log10(raw))
    fraction = raw / 10**exponent
    nice = next(n for n in (1, 2, 2.5, 5, 10) if fraction <= n + 1e-9)
    step = nice * 10**exponent
    return max(step, 1.0) if whole else step


def _fmt(value: float) -> str:
    if float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def bar_chart(
    chart_id: str,
    title: str,
    labels: list[str],
    series: list[Series],
    *,
    stacked: bool = False,
    unit: str = "",
    max_value: float | None = None,
    whole: bool = False,
) -> str:
    """Grouped (or stacked) vertical bars, one group per label."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    if stacked:
        peak = max((sum(s.values[i] for s in series) for i in range(len(labels))), default=0)
    else:
        peak = max((v for s in series for v in s.values), default=0)
    top = max_value or nice_step(peak, whole=whole) * 4
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(_describe(labels, series, unit))}</desc>',
    ]
    for tick in range(5):
        value = top * tick / 4
        y = TOP + plot_h - plot_h * tick / 4
        parts.append(f'<line class="grid-line" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(value)}{unit}</text>'
        )
    if not labels:
        parts.append(
            f'<text class="axis" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">No data yet</text>'
        )
        parts.append("</svg>")
        return "".join(parts)
    group_w = plot_w / len(labels)
    bars = 1 if stacked else max(len(series), 1)
    bar_w = max(min(group_w * 0.8 / bars, 48), 2)
    every = max(1, len(labels) // 12)
    for i, label in enumerate(labels):
        x0 = LEFT + group_w * i + (group_w - bar_w * bars) / 2
        base = 0.0
        for k, s in enumerate(series):
            value = s.values[i]
            h = plot_h * (value / top) if top else 0
            x = x0 if stacked else x0 + bar_w * k
            y = TOP + plot_h - h - (plot_h * base / top if stacked else 0)
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0):.1f}" '
                f'fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(label)} · {escape(s.name)}: '
                f"{_fmt(value)}{escape(unit)}</title></rect>"
            )
            if stacked:
                base += value
        if i % every == 0:
            cx = LEFT + group_w * i + group_w / 2
            parts.append(
                f'<text class="axis" x="{cx:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def legend(series: list[Series]) -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{PALETTE[k % len(PALETTE)]}"></span>'
        f"{escape(s.name)}</li>"
        for k, s in enumerate(series)
    )
    return f'<ul class="legend">{items}</ul>'


def _describe(labels: list[str], series: list[Series], unit: str) -> str:
    if not labels:
        return "No data in this period."
    chunks = []
    for s in series:
        pairs = ", ".join(f"{lab}: {_fmt(v)}{unit}" for lab, v in zip(labels, s.values, strict=True))
        chunks.append(f"{s.name} — {pairs}")
    return "; ".join(chunks)
