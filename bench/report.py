"""Result documents (JSON), summaries over rounds, first/second ratios and the printed table."""
from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_labels(items: Sequence[str] | None) -> dict[str, Any]:
    """``["processes=2", "note=x"]`` → ``{"processes": 2, "note": "x"}`` (numbers become numbers)."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--label expects key=value, got {item!r}")
        out[key] = _number(value)
    return out


def _number(v: str) -> Any:
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def summarize(runs: list[dict[str, Any]], targets: Sequence[str]) -> dict[str, Any]:
    """Median of every numeric metric per target over its rounds, plus ``ratio`` = first/second
    (of the medians) and, over several rounds, ``ratio_by_round`` (first/second within each round);
    a third target and on: ``ratio <name>`` = it/second."""
    summary: dict[str, Any] = {}
    for t in targets:
        mine = [r for r in runs if r["target"] == t]
        keys = [k for k in mine[0] if k not in ("target", "round")] if mine else []
        agg: dict[str, Any] = {}
        for k in keys:
            vals = [r.get(k) for r in mine]
            nums: list[Any] = [v for v in vals if _numeric(v)]
            agg[k] = statistics.median(nums) if nums and len(nums) == len(vals) else vals[-1]
        summary[t] = agg
    if len(targets) >= 2:
        a, b = summary[targets[0]], summary[targets[1]]
        summary["ratio"] = _ratios(a, b)
        # A third target and on (the floor server): each against the second too.
        for t in targets[2:]:
            summary[f"ratio {t}"] = _ratios(summary[t], b)
        # The ratio within each round (the two runs next to each other in time): its spread says
        # how far the machine's drift moves the ratio of medians.
        by_round: dict[str, list[float]] = {}
        for rnd in sorted({r["round"] for r in runs}):
            pair = [next((r for r in runs if r["round"] == rnd and r["target"] == t), None) for t in targets]
            if pair[0] is None or pair[1] is None:
                continue
            for k in summary["ratio"]:
                x, y = pair[0].get(k), pair[1].get(k)
                if _numeric(x) and _numeric(y) and y:
                    by_round.setdefault(k, []).append(x / y)
        if len({r["round"] for r in runs}) > 1:
            summary["ratio_by_round"] = by_round
    return summary


def _ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    return {k: a[k] / b[k] for k in a if _numeric(a[k]) and _numeric(b.get(k)) and b[k]}


def default_out(scenario: str) -> Path:
    """``bench/results/<scenario>-<timestamp>.json``."""
    return RESULTS_DIR / f"{scenario}-{time.strftime('%Y%m%d-%H%M%S')}.json"


def write_json(doc: dict[str, Any], out: str | os.PathLike[str] | None) -> Path:
    """Write the result document (creating the directory) and return its path."""
    path = Path(out) if out else default_out(doc["scenario"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return path


def fmt(v: Any) -> str:
    """Human formatting: thousands separators for big numbers, 3 significant-ish digits otherwise."""
    if v is None:
        return "-"
    if isinstance(v, bool) or not _numeric(v):
        return str(v)
    if isinstance(v, int) or abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def table(summary: dict[str, Any], targets: Sequence[str], metrics: Sequence[tuple[str, str]]) -> str:
    """Render ``metrics`` (key, title) for each target (and the ratio columns when comparing)."""
    cols = list(targets) + (["ratio"] if "ratio" in summary else []) + [
        f"ratio {t}" for t in targets[2:] if f"ratio {t}" in summary]
    spread = "ratio_by_round" in summary
    rows = [["metric", *cols] + (["ratio per round"] if spread else [])]
    for key, title in metrics:
        row = [title]
        for c in cols:
            row.append(fmt(summary.get(c, {}).get(key)))
        if spread:
            vals = summary["ratio_by_round"].get(key)
            row.append(f"{fmt(min(vals))}–{fmt(max(vals))}" if vals else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                               for i, cell in enumerate(r)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
