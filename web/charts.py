"""Server-rendered charts (no JavaScript library, no CDN).

A chart is an HTML figure: a legend, a y axis and an x axis in HTML text (so they keep their
size on a phone), around an SVG plot that stretches to any width. The live chart on the
dashboard has the same markup (dashboard.html) and app.js fills it in with the same rules.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 1000, 200  # the plot's coordinates; stretched to the box (non-scaling strokes)
SERIES = (("ChartProcessed", "processed"), ("ChartFailed", "failed"))  # (locale key, CSS class)


def nice_max(value: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is >= value (axis top; 1 at least)."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def axis_label(value: float) -> str:
    """``2,500`` / ``0.5``: a tick value with thousands separators."""
    return f"{value:,.0f}" if value == int(value) else f"{value:,}"


def plot_points(values: Sequence[int], top: int, slots: int) -> str:
    """SVG points of ``values`` spread over ``slots`` positions, the last at the right edge."""
    first = slots - len(values)
    span = max(slots - 1, 1)
    return " ".join(f"{WIDTH * (first + i) / span:.1f},{HEIGHT - HEIGHT * v / top:.1f}"
                    for i, v in enumerate(values))


def history_chart(days: Sequence[str], counts: Sequence[tuple[int, int]],
                  t: Callable[..., str]) -> Markup:
    """Processed and failed jobs per day (oldest day on the left); ``t`` is the page's
    ``Locale.t`` for the labels."""
    return counts_chart("history", days, counts, [t(key) for key, _ in SERIES],
                        t("JobsPerDay", days=len(days)))


def counts_chart(chart_id: str, labels: Sequence[str], counts: Sequence[tuple[int, int]],
                 names: Sequence[str], aria_label: str) -> Markup:
    """Two counts over time (``counts``, one pair a point; oldest on the left), drawn as
    SERIES: lines over light areas, a y axis at 0, half and the top, the first, middle and last
    of ``labels`` under the x axis, the legend giving each series' name and sum."""
    n = len(labels)
    top = nice_max(max([2] + [max(p, f) for p, f in counts]))  # 2 at least: whole halves
    parts = [f'<figure class="chart" id="{escape(chart_id)}"><figcaption class="legend">']
    for idx, (name, (_, css)) in enumerate(zip(names, SERIES)):
        parts.append(f'<span class="key {css}"><i></i>{escape(name)}: '
                     f'<b>{sum(c[idx] for c in counts):,}</b></span>')
    parts.append('</figcaption><div class="plot"><div class="yaxis">'
                 + "".join(f"<span>{axis_label(top * f)}</span>" for f in (1, 0.5, 0))
                 + f'</div><svg viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" '
                 f'role="img" aria-label="{escape(aria_label)}" '
                 'xmlns="http://www.w3.org/2000/svg">')
    for frac in (0, 0.5, 1):
        parts.append(f'<line class="grid" x1="0" y1="{HEIGHT * frac:g}" x2="{WIDTH}" '
                     f'y2="{HEIGHT * frac:g}"/>')
    for idx, (name, (_, css)) in enumerate(zip(names, SERIES)):
        points = plot_points([c[idx] for c in counts], top, n)
        if n:
            parts.append(f'<polygon class="area {css}" points="0,{HEIGHT} {points} '
                         f'{WIDTH},{HEIGHT}"/>')
        parts.append(f'<polyline class="line {css}" points="{points}">'
                     f'<title>{escape(name)}</title></polyline>')
    parts.append(_xaxis(labels) + "</div></figure>")
    return Markup("".join(parts))


def _xaxis(labels: Sequence[str]) -> str:
    n = len(labels)
    ticks = [labels[i] for i in sorted({0, (n - 1) // 2, n - 1})] if n else []
    return ('</svg><div class="xaxis">' + "".join(f"<span>{escape(d)}</span>" for d in ticks)
            + "</div>")


HEAT_LEVELS = 5  # shades of a heatmap's cells (CSS classes l1..l5)
HEAT_ROW = 16  # px a heatmap's row is high (app.css: its y axis's rows)


def heat_level(count: int, top: int) -> int:
    """0 for an empty cell, else 1..HEAT_LEVELS by the count's share of ``top`` on a log
    scale (one job must show; a busy slot must not drown the rest)."""
    if count <= 0 or top <= 0:
        return 0
    return max(1, math.ceil(HEAT_LEVELS * math.log1p(count) / math.log1p(top)))


def heatmap(chart_id: str, labels: Sequence[str], columns: Sequence[Sequence[int]],
            rows: Sequence[str], aria_label: str) -> Markup:
    """Counts by time (``columns``, oldest on the left, each one count a row) and row (``rows``:
    their labels, bottom row first), as shaded cells; the row labels on the y axis, the first,
    middle and last of ``labels`` under the x axis. Each cell's count is its tooltip."""
    n, m = len(columns), len(rows)
    top = max((c for col in columns for c in col), default=0)
    cell_w, cell_h = WIDTH / max(n, 1), 10
    parts = [f'<figure class="chart heatmap" id="{escape(chart_id)}"><div class="plot">'
             '<div class="yaxis">' + "".join(f"<span>{escape(r)}</span>" for r in reversed(rows))
             + f'</div><svg viewBox="0 0 {WIDTH} {m * cell_h}" height="{m * HEAT_ROW}" '
             'preserveAspectRatio="none" '
             f'role="img" aria-label="{escape(aria_label)}" '
             'xmlns="http://www.w3.org/2000/svg">']
    for x, col in enumerate(columns):
        for y, count in enumerate(col):
            level = heat_level(count, top)
            if level:
                parts.append(f'<rect class="l{level}" x="{x * cell_w:.1f}" '
                             f'y="{(m - 1 - y) * cell_h}" width="{cell_w:.1f}" '
                             f'height="{cell_h}"><title>{escape(labels[x])} · '
                             f'{escape(rows[y])}: {count:,}</title></rect>')
    parts.append(_xaxis(labels) + "</div></figure>")
    return Markup("".join(parts))
