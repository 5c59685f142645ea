"""Actual (student) vs expected (autograd): shape, dtype, finiteness, exact, approx, maxdiff.

``approx`` is scale-aware: an element passes when
``|actual - expected| <= rtol * |expected| + atol_scale * scale``, where ``scale`` is the largest
magnitude in play at that step (the expected gradient and the upstream gradients it is computed
from). The lecture's plain ``torch.allclose`` (rtol 1e-5, atol 1e-8) fails correct answers whose
true value is rounding noise, e.g. db1 ~ 1e-9 (batch norm cancels b1); it is reported beside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Comparison", "Tolerance", "compare_gradient", "ulp_distance"]


@dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-5
    atol_scale: float = 1e-6   # times the scale of the step
    atol_floor: float = 1e-12
    noise_factor: float = 32.0  # times autograd's own rounding noise (float32 vs float64)


@dataclass(frozen=True)
class Comparison:
    status: str                      # exact | approx | wrong | shape | nonfinite
    exact: bool
    approx: bool
    allclose: bool                   # the lecture's torch.allclose verdict
    maxdiff: float | None
    rel_error: float | None
    message: str | None
    ulps: int | None = None          # max ULP distance (float32), when shapes agree
    mismatched: int | None = None    # elements outside the tolerance
    worst_index: tuple[int, ...] | None = None


def _fmt_shape(shape: torch.Size | tuple[int, ...]) -> str:
    return str(tuple(shape))


def _shape_advice(actual: tuple[int, ...], expected: tuple[int, ...]) -> str:
    squeeze_a = tuple(d for d in actual if d != 1)
    squeeze_e = tuple(d for d in expected if d != 1)
    if squeeze_a == squeeze_e:
        if len(actual) < len(expected):
            return ": did you forget keepdim=True?"
        return ": a size-1 dimension too many (keepdim=True where it should not be, or a missing squeeze)"
    if len(actual) == len(expected) and sorted(actual) == sorted(expected):
        return ": transposed? check the order of the matmul operands and .T"
    if len(actual) == len(expected) and all(a == e or e == 1 for a, e in zip(actual, expected)):
        return (": the forward pass broadcast this tensor, so its gradient must be summed over "
                "the broadcast dimension (.sum(dim, keepdim=True))")
    return ""


def ulp_distance(actual: torch.Tensor, expected: torch.Tensor) -> int:
    """Largest distance in float32 units in the last place between matching elements."""
    a = actual.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    e = expected.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    # map the sign-magnitude bit pattern to a monotonic integer line
    a = torch.where(a < 0, -(a & 0x7FFFFFFF), a)
    e = torch.where(e < 0, -(e & 0x7FFFFFFF), e)
    return int((a - e).abs().max()) if a.numel() else 0


def compare_gradient(actual: torch.Tensor, expected: torch.Tensor, *,
                     scale: float | None = None, tolerance: Tolerance = Tolerance(),
                     noise: float = 0.0) -> Comparison:
    """Compare one gradient. ``scale`` defaults to the expected gradient's largest magnitude;
    ``noise`` is how far autograd's own answer is from the float64 truth (a correct answer
    computed in another order can be as far, chained errors included)."""
    if tuple(actual.shape) != tuple(expected.shape):
        return Comparison("shape", False, False, False, None, None,
                          f"shape {_fmt_shape(actual.shape)} but expected "
                          f"{_fmt_shape(expected.shape)}"
                          + _shape_advice(tuple(actual.shape), tuple(expected.shape)))
    notes = []
    if actual.dtype != expected.dtype:
        notes.append(f"dtype {actual.dtype} but expected {expected.dtype}: compared as "
                     f"{expected.dtype}, so it cannot be exact")
    a = actual.to(expected.dtype)
    if not torch.isfinite(actual).all() and torch.isfinite(expected).all():
        bad = int((~torch.isfinite(actual)).sum())
        return Comparison("nonfinite", False, False, False, None, None,
                          f"{bad} of {actual.numel()} elements are NaN or infinite: look for a "
                          "division by zero or log of 0")
    exact = actual.dtype == expected.dtype and bool(torch.equal(a, expected))
    if exact and a.numel():   # bit-identical, the common case: the same verdict, measured faster
        return Comparison("exact", True, True, True, 0.0, 0.0, None,
                          0 if expected.dtype == torch.float32 else None, 0, (0,) * a.dim())
    diff = (a.double() - expected.double()).abs()
    maxdiff = float(diff.max()) if diff.numel() else 0.0
    e_abs = expected.double().abs()
    e_max = float(e_abs.max()) if e_abs.numel() else 0.0
    s = max(scale if scale is not None else 0.0, e_max)
    bound = tolerance.rtol * e_abs + max(tolerance.atol_scale * s, tolerance.atol_floor,
                                         tolerance.noise_factor * noise)
    outside = diff > bound
    mismatched = int(outside.sum())
    approx = mismatched == 0
    allclose = bool(torch.allclose(a, expected))
    norm_e = float(expected.double().norm())
    rel_error = float(diff.norm()) / norm_e if norm_e > 0 else (0.0 if maxdiff == 0 else float("inf"))
    worst = None
    if diff.numel():
        flat = int(torch.argmax(diff.reshape(-1)))
        worst = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape))
    ulps = ulp_distance(a, expected) if expected.dtype == torch.float32 else None
    if exact:
        status = "exact"
    elif approx:
        status = "approx"
    else:
        status = "wrong"
        notes.append(f"{mismatched} of {diff.numel()} elements differ (greatest difference "
                     f"{maxdiff:.3g} at index {worst}, expected {float(expected.reshape(-1)[flat]):.6g}, "
                     f"got {float(a.reshape(-1)[flat]):.6g})")
    return Comparison(status, exact, approx or exact, allclose, maxdiff, rel_error,
                      "; ".join(notes) or None, ulps, mismatched, worst)
