"""Small helpers shared by the benchmark scripts: timing, tables, CSV, plots, interpolation."""

from __future__ import annotations

import csv
import gc
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _loop(fn: Callable[[], Any], number: int) -> float:
    """Seconds taken by ``number`` back-to-back calls of ``fn`` (garbage collector off)."""
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - start
    finally:
        if gc_was_on:
            gc.enable()


def time_call(fn: Callable[[], Any], *, repeat: int = 3, min_time: float = 0.2) -> float:
    """Best-of-``repeat`` seconds per call of ``fn``.

    Each measurement repeats ``fn`` enough times (found on the first measurement, as
    ``timeit.Timer.autorange`` does) to take at least ``min_time`` seconds in total; the
    result is the smallest per-call average over the measurements. ``fn`` is called once
    before timing as a warm-up.
    """
    fn()
    number = 1
    while True:
        total = _loop(fn, number)
        if total >= min_time:
            break
        grow = 1.2 * min_time / total if total > 0 else 10.0
        number = max(number + 1, math.ceil(number * min(grow, 10.0)))
    best = total / number
    for _ in range(repeat - 1):
        best = min(best, _loop(fn, number) / number)
    return best


def fmt(x: Any) -> str:
    """Table cell: floats in short scientific/general form, ``None`` as ``n/a``."""
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if x == 0.0 or not math.isfinite(x):
            return str(x)
        return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"
    return str(x)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text table with right-aligned columns."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def write_csv(path: Path, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write ``rows`` (full precision) to ``path`` with a header line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(headers)
        writer.writerows(["" if c is None else c for c in row] for row in rows)


def interp_time(points: Sequence[tuple[float, float]], target: float) -> float | None:
    """Time at error ``target`` along a work-precision curve of ``(error, seconds)`` points.

    Log-linear interpolation (log time against log error, points sorted by error); ``None``
    when ``target`` lies outside the measured error range.
    """
    pts = sorted((e, s) for e, s in points if e > 0 and math.isfinite(e))
    if not pts or not pts[0][0] <= target <= pts[-1][0]:
        return None
    log_e = np.log([e for e, _ in pts])
    log_s = np.log([s for _, s in pts])
    return float(np.exp(np.interp(math.log(target), log_e, log_s)))


def plot_work_precision(
    path: Path,
    title: str,
    curves: Mapping[str, Sequence[tuple[float, float]]],
    dashed: Sequence[str] = (),
) -> None:
    """Log-log work-precision PNG: error on x, seconds per solve on y, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = "osD^v<>ph*"
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    for i, (name, pts) in enumerate(curves.items()):
        pts = sorted(pts)
        ax.loglog(
            [max(e, 1e-300) for e, _ in pts],
            [s for _, s in pts],
            linestyle="--" if name in dashed else "-",
            marker=markers[i % len(markers)],
            label=name,
        )
    ax.set_xlabel("final-time error (max abs vs reference)")
    ax.set_ylabel("seconds per solve")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
