"""Bar charts drawn on the server as inline SVG: no JavaScript, no files from elsewhere.

Each chart is an ``<svg role="img">`` named by its ``<title>`` and described by its ``<desc>``; the
page puts the same numbers in a table next to it (the text alternative), and the legend is HTML.
Every colour has at least 3:1 contrast against white (WCAG 1.4.11), and stacked parts are parted
by a white line, so neighbours stay distinguishable without relying on hue alone in the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Dark enough on white for non-text contrast (3:1 and more).
PALETTE = (
    "#01689b",
    "#a90061",
    "#275937",
    "#8f4a00",
    "#42145f",
    "#007bc7",
    "#673327",
    "#ca005d",
    "#39870c",
    "#5c5c5c",
)
WIDTH = 640
HEIGHT = 280
LEFT = 48  # room for the value axis
BOTTOM = 56  # room for the day labels
TOP = 12
FONT = 13


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    values: Sequence[int]
    colour: str


def colours(count: int) -> list[str]:
    return [PALETTE[n % len(PALETTE)] for n in range(count)]


def _nice_max(value: int) -> int:
    """A round top for the value axis (1, 2, 5 x 10^n) at or above ``value``."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if factor * step >= value:
                return factor * step
        step *= 10


def _open(chart_id: str, title: str, desc: str, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="kluis-chart" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
    ]


def stacked_bars(
    chart_id: str, title: str, desc: str, labels: Sequence[str], series: Sequence[Series]
) -> Markup:
    """Vertical bars, one per label (a day), each stacked from ``series`` (bottom first)."""
    totals = [sum(s.values[n] for s in series) for n in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - TOP - BOTTOM
    parts = _open(chart_id, title, desc, HEIGHT)
    for tick in (0, top // 2, top) if top >= 2 else (0, top):
        y = TOP + plot_h - plot_h * tick / top
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" class="kluis-chart__grid"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="{FONT}">{tick}</text>'
        )
    slot = plot_w / max(len(labels), 1)
    bar = max(min(slot * 0.7, 48), 2)
    every = max(1, round(len(labels) / 10))  # at most about ten day labels
    for n, label in enumerate(labels):
        x = LEFT + slot * n + (slot - bar) / 2
        y = TOP + plot_h
        for s in series:
            value = s.values[n]
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{s.colour}" '
                f'stroke="#ffffff" stroke-width="1"/>'
            )
        if n % every == 0:
            cx = LEFT + slot * n + slot / 2
            parts.append(
                f'<text x="{cx:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle" font-size="{FONT}">'
                f"{escape(label)}</text>"
            )
    base = TOP + plot_h
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - 8}" y1="{base}" y2="{base}" class="kluis-chart__axis"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()


def horizontal_bars(
    chart_id: str, title: str, desc: str, items: Sequence[tuple[str, int]], colour: str = PALETTE[0]
) -> Markup:
    """One horizontal bar per item, labelled with its name and value."""
    row = 30
    label_w = 220
    height = TOP * 2 + row * max(len(items), 1)
    top = max((value for _, value in items), default=0) or 1
    plot_w = WIDTH - label_w - 70
    parts = _open(chart_id, title, desc, height)
    for n, (label, value) in enumerate(items):
        y = TOP + row * n
        w = plot_w * value / top
        parts.append(
            f'<text x="{label_w - 8}" y="{y + row / 2 + 4:.1f}" text-anchor="end" font-size="{FONT}">'
            f"{escape(label[:32])}</text>"
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 5}" width="{max(w, 1):.1f}" height="{row - 10}" fill="{colour}"/>'
        )
        end = label_w + max(w, 1) + 6
        parts.append(f'<text x="{end:.1f}" y="{y + row / 2 + 4:.1f}" font-size="{FONT}">{value}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()
