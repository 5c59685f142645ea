"""Heatmaps of a gradient, as SVG data for the report: expected, actual and their difference.

Each cell's value picks a colour level; a run of equal cells in a row is one rectangle, and all
the rectangles of one colour are one SVG path: a view of 32 x 32 cells is a few elements, not a
thousand.
Colour is never the only cue: each colour's range is its title, NaN / inf cells are hatched, and
the cell with the greatest difference is outlined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .formatting import page_number
from .results import GradientResult, TensorView

__all__ = ["Heatmap", "Layer", "heatmaps"]

_HEATMAP_PX = 320             # the longer side of a heatmap, in CSS pixels

# Colour-blind-safe palettes: ColorBrewer PuOr (diverging, for signed values) and viridis
# (sequential, for |actual - expected|).
_PUOR = ("#b35806", "#e08214", "#fdb863", "#fee0b6", "#f7f7f7", "#d8daeb", "#b2abd2", "#8073ac",
         "#542788")
_VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962",
            "#addc30", "#fde725")
_VALUE_LEVELS = 21            # odd: one level for zero
_DIFF_LEVELS = 16


def _interpolate(stops: tuple[str, ...], levels: int) -> tuple[str, ...]:
    rgb = [tuple(int(s[i:i + 2], 16) for i in (1, 3, 5)) for s in stops]
    out = []
    for k in range(levels):
        t = k / (levels - 1) * (len(rgb) - 1)
        i = min(int(t), len(rgb) - 2)
        f = t - i
        c = tuple(round(a + (b - a) * f) for a, b in zip(rgb[i], rgb[i + 1]))
        out.append("#%02x%02x%02x" % c)
    return tuple(out)


_VALUE_COLOURS = _interpolate(_PUOR, _VALUE_LEVELS)
_DIFF_COLOURS = _interpolate(_VIRIDIS, _DIFF_LEVELS)


@dataclass(frozen=True)
class Layer:
    fill: str
    d: str          # SVG path data: one rectangle per run of equal cells in a row
    title: str      # the range of values this colour stands for


@dataclass(frozen=True)
class Heatmap:
    id: str
    label: str
    heading: str               # "expected", "actual (yours)", "|actual − expected|"
    caption: str
    description: str
    rows: int
    cols: int
    width: float
    height: float
    layers: tuple[Layer, ...]
    nonfinite: str             # path data of cells holding NaN / inf
    worst_cell: tuple[int, int] | None
    legend: tuple[str, ...]    # colours, low to high
    low: str
    high: str


def _cells(view: TensorView) -> np.ndarray:
    """The view's values as a (rows, cols) float64 array, NaN where a cell holds NaN / inf."""
    rows = len(view.values)
    cols = max((len(row) for row in view.values), default=0)
    values = [row if len(row) == cols else (*row, *(None,) * (cols - len(row)))
              for row in view.values]      # a short row (a hand-edited file): hatched after
    return np.array(values, dtype=np.float64).reshape(rows, cols)       # None -> NaN


_RECT = "M%d %dh%dv1h-%dz"        # a run of cells: x, y, width, then back by the width


def _paths(levels: np.ndarray) -> tuple[dict[int, str], str]:
    """Path data per colour level (-1: a cell holding NaN / inf, returned apart): one rectangle
    per run of equal cells in a row, the rectangles in reading order. The runs are found by
    numpy; Python only writes each run's rectangle (a view has up to a thousand cells, and a
    failing notebook some thirty views)."""
    rows, cols = levels.shape
    if not levels.size:
        return {}, ""
    starts = np.ones(levels.shape, dtype=bool)          # where a run begins: a row's first
    starts[:, 1:] = levels[:, 1:] != levels[:, :-1]     # cell, or one unlike the cell before
    ys, xs = np.nonzero(starts)
    flat = ys * cols + xs
    widths = np.diff(np.append(flat, rows * cols))      # a run ends where the next begins
    keys = levels[ys, xs]
    order = np.argsort(keys, kind="stable")             # by level, reading order within one
    # each run's x, y, width, width, in that order: a level's rectangles are one % format
    numbers = np.stack([xs[order], ys[order], widths[order], widths[order]], axis=1)
    ordered = keys[order]
    bounds = np.flatnonzero(np.diff(ordered)) + 1
    paths = {int(ordered[a]): _RECT * (b - a) % tuple(numbers[a:b].ravel().tolist())
             for a, b in zip([0, *bounds.tolist()], [*bounds.tolist(), len(ordered)])}
    return paths, paths.pop(-1, "")


def _heatmap(view: TensorView, cells: np.ndarray, *, ident: str, gradient: str,
             scale: float) -> Heatmap:
    rows, cols = cells.shape
    is_diff = view.label == "difference"
    # the colour level of every cell, clamped to 0..last: the difference's from 0 up, truncated
    # (int()); a value's either side of the middle one, rounded half to even (round())
    with np.errstate(all="ignore"):
        if is_diff:
            colours, top = _DIFF_COLOURS, scale or 1.0
            n = len(colours)
            level = np.trunc(cells / top * n)

            def bounds(k: int) -> tuple[float, float]:
                return (k * top / n, (k + 1) * top / n)
            low, high = "0", page_number(top)
        else:
            colours, top = _VALUE_COLOURS, scale or 1.0
            n = len(colours)
            half = n // 2
            level = half + np.rint(cells / top * half)

            def bounds(k: int) -> tuple[float, float]:
                return ((k - half - 0.5) * top / half, (k - half + 0.5) * top / half)
            low, high = page_number(-top), page_number(top)
        levels = np.where(np.isnan(cells), -1, np.clip(level, 0, n - 1)).astype(np.int64)
    by_level, bad = _paths(levels)

    def title(k: int) -> str:
        lo, hi = bounds(k)
        if k == n - 1:
            return f"{view.label}: {page_number(lo)} and above"
        if k == 0 and not is_diff:
            return f"{view.label}: {page_number(hi)} and below"
        return f"{view.label}: {page_number(lo)} to {page_number(hi)}"
    layers = tuple(Layer(colours[k], d, title(k)) for k, d in sorted(by_level.items()))
    px = max(4.0, min(24.0, _HEATMAP_PX / max(rows, cols, 1)))
    shape = " × ".join(str(d) for d in view.shape) or "scalar"
    pooled = ""
    if view.pooling != "none":
        how = "largest" if view.pooling == "max" else "mean"
        pooled = f"; each cell shows the {how} of up to {view.cell[0]} × {view.cell[1]} elements"
    what = "|actual − expected|" if is_diff else view.label
    caption = f"shape ({shape}){pooled}"
    scale_text = (f"viridis colour scale from 0 (dark purple) to {high} (yellow)" if is_diff else
                  f"colour scale from {low} (orange) through 0 (white) to {high} (purple)")
    description = f"Heatmap of {what} for {gradient}: {rows} × {cols} cells, {scale_text}"
    if view.worst_cell is not None:
        description += "; the outlined cell holds the element with the greatest difference"
    if bad:
        description += "; hatched cells are NaN or infinite"
    heading = {"actual": "actual (yours)", "expected": "expected (autograd)"}.get(view.label, what)
    return Heatmap(ident, view.label, heading, caption, description, rows, cols, cols * px,
                   rows * px, layers, bad, view.worst_cell, colours, low, high)


def heatmaps(g: GradientResult, ident: str) -> tuple[Heatmap, ...]:
    """expected and actual share one scale (expected's range: the truth looks right, a runaway
    actual saturates); the difference has its own."""
    cells = [_cells(view) for view in g.views]

    def top(values: np.ndarray) -> float:
        finite = np.abs(values[~np.isnan(values)])
        return float(finite.max()) if finite.size else 0.0

    values = [(v, c) for v, c in zip(g.views, cells) if v.label != "difference"]
    expected = next((c for v, c in values if v.label == "expected"), None)
    shared = top(expected) if expected is not None else 0.0
    if shared == 0.0:
        shared = max((top(c) for _, c in values), default=0.0)
    maps = []
    for i, (view, c) in enumerate(zip(g.views, cells)):
        scale = top(c) if view.label == "difference" else shared
        maps.append(_heatmap(view, c, ident=f"{ident}-map{i}", gradient=g.name, scale=scale))
    return tuple(maps)
