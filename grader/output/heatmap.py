"""Heatmaps of a gradient, as SVG data for the report: expected, actual and their difference.

Each cell's value picks a colour level; a run of equal cells in a row is one rectangle, and all
the rectangles of one colour are one SVG path: a view of 32 x 32 cells is a few elements, not a
thousand.
Colour is never the only cue: each colour's range is its title, NaN / inf cells are hatched, and
the cell with the greatest difference is outlined.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

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


def _paths(levels: list[list[int | None]]) -> tuple[dict[int, list[str]], list[str]]:
    """Path data per colour level: one rectangle per run of equal cells in a row (``None``: a
    cell holding NaN / inf)."""
    by_level: dict[int, list[str]] = {}
    bad: list[str] = []
    for y, row in enumerate(levels):
        x = 0
        for key, run in itertools.groupby(row):
            w = len(list(run))
            rect = f"M{x} {y}h{w}v1h-{w}z"
            (bad if key is None else by_level.setdefault(key, [])).append(rect)
            x += w
    return by_level, bad


def _heatmap(view: TensorView, *, ident: str, gradient: str, scale: float) -> Heatmap:
    rows = len(view.values)
    cols = len(view.values[0]) if rows else 0
    is_diff = view.label == "difference"
    # the colour level of every cell (None: NaN / inf), clamped to 0..last inline: a helper
    # function or min/max per cell cost more than the arithmetic
    if is_diff:
        colours, top = _DIFF_COLOURS, scale or 1.0
        n = len(colours)
        last = n - 1
        levels = [[None if v is None else
                   k if 0 <= (k := int(v / top * n)) <= last else 0 if k < 0 else last
                   for v in row] for row in view.values]

        def bounds(k: int) -> tuple[float, float]:
            return (k * top / n, (k + 1) * top / n)
        low, high = "0", page_number(top)
    else:
        colours, top = _VALUE_COLOURS, scale or 1.0
        n = len(colours)
        last = n - 1
        half = n // 2
        levels = [[None if v is None else
                   k if 0 <= (k := half + round(v / top * half)) <= last else 0 if k < 0 else last
                   for v in row] for row in view.values]

        def bounds(k: int) -> tuple[float, float]:
            return ((k - half - 0.5) * top / half, (k - half + 0.5) * top / half)
        low, high = page_number(-top), page_number(top)
    by_level, bad = _paths(levels)
    def title(k: int) -> str:
        lo, hi = bounds(k)
        if k == n - 1:
            return f"{view.label}: {page_number(lo)} and above"
        if k == 0 and not is_diff:
            return f"{view.label}: {page_number(hi)} and below"
        return f"{view.label}: {page_number(lo)} to {page_number(hi)}"
    layers = tuple(Layer(colours[k], "".join(d), title(k)) for k, d in sorted(by_level.items()))
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
                   rows * px, layers, "".join(bad), view.worst_cell, colours, low, high)


def heatmaps(g: GradientResult, ident: str) -> tuple[Heatmap, ...]:
    """expected and actual share one scale (expected's range: the truth looks right, a runaway
    actual saturates); the difference has its own."""
    def top(view: TensorView) -> float:
        return max([abs(v) for row in view.values for v in row if v is not None], default=0.0)

    values = [v for v in g.views if v.label != "difference"]
    expected = next((v for v in values if v.label == "expected"), None)
    shared = top(expected) if expected is not None else 0.0
    if shared == 0.0:
        shared = max((top(v) for v in values), default=0.0)
    maps = []
    for i, view in enumerate(g.views):
        scale = top(view) if view.label == "difference" else shared
        maps.append(_heatmap(view, ident=f"{ident}-map{i}", gradient=g.name, scale=scale))
    return tuple(maps)
