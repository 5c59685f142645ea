"""Tensors -> small pictures for the report: downsampled views and the mismatch summary.

A report must render from the results JSON alone, so a failing gradient carries what its heatmaps
need: expected, actual and |actual - expected|, each laid out in 2-D and pooled to at most
``MAX_CELLS`` x ``MAX_CELLS`` cells. Values are averaged per cell; differences keep the largest
of each cell, so that one wrong element is never averaged away.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .compare import Comparison, unravel_index
from ..output.results import TensorView

__all__ = ["MAX_CELLS", "failure_fields", "layout_2d", "tensor_view"]

MAX_CELLS = 32
_DIGITS = 4          # significant digits kept per cell: the JSON stays small


def layout_2d(shape: tuple[int, ...]) -> tuple[int, int]:
    """How a tensor of ``shape`` is drawn: 0-D as one cell, 1-D as a row, N-D as (dim 0, the rest)."""
    if len(shape) == 0:
        return (1, 1)
    if len(shape) == 1:
        return (1, shape[0])
    return (shape[0], math.prod(shape[1:]))


def _cell_of(index: tuple[int, ...], shape: tuple[int, ...], out: tuple[int, int]) -> tuple[int, int]:
    """The view cell that holds element ``index`` of a tensor of ``shape``."""
    rows, cols = layout_2d(shape)
    if len(shape) == 0:
        r, c = 0, 0
    elif len(shape) == 1:
        r, c = 0, index[0]
    else:
        r = index[0]
        c = 0
        for i, d in zip(index[1:], shape[1:]):
            c = c * d + i
    return (r * out[0] // max(rows, 1), c * out[1] // max(cols, 1))


_ROUNDED = f"{{:.{_DIGITS}g}}".format     # a value written with _DIGITS digits, read back


def _rounded_rows(pooled: torch.Tensor, bad_cells: torch.Tensor
                  ) -> tuple[tuple[float | None, ...], ...]:
    """Each cell with _DIGITS significant digits, None where it holds NaN / inf: formatted and
    read back by map, with no Python call per cell (a view has up to a thousand cells)."""
    rows = [list(map(float, map(_ROUNDED, row))) for row in pooled.tolist()]
    if not bool(bad_cells.any()):
        return tuple(map(tuple, rows))
    return tuple(tuple(None if b else v for v, b in zip(row, brow))
                 for row, brow in zip(rows, bad_cells.tolist()))


def tensor_view(tensor: torch.Tensor, *, label: str, pooling: str = "mean",
                worst_index: tuple[int, ...] | None = None,
                max_cells: int = MAX_CELLS) -> TensorView:
    """``tensor`` as at most ``max_cells`` x ``max_cells`` cells (``pooling``: "mean" or "max")."""
    shape = tuple(int(d) for d in tensor.shape)
    rows, cols = layout_2d(shape)
    if rows * cols == 0:
        return TensorView(label, shape, (), (1, 1), "none", None)
    x = tensor.detach().to(torch.float64).reshape(rows, cols)
    bad = ~torch.isfinite(x)
    x = torch.where(bad, torch.zeros((), dtype=x.dtype), x)
    out = (min(rows, max_cells), min(cols, max_cells))
    if out == (rows, cols):
        pooled, bad_cells, used = x, bad, "none"
    else:
        grid = x[None, None]
        if pooling == "max":
            pooled = F.adaptive_max_pool2d(grid, out)[0, 0]
        else:
            pooled = F.adaptive_avg_pool2d(grid, out)[0, 0]
        bad_cells = F.adaptive_max_pool2d(bad[None, None].to(x.dtype), out)[0, 0] > 0
        used = pooling
    values = _rounded_rows(pooled, bad_cells)
    cell = (math.ceil(rows / out[0]), math.ceil(cols / out[1]))
    worst = _cell_of(worst_index, shape, out) if worst_index is not None and \
        len(worst_index) == len(shape) else None
    return TensorView(label, shape, values, cell, used, worst)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def failure_fields(actual: torch.Tensor, expected: torch.Tensor,
                   comparison: Comparison | None) -> dict[str, Any]:
    """GradientResult fields for a failing gradient: mismatch summary and views.

    The counts come from ``comparison`` when it is about these very tensors (the training check
    of exercise 4 compares parameters but shows the loss curves); otherwise from the tensors.
    An answer that ``comparison`` compared in the expected shape (its shape differs only by
    size-1 dimensions in front) is pictured in that shape, as it was compared.
    """
    if comparison is not None and comparison.reshaped_from is not None \
            and tuple(actual.shape) == comparison.reshaped_from:
        actual = actual.reshape(expected.shape)
    same_shape = tuple(actual.shape) == tuple(expected.shape)
    if not same_shape:
        return {"views": (tensor_view(expected, label="expected"),
                          tensor_view(actual, label="actual"))}
    a = actual.detach().to(torch.float64)
    e = expected.detach().to(torch.float64)
    numel = e.numel()
    if numel == 0:
        return {"numel": 0, "mismatched": 0}
    nonfinite = ~torch.isfinite(a) & torch.isfinite(e)
    diff = (a - e).abs()
    if bool(nonfinite.any()):
        flat = int(torch.nonzero(nonfinite.reshape(-1))[0])
        mismatched = int(nonfinite.sum())
    else:
        diff = torch.where(torch.isnan(diff), torch.full((), math.inf, dtype=diff.dtype), diff)
        flat = int(torch.argmax(diff.reshape(-1)))
        mismatched = None
    worst = unravel_index(flat, e.shape)
    if mismatched is None:
        if comparison is not None and comparison.mismatched is not None \
                and comparison.worst_index == worst:
            mismatched = comparison.mismatched
        else:
            mismatched = int((diff > 0).sum())
    return {
        "mismatched": mismatched,
        "numel": numel,
        "worst_index": worst,
        "worst_actual": _finite_or_none(float(a.reshape(-1)[flat])),
        "worst_expected": _finite_or_none(float(e.reshape(-1)[flat])),
        "views": (tensor_view(expected, label="expected", worst_index=worst),
                  tensor_view(actual, label="actual", worst_index=worst),
                  tensor_view(diff, label="difference", pooling="max", worst_index=worst)),
    }
