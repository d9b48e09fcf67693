"""Server-rendered SVG charts (no JavaScript library, no CDN)."""
from __future__ import annotations

from typing import Callable, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 900, 220, 40
SERIES = (("ChartProcessed", "#2f7ed8"), ("ChartFailed", "#d9534f"))  # (locale key, colour)


def _nice_max(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is >= value (axis top)."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def history_svg(days: Sequence[str], counts: Sequence[tuple[int, int]],
                t: Callable[..., str]) -> Markup:
    """A line chart of processed and failed jobs per day (oldest day on the left).

    ``t`` is the page's ``Locale.t`` for the labels.
    """
    n = len(days)
    top = _nice_max(max([max(p, f) for p, f in counts] or [0]))
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def x(i: int) -> float:
        return PAD + (inner_w * i / (n - 1) if n > 1 else inner_w / 2)

    def y(v: int) -> float:
        return PAD + inner_h - inner_h * v / top

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(t("JobsPerDay", days=n))}" xmlns="http://www.w3.org/2000/svg">']
    for frac in (0, 0.5, 1):
        gy = PAD + inner_h * (1 - frac)
        parts.append(f'<line x1="{PAD}" y1="{gy:.1f}" x2="{WIDTH - PAD}" y2="{gy:.1f}" class="grid"/>'
                     f'<text x="{PAD - 6}" y="{gy + 4:.1f}" class="axis" text-anchor="end">'
                     f'{top * frac:g}</text>')
    for label_i in sorted({0, n // 2, n - 1}) if n else []:
        parts.append(f'<text x="{x(label_i):.1f}" y="{HEIGHT - PAD + 18}" class="axis" '
                     f'text-anchor="middle">{escape(days[label_i])}</text>')
    for idx, (key, colour) in enumerate(SERIES):
        name = escape(t(key))
        points = " ".join(f"{x(i):.1f},{y(c[idx]):.1f}" for i, c in enumerate(counts))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{points}"><title>{name}</title></polyline>')
        parts.append(f'<text x="{WIDTH - PAD - 150}" y="{PAD - 22 + idx * 14}" '
                     f'fill="{colour}" class="legend">{name}: {sum(c[idx] for c in counts)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
