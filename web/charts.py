"""Server-rendered charts (no JavaScript library, no CDN).

A chart is an HTML figure: a legend, a y axis and an x axis in HTML text (so they keep their
size on a phone), around an SVG plot that stretches to any width. The live chart on the
dashboard has the same markup (dashboard.html) and app.js fills it in with the same rules.
"""
from __future__ import annotations

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
    """Processed and failed jobs per day (oldest day on the left): lines over light areas,
    a y axis at 0, half and the top, the first, middle and last day under the x axis.

    ``t`` is the page's ``Locale.t`` for the labels.
    """
    n = len(days)
    top = nice_max(max([2] + [max(p, f) for p, f in counts]))  # 2 at least: whole halves
    label = escape(t("JobsPerDay", days=n))
    parts = ['<figure class="chart" id="history"><figcaption class="legend">']
    for idx, (key, css) in enumerate(SERIES):
        parts.append(f'<span class="key {css}"><i></i>{escape(t(key))}: '
                     f'<b>{sum(c[idx] for c in counts):,}</b></span>')
    parts.append('</figcaption><div class="plot"><div class="yaxis">'
                 + "".join(f"<span>{axis_label(top * f)}</span>" for f in (1, 0.5, 0))
                 + f'</div><svg viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" '
                 f'role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">')
    for frac in (0, 0.5, 1):
        parts.append(f'<line class="grid" x1="0" y1="{HEIGHT * frac:g}" x2="{WIDTH}" '
                     f'y2="{HEIGHT * frac:g}"/>')
    for idx, (key, css) in enumerate(SERIES):
        points = plot_points([c[idx] for c in counts], top, n)
        if n:
            parts.append(f'<polygon class="area {css}" points="0,{HEIGHT} {points} '
                         f'{WIDTH},{HEIGHT}"/>')
        parts.append(f'<polyline class="line {css}" points="{points}">'
                     f'<title>{escape(t(key))}</title></polyline>')
    ticks = [days[i] for i in sorted({0, (n - 1) // 2, n - 1})] if n else []
    parts.append('</svg><div class="xaxis">'
                 + "".join(f"<span>{escape(d)}</span>" for d in ticks) + "</div></div></figure>")
    return Markup("".join(parts))
