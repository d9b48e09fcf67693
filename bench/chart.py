"""``chart``: plot a metric (default jobs/s) from result JSON files against a label or parameter.

Hand-written SVG (no plotting dependency). The x value of a file is ``label[--x]`` if present, else
``params[--x]`` — so ``--label processes=N`` on each run gives jobs/s against server processes, and
``--x threads`` plots against load threads. Each (scenario, server, other labels) is one line.
"""
from __future__ import annotations

import argparse
import html
import json
from pathlib import Path

NAME = "chart"
HELP = "SVG chart of a metric (default jobs/s) against processes/threads from result JSON files"
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of the chart command."""
    p.add_argument("files", nargs="+", help="result JSON files (e.g. bench/results/load-*.json)")
    p.add_argument("-o", "--out", default="bench/results/chart.svg", help="SVG path (default bench/results/chart.svg)")
    p.add_argument("--x", default="processes", help="label or param for the x axis (default processes)")
    p.add_argument("--metric", default="jobs_per_s", help="summary metric for the y axis (default jobs_per_s)")
    p.add_argument("--title", default="", help="chart title")


def collect(files: list[str], x_key: str, metric: str) -> dict[str, list[tuple[float, float]]]:
    """Series name → sorted (x, y) points; files without the x key or metric are skipped."""
    series: dict[str, list[tuple[float, float]]] = {}
    for f in files:
        doc = json.loads(Path(f).read_text())
        label, params = doc.get("label", {}), doc.get("params", {})
        x = label.get(x_key, params.get(x_key))
        if not isinstance(x, (int, float)):
            continue
        rest = ",".join(f"{k}={v}" for k, v in sorted(label.items()) if k != x_key)
        for target, url in ((t, s.get("url", t)) for t, s in doc.get("servers", {}).items()):
            y = doc.get("summary", {}).get(target, {}).get(metric)
            if not isinstance(y, (int, float)):
                continue
            name = f"{doc['scenario']} {url}" + (f" [{rest}]" if rest else "")
            series.setdefault(name, []).append((float(x), float(y)))
    return {k: sorted(v) for k, v in series.items()}


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10 ** (len(str(int(v))) - 1)
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * mag:
            return m * mag
    return 10 * mag


def render_svg(series: dict[str, list[tuple[float, float]]], x_key: str, metric: str, title: str) -> str:
    """Render a line chart (one polyline + dots per series, axes with ticks, legend)."""
    w, h, left, right, top, bottom = 760, 420, 80, 20, 40, 50
    legend_h = 18 * len(series)
    xs = [x for pts in series.values() for x, _ in pts] or [0.0, 1.0]
    ys = [y for pts in series.values() for _, y in pts] or [1.0]
    x0, x1 = min(xs), max(xs)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    y1 = _nice_max(max(ys) * 1.05)
    pw, ph = w - left - right, h - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - y / y1 * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + legend_h}" '
           f'font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="15">'
           f'{html.escape(title or f"{metric} vs {x_key}")}</text>']
    for i in range(6):  # y grid and ticks
        y = y1 * i / 5
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:,.0f}</text>')
    for x in sorted(set(xs)):  # x ticks at the measured values
        out.append(f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{top + ph}" y2="{top + ph + 5}" stroke="#333"/>')
        out.append(f'<text x="{sx(x):.1f}" y="{top + ph + 18}" text-anchor="middle">{x:g}</text>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" stroke="#333"/>')
    out.append(f'<line x1="{left}" x2="{w - right}" y1="{top + ph}" y2="{top + ph}" stroke="#333"/>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 12}" text-anchor="middle">{html.escape(x_key)}</text>')
    out.append(f'<text x="16" y="{top + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {top + ph / 2})">{html.escape(metric)}</text>')
    for n, (name, pts) in enumerate(series.items()):
        color = COLORS[n % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{color}">'
                       f'<title>{html.escape(name)}: {x:g} → {y:,.0f}</title></circle>')
        ly = h + 18 * n + 4
        out.append(f'<rect x="{left}" y="{ly}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{left + 18}" y="{ly + 11}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m bench chart``."""
    series = collect(args.files, args.x, args.metric)
    if not series:
        print(f"chart: no file has both '{args.x}' (label or param) and summary metric '{args.metric}'")
        return 1
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_svg(series, args.x, args.metric, args.title))
    print(f"chart: {sum(len(p) for p in series.values())} points in {len(series)} series → {path}")
    return 0
