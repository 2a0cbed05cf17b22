"""Charts drawn on the server as SVG (no script, nothing to download): the dashboard's
lookups per day by result."""
from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

#: The results a day's bar is split into, bottom to top: (key, label, CSS class).
SERIES = (("delivered", "delivered", "ok"), ("undelivered", "undelivered", "fail"),
          ("other", "other", "other"))
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 220, 44, 24, 10


def _nice(n: int) -> int:
    """The smallest of 1, 2, 5 × 10^k at or above ``n`` (the axis' top)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= n:
                return m * step
        step *= 10


def lookups_per_day(days: list[dict[str, Any]]) -> Markup:
    """Stacked bars, one a day: ``days`` are {"day": "YYYY-MM-DD", "delivered": n,
    "undelivered": n, "other": n}, oldest first. Every text in it is escaped."""
    top = _nice(max([sum(int(d.get(k, 0)) for k, _, _ in SERIES) for d in days] + [1]))
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(len(days), 1)
    bar = max(2.0, slot * 0.7)
    total = sum(int(d.get(k, 0)) for d in days for k, _, _ in SERIES)
    label = f"Lookups per day over {len(days)} days: {total} in all"
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}">',
           f"<title>{escape(label)}</title>"]
    for frac in (0, 0.5, 1):
        y = TOP + plot_h * (1 - frac)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d0d7de"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{int(top * frac)}</text>')
    every = max(1, len(days) // 8)
    for i, d in enumerate(days):
        x = LEFT + i * slot + (slot - bar) / 2
        y = TOP + plot_h
        parts = []
        for key, name, css in SERIES:
            n = int(d.get(key, 0))
            if n <= 0:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(f"{n} {name}")
            out.append(f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                       f"<title>{escape(d.get('day', ''))}: {n} {name}</title></rect>")
        if i % every == 0:
            out.append(f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
                       f"{escape(str(d.get('day', ''))[5:])}</text>")
    out.append("</svg>")
    legend = "".join(f'<span class="{css}">{name}</span>' for _, name, css in SERIES)
    return Markup("".join(out) + f'<p class="legend">{legend}</p>')
