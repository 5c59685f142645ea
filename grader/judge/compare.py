"""Actual (student) vs expected (autograd): shape, dtype, finiteness, exact, approx, maxdiff.

``approx`` is scale-aware: an element passes when
``|actual - expected| <= rtol * |expected| + atol_scale * scale``, where ``scale`` is the largest
magnitude in play at that step (the expected gradient and the upstream gradients it is computed
from). The lecture's plain ``torch.allclose`` (rtol 1e-5, atol 1e-8) fails correct answers whose
true value is rounding noise, e.g. db1 ~ 1e-9 (batch norm cancels b1); it is reported beside.

An answer whose shape differs from the tensor's only by size-1 dimensions in front ((64,) for
bnmeani's (1, 64), grader.lecture.shapes) is compared on its values, in the tensor's shape, and
its message says so; ``Tolerance(strict_shapes=True)`` makes it a "shape" verdict instead, as is
every other difference of shape.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..lecture.shapes import differs_by_leading_ones

__all__ = ["Comparison", "Tolerance", "compare_gradient", "graded_answer", "numpy_values",
           "unravel_index"]


@dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-5
    atol_scale: float = 1e-6   # times the scale of the step
    atol_floor: float = 1e-12
    noise_factor: float = 32.0  # times autograd's own rounding noise (float32 vs float64)
    strict_shapes: bool = False  # (64,) for a (1, 64) tensor is a "shape" verdict, not graded


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
    # the answer's own shape, where it differs from the expected one only by size-1 dimensions in
    # front and its values were compared (in the expected shape: worst_index is an index there)
    reshaped_from: tuple[int, ...] | None = None


def _fmt_shape(shape: torch.Size | tuple[int, ...]) -> str:
    return str(tuple(shape))


def _shape_advice(actual: tuple[int, ...], expected: tuple[int, ...]) -> str:
    squeeze_a = tuple(d for d in actual if d != 1)
    squeeze_e = tuple(d for d in expected if d != 1)
    if squeeze_a == squeeze_e:
        if len(actual) < len(expected):
            return ": did you forget keepdim=True?"
        return (": a size-1 dimension too many (keepdim=True where it should not be, or a "
                "missing squeeze)")
    if len(actual) == len(expected) and sorted(actual) == sorted(expected):
        return ": transposed? check the order of the matmul operands and .T"
    if len(actual) == len(expected) and all(a == e or e == 1 for a, e in zip(actual, expected)):
        return (": the forward pass broadcast this tensor, so its gradient must be summed over "
                "the broadcast dimension (.sum(dim, keepdim=True))")
    if len(actual) == len(expected) and all(a == e or a == 1 for a, e in zip(actual, expected)):
        return (": a gradient has one element per element of its tensor: spread yours along "
                "the dimension where it has size 1 (torch.ones_like(...) * ... broadcasts it)")
    return ""


# the dtypes numpy computes elementwise exactly as torch does (numpy has no bfloat16, and its
# float16 arithmetic rounds at other points than torch's)
_NUMPY_DTYPES = (torch.float32, torch.float64)


def _numpy_view(t: torch.Tensor) -> np.ndarray | None:
    """A zero-copy numpy view of a plain non-empty C-contiguous float32/float64 CPU tensor (not a
    subclass, conj or neg view), else None."""
    if (type(t) is torch.Tensor and t.dtype in _NUMPY_DTYPES and t.is_cpu
            and t.layout == torch.strided and t.numel() > 0 and t.is_contiguous()
            and not t.is_conj() and not t.is_neg()):
        return (t.detach() if t.requires_grad else t).numpy()
    return None


def numpy_values(t: torch.Tensor) -> np.ndarray:
    """``t``'s values as a C-contiguous numpy array: float32 and float64 as they are (``t``'s own
    memory where it can be), every other dtype widened to float64 as torch's ``.double()``
    widens it (exactly, integers beyond 2**53 aside). Elementwise numpy arithmetic on these
    gives torch's results to the bit; sums and norms do not (their last bits depend on the
    summation order)."""
    view = _numpy_view(t)
    if view is not None:
        return view
    t = t.detach()
    if t.dtype not in _NUMPY_DTYPES:
        t = t.double()
    return t.cpu().contiguous().numpy()


@dataclass(frozen=True)
class _Expected:
    """What a comparison needs of the expected gradient alone, worked out once per tensor:
    autograd's references are compared with every submission's answers."""

    e: np.ndarray                   # numpy_values(expected)
    e64: np.ndarray                 # float64, from torch's .double() (e_abs and norm too)
    e_abs: np.ndarray               # |e64| (these arrays are numpy scalars for a 0-d tensor)
    e_max: float
    finite: bool                    # every element of expected is finite
    norm: float                     # torch.linalg.vector_norm of torch's float64 copy
    bits: np.ndarray | None         # _ordered_bits of a float32 expected, else None
    # torch.allclose's bound less the rtol term, atol + |rtol*e|, in expected's dtype; None for
    # the dtypes where torch's own allclose decides (not float32/float64)
    close: np.ndarray | None


# id(expected) -> (a weak reference to it, its _Expected): an entry lasts as long as its tensor
# (a reference of the grading, or of a probe), which is compared with, never changed in place.
# (Not a WeakKeyDictionary: it compares keys with ==, which a tensor answers elementwise.)
_EXPECTED: dict[int, tuple["weakref.ref[torch.Tensor]", _Expected]] = {}


def _expected_facts(expected: torch.Tensor) -> _Expected:
    """``expected``'s _Expected, kept for the next comparison where ``expected`` is a plain
    float32/float64 tensor (autograd's gradients, the probes' references)."""
    key = id(expected)
    entry = _EXPECTED.get(key)
    if entry is not None and entry[0]() is expected:
        return entry[1]
    e = numpy_values(expected)
    # the float64 copy, and so the norm's summation order, as torch lays it out
    expected64 = expected.detach().double()
    e64 = expected64.numpy()
    e_abs = np.abs(e64)
    close = None
    if expected.dtype in _NUMPY_DTYPES:
        rtol, atol = e.dtype.type(1e-5), e.dtype.type(1e-8)
        close = atol + np.abs(rtol * e)
    facts = _Expected(e, e64, e_abs, float(e_abs.max()), not _count_false(np.isfinite(e)),
                      float(torch.linalg.vector_norm(expected64)),
                      _ordered_bits(e) if e.dtype == np.float32 else None, close)
    if _numpy_view(expected) is None:
        return facts                      # a copy: nothing to keep it for
    for array in (facts.e, facts.e64, facts.e_abs, facts.bits, facts.close):
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


def _ulp_distance(a32: np.ndarray, expected_bits: np.ndarray) -> int:
    """The largest distance in float32 units in the last place between matching elements of a
    non-empty float32 array and the _ordered_bits of another of its shape."""
    return int(np.abs(np.subtract(_ordered_bits(a32), expected_bits, dtype=np.int64)).max())


def unravel_index(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    """The index of element ``flat`` of a tensor of ``shape``. numpy's: torch.unravel_index
    imports sympy on first use, half a second of CPU in every process that grades."""
    return tuple(int(i) for i in np.unravel_index(flat, tuple(shape)))


def _dtype_note(actual: torch.Tensor, expected: torch.Tensor) -> list[str]:
    if actual.dtype == expected.dtype:
        return []
    return [f"dtype {actual.dtype} but expected {expected.dtype}: compared as "
            f"{expected.dtype}, so it cannot be exact"]


def graded_answer(actual: torch.Tensor, expected: torch.Tensor, *,
                  tolerance: Tolerance = Tolerance()) -> torch.Tensor | None:
    """``actual`` as compare_gradient compares it with ``expected``: itself where the shapes
    agree; in expected's shape where they differ only by size-1 dimensions in front (unless
    ``tolerance.strict_shapes``); None where the verdict is "shape"."""
    if tuple(actual.shape) == tuple(expected.shape):
        return actual
    if tolerance.strict_shapes or not differs_by_leading_ones(actual.shape, expected.shape):
        return None
    return actual.reshape(expected.shape)


def _leading_ones_fix(actual: tuple[int, ...], expected: tuple[int, ...],
                      tensor: str) -> str:
    """How to give an answer ``tensor``'s own shape, which differs from it only by size-1
    dimensions in front."""
    if len(actual) < len(expected):
        view = f"`.view({', '.join(map(str, expected))})`"
        if len(expected) - len(actual) == 1:
            return f"`.sum(0, keepdim=True)` keeps the shape (or {view})"
        return f"{view} gives the shape of {tensor}"
    if len(actual) - len(expected) == 1:
        return f"`.sum(0)` without keepdim=True, or `.squeeze(0)`, gives the shape of {tensor}"
    return f"`.view({', '.join(map(str, expected))})` gives the shape of {tensor}"


def _on_values(cmp: Comparison, actual: torch.Tensor, expected: torch.Tensor,
               variable: str | None) -> Comparison:
    """The comparison of an answer reshaped to the expected shape, with a note saying so."""
    a, e = tuple(actual.shape), tuple(expected.shape)
    tensor = variable or "the tensor"
    grad = f"{variable}.grad" if variable else "the tensor's .grad"
    match = ", which match" if cmp.status in ("exact", "approx") else ""
    note = (f"shape {_fmt_shape(a)}, but {grad} has shape {_fmt_shape(e)}: graded on its "
            f"values{match}; {_leading_ones_fix(a, e, tensor)}")
    message = f"{note}; {cmp.message}" if cmp.message else note
    return dataclasses.replace(cmp, message=message, reshaped_from=a)


def _shape(actual: torch.Tensor, expected: torch.Tensor) -> Comparison:
    return Comparison("shape", False, False, False, None, None,
                      f"shape {_fmt_shape(actual.shape)} but expected "
                      f"{_fmt_shape(expected.shape)}"
                      + _shape_advice(tuple(actual.shape), tuple(expected.shape)))


def _nonfinite(actual: torch.Tensor, bad: int) -> Comparison:
    return Comparison("nonfinite", False, False, False, None, None,
                      f"{bad} of {actual.numel()} elements are NaN or infinite: look for a "
                      "division by zero or log of 0")


def _exact(expected: torch.Tensor) -> Comparison:
    return Comparison("exact", True, True, True, 0.0, 0.0, None,
                      0 if expected.dtype == torch.float32 else None, 0, (0,) * expected.dim())


def _empty(actual: torch.Tensor, expected: torch.Tensor) -> Comparison:
    """Two empty tensors of one shape: nothing differs, and nothing has an index."""
    notes = _dtype_note(actual, expected)
    return Comparison("approx" if notes else "exact", not notes, True, True, 0.0, 0.0,
                      "; ".join(notes) or None, 0 if expected.dtype == torch.float32 else None,
                      0, None)


def _brief_approx(maxdiff: float, notes: list[str]) -> Comparison:
    """An approximate answer's verdict and maxdiff, without what only the lecture config's
    verdict shows (allclose, relative error, ULPs, where the greatest difference is)."""
    return Comparison("approx", False, True, None, maxdiff, None, "; ".join(notes) or None,
                      None, 0, None)


def _wrong_note(mismatched: int, numel: int, maxdiff: float, worst: tuple[int, ...] | None,
                expected_value: float, actual_value: float) -> str:
    return (f"{mismatched} of {numel} elements differ (greatest difference {maxdiff:.3g} at "
            f"index {worst}, expected {expected_value:.6g}, got {actual_value:.6g})")


def _allclose(a: np.ndarray, e: np.ndarray, finite: bool, close: np.ndarray) -> bool:
    """torch.allclose(a, e) (rtol 1e-5, atol 1e-8, NaN never close) of two float32 or float64
    arrays of one dtype, computed as torch.isclose does, in that dtype: a == e (infinities), or
    a finite |a - e| within ``close``, atol + |rtol * e|. ``finite``: a and e are known finite,
    where the first two tests add nothing (equal values are within atol, an overflowing
    |a - e| is beyond any finite bound)."""
    error = np.abs(a - e)
    within = error <= close
    if not finite:
        within = (a == e) | (np.isfinite(error) & within)
    return not _count_false(within)


def _count_false(mask: np.ndarray) -> int:
    """How many elements of a boolean array are False (count_nonzero is C through and through,
    several times cheaper than .all() on small arrays)."""
    return int(mask.size - np.count_nonzero(mask))


def _norm_ready(answer: torch.Tensor) -> torch.Tensor:
    """An empty float64 tensor for |answer - expected|, laid out in memory as ``answer`` is
    (transposed, say) and allocated by torch: a norm sums in memory order, and its last bits
    depend on that order and on the alignment."""
    return torch.empty_like(answer, dtype=torch.float64, device="cpu")


def compare_gradient(actual: torch.Tensor, expected: torch.Tensor, *,
                     scale: float | None = None, tolerance: Tolerance = Tolerance(),
                     noise: float = 0.0, brief: bool = False,
                     variable: str | None = None) -> Comparison:
    """Compare one gradient. ``scale`` defaults to the expected gradient's largest magnitude;
    ``noise`` is how far autograd's own answer is from the float64 truth (a correct answer
    computed in another order can be as far, chained errors included). ``brief``: an
    approximate answer gets its status and maxdiff only (allclose, rel_error, ulps and
    worst_index None), as a hidden config's verdict needs; any other verdict is the full one.
    ``variable``: the tensor whose gradient this is ("bnmeani"), named in the message of an
    answer compared on its values in another shape (graded_answer).

    The answer is compared as ``actual.to(expected.dtype)``; the elementwise work is done in
    numpy (about a microsecond an operation, where torch's dispatch costs several on tensors
    this small), on numpy_values of both, and what depends on the expected tensor alone is
    worked out once for it (_Expected). The norms, whose last bits depend on the summation
    order, come from torch."""
    if tuple(actual.shape) != tuple(expected.shape):
        graded = graded_answer(actual, expected, tolerance=tolerance)
        if graded is None:
            return _shape(actual, expected)
        return _on_values(compare_gradient(graded, expected, scale=scale, tolerance=tolerance,
                                           noise=noise, brief=brief), actual, expected, variable)
    if not expected.numel():
        return _empty(actual, expected)
    if actual.dtype == expected.dtype and torch.equal(actual, expected):
        return _exact(expected)         # equal to autograd's, the common case
    facts = _expected_facts(expected)
    converted = actual if actual.dtype == expected.dtype else actual.detach().to(expected.dtype)
    a, e = numpy_values(converted), facts.e
    with np.errstate(all="ignore"):     # inf - inf, float64 beyond float32: as torch, silently
        if brief:                       # no norm to take: numpy's own array will do
            diff = np.empty(e.shape)
        else:
            diff_t = _norm_ready(converted)
            diff = diff_t.numpy()
        np.abs(np.subtract(a, facts.e64, out=diff), out=diff)
        maxdiff = float(diff.max())
        if not math.isfinite(maxdiff) and facts.finite:   # else actual is finite too
            bad = _count_false(np.isfinite(numpy_values(actual)))
            if bad:
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
            diff_t = _norm_ready(converted)
            diff_t.numpy()[...] = diff
            diff = diff_t.numpy()
        if facts.close is None:         # float16, bfloat16, integers, bool: torch's own
            allclose = bool(torch.allclose(converted.detach(), expected.detach()))
        else:
            allclose = _allclose(a, e, finite=math.isfinite(maxdiff), close=facts.close)
    approx = mismatched == 0
    rel_error = (float(torch.linalg.vector_norm(diff_t)) / facts.norm if facts.norm > 0
                 else (0.0 if maxdiff == 0 else float("inf")))
    flat = int(diff.argmax())
    worst = unravel_index(flat, diff.shape)
    ulps = _ulp_distance(a, facts.bits) if facts.bits is not None else None
    if approx:
        status = "approx"
    else:
        status = "wrong"
        notes.append(_wrong_note(mismatched, diff.size, maxdiff, worst,
                                 float(e.reshape(-1)[flat]), float(a.reshape(-1)[flat])))
    return Comparison(status, False, approx, allclose, maxdiff, rel_error,
                      "; ".join(notes) or None, ulps, mismatched, worst)
