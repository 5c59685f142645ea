"""Actual (student) vs expected (autograd): shape, dtype, finiteness, exact, approx, maxdiff.

``approx`` is scale-aware: an element passes when
``|actual - expected| <= rtol * |expected| + atol_scale * scale``, where ``scale`` is the largest
magnitude in play at that step (the expected gradient and the upstream gradients it is computed
from). The lecture's plain ``torch.allclose`` (rtol 1e-5, atol 1e-8) fails correct answers whose
true value is rounding noise, e.g. db1 ~ 1e-9 (batch norm cancels b1); it is reported beside.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Comparison", "Tolerance", "compare_gradient", "numpy_view", "ulp_distance",
           "unravel_index"]


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
    allclose: bool | None            # the lecture's torch.allclose verdict (None: brief)
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


_NUMPY_DTYPES = (torch.float32, torch.float64)


def _numpy_ready(t: torch.Tensor) -> bool:
    """Whether numpy computes exactly what torch would on ``t``: a plain non-empty C-contiguous
    CPU tensor of float32 or float64. Anything else (float16 and bfloat16, integer and bool,
    other devices and layouts, subclasses, conj/neg views, strided or expanded layouts, empty)
    goes the torch way."""
    return (type(t) is torch.Tensor and t.dtype in _NUMPY_DTYPES and t.is_cpu
            and t.layout == torch.strided and t.numel() > 0 and t.is_contiguous()
            and not t.is_conj() and not t.is_neg())


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """A zero-copy view of a tensor that is _numpy_ready."""
    return (t.detach() if t.requires_grad else t).numpy()


def numpy_view(t: torch.Tensor) -> np.ndarray | None:
    """A zero-copy numpy view of ``t`` where elementwise numpy arithmetic on it gives torch's
    results to the bit (a plain non-empty C-contiguous float32/float64 CPU tensor), else None.
    Sums and norms are another matter: their last bits depend on the summation order."""
    return _as_numpy(t) if _numpy_ready(t) else None


@dataclass(frozen=True)
class _Expected:
    """What a comparison needs of a numpy-ready expected gradient alone, worked out once per
    tensor: autograd's references are compared with every submission's answers."""

    e64: np.ndarray                 # float64 copy, from torch's .double() as _compare_torch's
    e_abs: np.ndarray               # |e64| (these arrays are numpy scalars for a 0-d tensor)
    e_max: float
    norm: float                     # torch.linalg.vector_norm(e64), as _compare_torch's
    bits: np.ndarray | None         # _ordered_bits of a float32 expected, else None
    close: np.ndarray               # torch.allclose's bound less the rtol term: atol + |rtol*e|


# id(expected) -> (a weak reference to it, its _Expected): an entry lasts as long as its tensor
# (a reference of the grading, or of a probe), which is compared with, never changed in place.
# (Not a WeakKeyDictionary: it compares keys with ==, which a tensor answers elementwise.)
_EXPECTED: dict[int, tuple["weakref.ref[torch.Tensor]", _Expected]] = {}


def _expected_facts(expected: torch.Tensor) -> _Expected:
    """``expected``'s _Expected, worked out on its first comparison (numpy-ready tensors only)."""
    key = id(expected)
    entry = _EXPECTED.get(key)
    if entry is not None and entry[0]() is expected:
        return entry[1]
    e_np = _as_numpy(expected)
    expected64 = expected.detach().double()
    e64 = expected64.numpy()
    e_abs = np.abs(e64)
    rtol, atol = e_np.dtype.type(1e-5), e_np.dtype.type(1e-8)
    facts = _Expected(e64, e_abs, float(e_abs.max()), float(torch.linalg.vector_norm(expected64)),
                      _ordered_bits(e_np) if e_np.dtype == np.float32 else None,
                      atol + np.abs(rtol * e_np))
    for array in (facts.e64, facts.e_abs, facts.bits, facts.close):
        if isinstance(array, np.ndarray):       # (a 0-d one's ufuncs give numpy scalars)
            array.flags.writeable = False

    def forget(ref: "weakref.ref[torch.Tensor]", key: int = key) -> None:
        if _EXPECTED.get(key, (None,))[0] is ref:
            del _EXPECTED[key]

    _EXPECTED[key] = (weakref.ref(expected, forget), facts)
    return facts


def _ordered_bits(x: np.ndarray) -> np.ndarray:
    """float32 bit patterns on a monotonic integer line, as int32: a negative pattern (sign bit
    set) maps to minus its magnitude bits, ``-(bits & 0x7FFFFFFF)``, without a branch."""
    bits = x.view(np.int32)
    sign = bits >> 31                     # -1 where the sign bit is set, else 0
    return (bits ^ (sign & 0x7FFFFFFF)) - sign


def _ulp_distance_numpy(a32: np.ndarray, e32: np.ndarray, *,
                        expected_bits: np.ndarray | None = None) -> int:
    """ulp_distance of two non-empty C-contiguous float32 arrays of one shape
    (``expected_bits``: _ordered_bits(e32), when worked out already)."""
    e_bits = _ordered_bits(e32) if expected_bits is None else expected_bits
    return int(np.abs(np.subtract(_ordered_bits(a32), e_bits, dtype=np.int64)).max())


def unravel_index(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    """The index of element ``flat`` of a tensor of ``shape``. numpy's: torch.unravel_index
    imports sympy on first use, half a second of CPU in every process that grades."""
    return tuple(int(i) for i in np.unravel_index(flat, tuple(shape)))


def ulp_distance(actual: torch.Tensor, expected: torch.Tensor) -> int:
    """Largest distance in float32 units in the last place between matching elements."""
    if _numpy_ready(actual) and _numpy_ready(expected) and actual.shape == expected.shape:
        with np.errstate(all="ignore"):   # float64 beyond float32's range: inf, as in torch
            return _ulp_distance_numpy(_as_numpy(actual).astype(np.float32, copy=False),
                                       _as_numpy(expected).astype(np.float32, copy=False))
    a = actual.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    e = expected.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    # map the sign-magnitude bit pattern to a monotonic integer line
    a = torch.where(a < 0, -(a & 0x7FFFFFFF), a)
    e = torch.where(e < 0, -(e & 0x7FFFFFFF), e)
    return int((a - e).abs().max()) if a.numel() else 0


def _dtype_note(actual: torch.Tensor, expected: torch.Tensor) -> list[str]:
    if actual.dtype == expected.dtype:
        return []
    return [f"dtype {actual.dtype} but expected {expected.dtype}: compared as "
            f"{expected.dtype}, so it cannot be exact"]


def _nonfinite(actual: torch.Tensor, bad: int) -> Comparison:
    return Comparison("nonfinite", False, False, False, None, None,
                      f"{bad} of {actual.numel()} elements are NaN or infinite: look for a "
                      "division by zero or log of 0")


def _exact(expected: torch.Tensor) -> Comparison:
    return Comparison("exact", True, True, True, 0.0, 0.0, None,
                      0 if expected.dtype == torch.float32 else None, 0, (0,) * expected.dim())


def _wrong_note(mismatched: int, numel: int, maxdiff: float, worst: tuple[int, ...] | None,
                expected_value: float, actual_value: float) -> str:
    return (f"{mismatched} of {numel} elements differ (greatest difference {maxdiff:.3g} at "
            f"index {worst}, expected {expected_value:.6g}, got {actual_value:.6g})")


def _allclose_numpy(a: np.ndarray, e: np.ndarray, finite: bool,
                    close: np.ndarray | None = None) -> bool:
    """torch.allclose(a, e) (rtol 1e-5, atol 1e-8, NaN never close), computed as torch.isclose
    does, in the arrays' own dtype: a == e (infinities), or a finite |a - e| within
    atol + |rtol * e| (``close``, when worked out already). ``finite``: a and e are known finite,
    where the first two tests add nothing (equal values are within atol, an overflowing |a - e|
    is beyond any finite bound)."""
    if close is None:
        rtol, atol = e.dtype.type(1e-5), e.dtype.type(1e-8)
        close = atol + np.abs(rtol * e)
    error = np.abs(a - e)
    within = error <= close
    if not finite:
        within = (a == e) | (np.isfinite(error) & within)
    return not _count_false(within)


def _count_false(mask: np.ndarray) -> int:
    """How many elements of a boolean array are False (count_nonzero is C through and through,
    several times cheaper than .all() on small arrays)."""
    return int(mask.size - np.count_nonzero(mask))


def _compare_numpy(actual: torch.Tensor, expected: torch.Tensor, scale: float | None,
                   tolerance: Tolerance, noise: float, brief: bool = False) -> Comparison:
    """_compare_torch's verdict on two numpy-ready tensors that are not equal, with the
    elementwise work in numpy (about a microsecond an operation, where torch's dispatch costs
    several on tensors this small), and what depends on the expected tensor alone worked out
    once for it (_Expected). The norms, whose last bits depend on the summation order, still
    come from torch, on tensors laid out and allocated as _compare_torch's."""
    a_np, e_np = _as_numpy(actual), _as_numpy(expected)
    facts = _expected_facts(expected)
    same_dtype = actual.dtype == expected.dtype
    with np.errstate(all="ignore"):     # inf - inf, float64 beyond float32: as torch, silently
        a = a_np if same_dtype else a_np.astype(e_np.dtype)
        if brief:                       # no norm to take: numpy's own array will do
            diff = np.empty(e_np.shape)
        else:
            diff_t = torch.empty(expected.shape, dtype=torch.float64)
            diff = diff_t.numpy()
        np.abs(np.subtract(a, facts.e64, out=diff), out=diff)
        maxdiff = float(diff.max())
        if not math.isfinite(maxdiff):  # else actual (converted or not) and expected are finite
            bad = _count_false(np.isfinite(a_np))
            if bad and not _count_false(np.isfinite(e_np)):
                return _nonfinite(actual, bad)
        notes = _dtype_note(actual, expected)
        s = max(scale if scale is not None else 0.0, facts.e_max)
        bound = tolerance.rtol * facts.e_abs + max(tolerance.atol_scale * s,
                                                   tolerance.atol_floor,
                                                   tolerance.noise_factor * noise)
        mismatched = int(np.count_nonzero(diff > bound))
        if brief and mismatched == 0:
            return _brief_approx(maxdiff, notes)
        if brief:                       # wrong: the full verdict (it is shown), norms included
            diff_t = torch.empty(expected.shape, dtype=torch.float64)
            diff_t.numpy()[...] = diff
            diff = diff_t.numpy()
        allclose = _allclose_numpy(a, e_np, finite=math.isfinite(maxdiff), close=facts.close)
    approx = mismatched == 0
    rel_error = (float(torch.linalg.vector_norm(diff_t)) / facts.norm if facts.norm > 0
                 else (0.0 if maxdiff == 0 else float("inf")))
    flat = int(diff.argmax())
    worst = unravel_index(flat, diff.shape)
    ulps = (_ulp_distance_numpy(a, e_np, expected_bits=facts.bits)
            if expected.dtype == torch.float32 else None)
    if approx:
        status = "approx"
    else:
        status = "wrong"
        notes.append(_wrong_note(mismatched, diff.size, maxdiff, worst,
                                 float(e_np.reshape(-1)[flat]), float(a.reshape(-1)[flat])))
    return Comparison(status, False, approx, allclose, maxdiff, rel_error,
                      "; ".join(notes) or None, ulps, mismatched, worst)


def _brief_approx(maxdiff: float, notes: list[str]) -> Comparison:
    """An approximate answer's verdict and maxdiff, without what only the lecture config's
    verdict shows (allclose, relative error, ULPs, where the greatest difference is)."""
    return Comparison("approx", False, True, None, maxdiff, None, "; ".join(notes) or None,
                      None, 0, None)


def _compare_torch(actual: torch.Tensor, expected: torch.Tensor, scale: float | None,
                   tolerance: Tolerance, noise: float) -> Comparison:
    """The general way, for any dtype, device or layout (shapes already agree)."""
    actual, expected = actual.detach(), expected.detach()
    notes = _dtype_note(actual, expected)
    a = actual.to(expected.dtype)
    if not torch.isfinite(actual).all() and torch.isfinite(expected).all():
        return _nonfinite(actual, int((~torch.isfinite(actual)).sum()))
    exact = actual.dtype == expected.dtype and bool(torch.equal(a, expected))
    if exact and a.numel():
        return _exact(expected)
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
        worst = unravel_index(flat, diff.shape)
    ulps = ulp_distance(a, expected) if expected.dtype == torch.float32 else None
    if exact:
        status = "exact"
    elif approx:
        status = "approx"
    else:
        status = "wrong"
        notes.append(_wrong_note(mismatched, diff.numel(), maxdiff, worst,
                                 float(expected.reshape(-1)[flat]), float(a.reshape(-1)[flat])))
    return Comparison(status, exact, approx or exact, allclose, maxdiff, rel_error,
                      "; ".join(notes) or None, ulps, mismatched, worst)


def compare_gradient(actual: torch.Tensor, expected: torch.Tensor, *,
                     scale: float | None = None, tolerance: Tolerance = Tolerance(),
                     noise: float = 0.0, brief: bool = False) -> Comparison:
    """Compare one gradient. ``scale`` defaults to the expected gradient's largest magnitude;
    ``noise`` is how far autograd's own answer is from the float64 truth (a correct answer
    computed in another order can be as far, chained errors included). ``brief``: an
    approximate answer gets its status and maxdiff only (allclose, rel_error, ulps and
    worst_index None), as a hidden config's verdict needs; any other verdict, and any
    comparison that takes the torch way (below), is the full one.

    Plain float32/float64 CPU tensors (every tensor the sandbox sends back, every autograd
    gradient) are compared in numpy; anything else in torch, with the same verdict."""
    if tuple(actual.shape) != tuple(expected.shape):
        return Comparison("shape", False, False, False, None, None,
                          f"shape {_fmt_shape(actual.shape)} but expected "
                          f"{_fmt_shape(expected.shape)}"
                          + _shape_advice(tuple(actual.shape), tuple(expected.shape)))
    if _numpy_ready(actual) and _numpy_ready(expected):
        if actual.dtype == expected.dtype and torch.equal(actual, expected):
            return _exact(expected)     # equal to autograd's, the common case
        return _compare_numpy(actual, expected, scale, tolerance, noise, brief)
    return _compare_torch(actual, expected, scale, tolerance, noise)
