"""Comparing actual (student) with expected (autograd)."""

from __future__ import annotations

import dataclasses
import math
import random
import warnings
from collections import Counter
from typing import Any, Callable

import pytest
import torch

from grader.judge import compare
from grader.judge.compare import Comparison, Tolerance, compare_gradient


def test_identical_tensors_are_exact():
    e = torch.randn(4, 5)
    c = compare_gradient(e.clone(), e)
    assert c.status == "exact" and c.exact and c.approx and c.allclose and c.maxdiff == 0.0


def test_a_missing_keepdim_is_named_in_the_shape_message():
    c = compare_gradient(torch.zeros(32), torch.zeros(32, 1))
    assert c.status == "shape"
    assert "(32,) but expected (32, 1)" in c.message and "keepdim=True" in c.message


def test_a_missing_sum_over_a_broadcast_dimension_is_named():
    c = compare_gradient(torch.zeros(32, 64), torch.zeros(1, 64))
    assert c.status == "shape" and "broadcast" in c.message


def test_a_transposed_answer_is_named():
    c = compare_gradient(torch.zeros(27, 64), torch.zeros(64, 27))
    assert c.status == "shape" and "transposed" in c.message


def test_another_element_count_is_a_shape_and_says_how_to_spread_the_gradient():
    c = compare_gradient(torch.zeros(1, 64), torch.zeros(32, 64))
    assert c.status == "shape" and "(1, 64) but expected (32, 64)" in c.message
    assert "torch.ones_like" in c.message and c.reshaped_from is None


@pytest.mark.parametrize("actual_shape,expected_shape,fix", [
    ((64,), (1, 64), "`.sum(0, keepdim=True)` keeps the shape (or `.view(1, 64)`)"),
    ((27,), (1, 1, 27), "`.view(1, 1, 27)` gives the shape of bnmeani"),
    ((1, 64), (64,), "`.sum(0)` without keepdim=True, or `.squeeze(0)`, gives the shape of "
                     "bnmeani"),
    ((1, 1, 64), (64,), "`.view(64)` gives the shape of bnmeani"),
])
def test_the_right_values_with_size_1_dimensions_in_front_are_graded_on_their_values(
        actual_shape, expected_shape, fix):
    expected = torch.randn(expected_shape)
    c = compare_gradient(expected.reshape(actual_shape), expected, variable="bnmeani")
    assert c.status == "exact" and c.exact and c.approx and c.allclose and c.maxdiff == 0.0
    assert c.reshaped_from == actual_shape and len(c.worst_index) == len(expected_shape)
    assert c.message == (f"shape {actual_shape}, but bnmeani.grad has shape {expected_shape}: "
                         f"graded on its values, which match; {fix}")
    assert "keepdim=True?" not in c.message


def test_values_in_another_leading_shape_are_approximate_or_wrong_as_in_the_right_shape():
    expected = torch.randn(1, 64)
    near = (expected * (1 + 1e-7)).reshape(64)
    c = compare_gradient(near, expected, variable="bnmeani")
    assert c.status == "approx" and c.reshaped_from == (64,) and "which match" in c.message
    far = expected.reshape(64).clone()
    far[5] += 1.0
    c = compare_gradient(far, expected, variable="bnmeani")
    assert c.status == "wrong" and c.worst_index == (0, 5) and c.mismatched == 1
    assert c.message.startswith("shape (64,), but bnmeani.grad has shape (1, 64): graded on "
                                "its values; ") and "which match" not in c.message
    assert "1 of 64 elements differ" in c.message


def test_strict_shapes_make_a_leading_size_1_difference_a_shape_verdict():
    strict = Tolerance(strict_shapes=True)
    expected = torch.randn(1, 64)
    c = compare_gradient(expected.reshape(64), expected, tolerance=strict, variable="bnmeani")
    assert c.status == "shape" and c.message == ("shape (64,) but expected (1, 64): did you "
                                                 "forget keepdim=True?")
    c = compare_gradient(torch.zeros(1, 27), torch.zeros(27), tolerance=strict)
    assert c.status == "shape" and "size-1 dimension too many" in c.message


def test_a_size_1_dimension_elsewhere_stays_a_shape_verdict():
    """(32,) for logit_maxes' (32, 1) lines up with the other axis when broadcast."""
    for actual, expected in (((32,), (32, 1)), ((32, 1), (32,)), ((64, 1), (1, 64)),
                             ((1, 64), (32, 64)), ((27, 1), (1, 27))):
        c = compare_gradient(torch.zeros(actual), torch.zeros(expected))
        assert c.status == "shape" and c.reshaped_from is None, (actual, expected)


def test_the_graded_answer_is_the_answer_in_the_shape_it_is_compared_in():
    e = torch.randn(1, 64)
    assert compare.graded_answer(e, e) is e
    assert compare.graded_answer(e.reshape(64), e).shape == (1, 64)
    assert compare.graded_answer(e.reshape(64), e, tolerance=Tolerance(strict_shapes=True)) \
        is None
    assert compare.graded_answer(torch.zeros(64, 1), e) is None


def test_near_zero_true_gradient_passes_when_scaled_but_fails_plain_allclose():
    # db1 is ~1e-9 (batch norm cancels b1); a correct sum differs from autograd by ~1e-8
    expected = torch.full((64,), 3e-9)
    actual = expected + 1.1e-8
    c = compare_gradient(actual, expected, scale=0.02)
    assert c.status == "approx" and not c.allclose


def test_a_wrong_value_is_wrong_and_says_where():
    expected = torch.ones(3, 3)
    actual = expected.clone()
    actual[1, 2] = 1.5
    c = compare_gradient(actual, expected)
    assert c.status == "wrong" and c.mismatched == 1 and c.worst_index == (1, 2)
    assert "index (1, 2)" in c.message


def test_nan_is_reported_as_nonfinite():
    actual = torch.ones(2, 2)
    actual[0, 0] = float("nan")
    assert compare_gradient(actual, torch.ones(2, 2)).status == "nonfinite"


def test_float64_answer_cannot_be_exact_but_can_be_approximate():
    e = torch.randn(5)
    c = compare_gradient(e.double(), e)
    assert c.status == "approx" and not c.exact and "dtype" in c.message


def test_tolerance_is_configurable():
    e = torch.ones(3)
    a = e * (1 + 1e-4)
    assert compare_gradient(a, e).status == "wrong"
    assert compare_gradient(a, e, tolerance=Tolerance(rtol=1e-3)).status == "approx"


def test_ulps_count_float32_steps():
    x = torch.tensor([1.0, 2.0])
    assert compare_gradient(torch.nextafter(x, torch.tensor([2.0, 3.0])), x).ulps == 1
    assert compare_gradient(torch.tensor([-0.0, 1.0]), torch.tensor([0.0, 1.0])).ulps == 0


def test_autograd_s_own_rounding_noise_widens_the_tolerance_only_as_far_as_it_goes():
    expected = torch.zeros(8)
    actual = torch.full((8,), 1e-9)
    assert compare_gradient(actual, expected, scale=1e-6).status == "wrong"
    assert compare_gradient(actual, expected, scale=1e-6, noise=1e-10).status == "approx"
    assert compare_gradient(actual, expected, scale=1e-6, noise=1e-12).status == "wrong"


# -- compare_gradient's numpy arithmetic gives torch's verdicts, field by field ---------------
#
# The oracle below computes every verdict all in torch, the plain way, for any dtype and layout;
# it lives here only, as the reference.

def _oracle_fmt_shape(shape: torch.Size | tuple[int, ...]) -> str:
    return str(tuple(shape))


def _oracle_shape_advice(actual: tuple[int, ...], expected: tuple[int, ...]) -> str:
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
    if len(actual) == len(expected) and all(a == e or a == 1 for a, e in zip(actual, expected)):
        return (": a gradient has one element per element of its tensor: spread yours along "
                "the dimension where it has size 1 (torch.ones_like(...) * ... broadcasts it)")
    return ""


def _oracle_ulp_distance(actual: torch.Tensor, expected: torch.Tensor) -> int:
    a = actual.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    e = expected.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    a = torch.where(a < 0, -(a & 0x7FFFFFFF), a)
    e = torch.where(e < 0, -(e & 0x7FFFFFFF), e)
    return int((a - e).abs().max()) if a.numel() else 0


def _oracle_strip_leading_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def _oracle_shape_fix(actual: tuple[int, ...], expected: tuple[int, ...]) -> str:
    view = f"`.view({', '.join(map(str, expected))})`"
    if len(actual) + 1 == len(expected):
        return f"`.sum(0, keepdim=True)` keeps the shape (or {view})"
    if len(actual) == len(expected) + 1:
        return "`.sum(0)` without keepdim=True, or `.squeeze(0)`, gives the shape of the tensor"
    return f"{view} gives the shape of the tensor"


def _oracle_compare_gradient(actual: torch.Tensor, expected: torch.Tensor, *,
                             scale: float | None = None, tolerance: Tolerance = Tolerance(),
                             noise: float = 0.0) -> Comparison:
    a_shape, e_shape = tuple(actual.shape), tuple(expected.shape)
    if a_shape != e_shape and not tolerance.strict_shapes and \
            _oracle_strip_leading_ones(a_shape) == _oracle_strip_leading_ones(e_shape):
        # compared on its values, in the expected shape, with a note saying so
        c = _oracle_compare_gradient(actual.reshape(e_shape), expected, scale=scale,
                                     tolerance=tolerance, noise=noise)
        note = (f"shape {a_shape}, but the tensor's .grad has shape {e_shape}: graded on its "
                f"values{', which match' if c.status in ('exact', 'approx') else ''}; "
                + _oracle_shape_fix(a_shape, e_shape))
        return dataclasses.replace(c, message="; ".join(m for m in (note, c.message) if m),
                                   reshaped_from=a_shape)
    if tuple(actual.shape) != tuple(expected.shape):
        return Comparison("shape", False, False, False, None, None,
                          f"shape {_oracle_fmt_shape(actual.shape)} but expected "
                          f"{_oracle_fmt_shape(expected.shape)}"
                          + _oracle_shape_advice(tuple(actual.shape), tuple(expected.shape)))
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
    if exact and a.numel():
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
    ulps = _oracle_ulp_distance(a, expected) if expected.dtype == torch.float32 else None
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


_SHAPES = ((), (1,), (7,), (64,), (32, 27), (32, 64), (30, 64), (1, 64), (32, 1), (27, 10),
           (3, 4, 5), (0,), (0, 3), (2, 0, 3))
_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_TOLERANCES = (Tolerance(), Tolerance(rtol=1e-3), Tolerance(rtol=1e-4, atol_scale=1e-5),
               Tolerance(rtol=0.0, atol_scale=0.0, atol_floor=0.0), Tolerance(strict_shapes=True))


def _random_expected(rng: random.Random, shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    magnitude = rng.choice((1.0, 1e-2, 1e-9, 1e3, 1e-40, 1e37))
    values = torch.randn(shape, generator=g, dtype=torch.float64) * magnitude
    dtype = rng.choices((torch.float32, torch.float64, torch.float16, torch.bfloat16,
                         torch.int64, torch.bool), weights=(12, 3, 1, 1, 1, 1))[0]
    if dtype == torch.int64:
        return (values / magnitude * 5).round().to(dtype)
    if dtype == torch.bool:
        return values > 0
    expected = values.to(dtype)
    if expected.numel() and rng.random() < 0.2:   # zeros, signed zeros, huge, non-finite
        flat = expected.view(-1)
        for _ in range(rng.randint(1, 3)):
            flat[rng.randrange(flat.numel())] = rng.choice(
                (0.0, -0.0, 3e38, -3e38, float("nan"), float("inf"), -float("inf")))
    return expected


def _perturbed(rng: random.Random, expected: torch.Tensor) -> torch.Tensor:
    """A student's answer near (or not near) ``expected``, in expected's dtype."""
    e = expected
    if not e.is_floating_point() or not e.numel():
        return e.clone() if rng.random() < 0.6 else torch.zeros_like(e)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    mask = torch.rand(e.shape, generator=g) < rng.choice((0.05, 0.5, 1.0))
    kind = rng.choice(("same", "ulp", "relative", "absolute", "noise", "nan", "inf", "sign",
                       "signed_zero", "boundary", "factor"))
    e64 = e.double()
    if kind == "same":
        out = e.clone()
    elif kind == "ulp":
        out = e.clone()
        for _ in range(rng.choice((1, 1, 2, 5))):
            out = torch.where(mask, torch.nextafter(out, torch.full_like(out, rng.choice(
                (float("inf"), -float("inf"))))), out)
    elif kind == "relative":
        out = torch.where(mask, e64 * (1 + rng.choice((1e-7, -1e-7, 1e-6, 1e-5, 1e-3))), e64)
    elif kind == "absolute":
        out = torch.where(mask, e64 + rng.choice((1e-12, 1e-9, 1.1e-8, 1e-6, -1e-6)), e64)
    elif kind == "noise":
        out = e64 + torch.randn(e.shape, generator=g, dtype=torch.float64) * rng.choice(
            (1e-9, 1e-7, 1e-3))
    elif kind in ("nan", "inf"):
        out = e.clone()
        out[mask] = float("nan") if kind == "nan" else rng.choice((1.0, -1.0)) * float("inf")
    elif kind == "sign":
        out = torch.where(mask, -e, e)
    elif kind == "signed_zero":
        out = torch.where(e == 0, -e, e)
    elif kind == "boundary":   # torch.allclose's edge, |a - e| = atol + rtol |e|, give or take
        step = (1e-8 + 1e-5 * e64.abs()) * (1 + rng.randint(-3, 3) * 2.0**-23)
        out = torch.where(mask, e64 + rng.choice((1.0, -1.0)) * step, e64)
    else:
        out = e64 * rng.choice((-1.0, 0.5, 2.0, 1 / 32))
    return out.to(e.dtype)


def _relaid(rng: random.Random, t: torch.Tensor, how: str) -> torch.Tensor:
    """The same values in another memory layout."""
    if how == "transposed" and t.dim() >= 2:
        return t.transpose(0, 1).contiguous().transpose(0, 1)
    if how == "offset":            # contiguous, but 1 element into its storage (misaligned)
        storage = torch.empty(t.numel() + 1, dtype=t.dtype)
        storage[1:] = t.reshape(-1)
        return storage[1:].view(t.shape)
    if how == "strided" and t.dim() >= 1:
        wide = torch.zeros((*t.shape[:-1], 2 * t.shape[-1]), dtype=t.dtype)
        wide[..., ::2] = t
        return wide[..., ::2]
    return t


def _random_case(rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    shape = rng.choice(_SHAPES)
    expected = _random_expected(rng, shape)
    actual = _perturbed(rng, expected)
    if rng.random() < 0.2:         # a dtype mismatch
        actual = actual.to(rng.choice((*_FLOATS, torch.int64, torch.bool)))
    if rng.random() < 0.1 and expected.dim() >= 1 and expected.shape[0] >= 1:
        expected, actual = expected[:1].expand(shape), actual[:1].expand(shape)
    layout = rng.choice(("contiguous",) * 6 + ("transposed", "offset", "strided"))
    if rng.random() < 0.5:
        expected = _relaid(rng, expected, layout)
    else:
        actual = _relaid(rng, actual, layout)
    if rng.random() < 0.1 and actual.is_floating_point():
        actual = actual.detach().clone().requires_grad_(True)
    if rng.random() < 0.03:
        actual = expected          # the very same tensor
    if rng.random() < 0.06:    # the same values in another shape: (64,) for (1, 64), ...
        actual = rng.choice((actual.reshape(-1), actual.unsqueeze(0),
                             actual.unsqueeze(0).unsqueeze(0),
                             actual.squeeze(0) if actual.dim() else actual))
    kwargs = {"scale": rng.choice((None, 0.0, 1e-6, 0.02, 1.0, 1e3, float("nan"), float("inf"))),
              "noise": rng.choice((0.0, 0.0, 1e-12, 1e-10, 1e-6)),
              "tolerance": rng.choice(_TOLERANCES)}
    return actual, expected, kwargs


def _outcome(compare: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """repr of a call's result (floats by repr: NaN equals NaN, -0.0 differs from 0.0, an int is
    not a float), or of the exception it raised."""
    try:
        with warnings.catch_warnings():
            # the oracle warns about scalars of tensors that require grad; the new code must not
            # warn at all (numpy's overflow and invalid-value warnings included)
            warnings.simplefilter("ignore" if compare.__name__.startswith("_oracle") else "error")
            result = compare(*args, **kwargs)
    except Exception as e:   # noqa: BLE001 -- the oracle's own exceptions must be matched too
        return f"raises {type(e).__name__}: {e}"
    if isinstance(result, Comparison):
        return repr(dataclasses.astuple(result))
    return repr(result)


def test_every_comparison_is_identical_to_the_torch_oracle_over_random_cases():
    rng = random.Random(20240613)
    statuses: Counter[str] = Counter()
    fast = 0
    for i in range(4000):
        actual, expected, kwargs = _random_case(rng)
        old = _outcome(_oracle_compare_gradient, actual, expected, **kwargs)
        new = _outcome(compare_gradient, actual, expected, **kwargs)
        assert new == old, (f"case {i}: actual {actual.dtype} {tuple(actual.shape)} "
                            f"{actual.stride()}, expected {expected.dtype} "
                            f"{tuple(expected.shape)} {expected.stride()}, {kwargs}")
        statuses[old.split("'")[1] if old.startswith("(") else "raises"] += 1
        fast += actual.dtype in (torch.float32, torch.float64) and actual.is_contiguous() \
            and expected.dtype in (torch.float32, torch.float64) and expected.is_contiguous()
    # the cases reach every verdict, and most take the numpy path
    assert {"exact", "approx", "wrong", "nonfinite", "shape"} <= set(statuses), statuses
    assert all(statuses[s] >= 50 for s in ("exact", "approx", "wrong")), statuses
    assert fast >= 2000


def test_an_expected_tensor_compared_again_and_again_gets_the_oracle_s_verdict_each_time():
    """What depends on the expected tensor alone is worked out once for it (a reference is
    compared with every submission's answers): later comparisons must not differ."""
    rng = random.Random(20261202)
    for _ in range(300):
        expected = _random_expected(rng, rng.choice(_SHAPES))
        for _ in range(4):
            actual = _perturbed(rng, expected)
            kwargs = {"scale": rng.choice((None, 0.0, 1.0, 1e3)),
                      "noise": rng.choice((0.0, 1e-10)), "tolerance": rng.choice(_TOLERANCES)}
            assert _outcome(compare_gradient, actual, expected, **kwargs) == \
                _outcome(_oracle_compare_gradient, actual, expected, **kwargs)
            if actual.shape == expected.shape:
                brief = compare_gradient(actual, expected, brief=True, **kwargs)
                full = _oracle_compare_gradient(actual, expected, **kwargs)
                assert (brief.status, repr(brief.maxdiff)) == (full.status, repr(full.maxdiff))


def test_what_a_comparison_keeps_of_an_expected_tensor_goes_when_the_tensor_goes():
    before = len(compare._EXPECTED)
    expected = torch.randn(32, 27)
    assert compare_gradient(expected * 1.5, expected).status == "wrong"
    assert len(compare._EXPECTED) == before + 1
    del expected
    assert len(compare._EXPECTED) == before


def test_allclose_is_decided_as_torch_decides_it_at_its_float32_edge():
    # answers within a millionth of |a - e| = 1e-8 + 1e-5 |e|, where rounding the bound in
    # float32 (as torch.isclose does) or in float64 gives different verdicts for some
    g = torch.Generator().manual_seed(1)
    expected = (torch.randn(3000, generator=g) * 1e-6).double()
    bound = 1e-8 + 1e-5 * expected.abs()
    wobble = 1 + (torch.rand(3000, generator=g, dtype=torch.float64) - 0.5) * 2e-6
    actual = (expected + torch.where(torch.rand(3000, generator=g) < 0.5, 1.0, -1.0)
              * bound * wobble).float()
    verdicts = Counter()
    for a, e in zip(actual.split(1), expected.float().split(1)):
        new = compare_gradient(a, e)
        assert new == _oracle_compare_gradient(a, e)
        verdicts[new.allclose] += 1
    assert verdicts[True] > 100 and verdicts[False] > 100   # the edge, from both sides


def test_ulps_are_the_oracle_s_for_float64_answers_beyond_float32_s_range():
    rng = random.Random(7)
    for _ in range(500):
        expected = _random_expected(rng, rng.choice(_SHAPES)).float()
        actual = _perturbed(rng, expected).double() * rng.choice((1.0, 1e39))   # 1e39: inf
        assert _outcome(compare_gradient, actual, expected) == \
            _outcome(_oracle_compare_gradient, actual, expected)


def test_a_gradient_that_requires_grad_is_compared_like_a_detached_one():
    expected = torch.randn(4, 6)
    actual = (expected * (1 + 1e-6)).requires_grad_(True)
    assert compare_gradient(actual, expected) == compare_gradient(actual.detach(), expected)
    assert compare_gradient(actual, expected).status == "approx"


def test_bfloat16_and_float16_answers_are_still_compared():
    expected = torch.randn(8, 3)
    for dtype in (torch.bfloat16, torch.float16):
        c = compare_gradient(expected.to(dtype), expected)
        assert c == _oracle_compare_gradient(expected.to(dtype), expected)
        assert not c.exact and "dtype" in c.message


def test_a_brief_comparison_agrees_with_the_full_one_and_leaves_out_only_the_extras():
    """Hidden configs compare briefly: an approximate answer's status and maxdiff (no allclose,
    relative error, ULPs or worst index); any other verdict is the full one."""
    rng = random.Random(99)
    approx = 0
    for i in range(1500):
        actual, expected, kwargs = _random_case(rng)
        full = _outcome(compare_gradient, actual, expected, **kwargs)
        if full.startswith("raises") or full.split("'")[1] != "approx":
            assert _outcome(compare_gradient, actual, expected, brief=True, **kwargs) == full, i
            continue
        brief = compare_gradient(actual, expected, brief=True, **kwargs)
        whole = compare_gradient(actual, expected, **kwargs)
        assert (brief.status, brief.exact, brief.approx, brief.message, brief.mismatched) == \
            (whole.status, whole.exact, whole.approx, whole.message, whole.mismatched), i
        assert brief.maxdiff == whole.maxdiff or (math.isnan(brief.maxdiff)
                                                  and math.isnan(whole.maxdiff)), i
        if not expected.numel():                # two empty tensors: nothing to leave out
            assert brief == whole, i
            continue
        assert (brief.allclose, brief.rel_error, brief.ulps, brief.worst_index) == \
            (None, None, None, None), i
        approx += 1
    assert approx >= 50


def _transposed(t: torch.Tensor) -> torch.Tensor:
    return t.transpose(0, 1).contiguous().transpose(0, 1)


_E = torch.randn(32, 27, generator=torch.Generator().manual_seed(3))
_NEAR = torch.nextafter(_E, torch.full_like(_E, float("inf")))
_WITH_NAN = _E.clone().index_put_((torch.tensor([4]), torch.tensor([5])), torch.tensor(float("nan")))

# answers (and two references) that are not a plain C-contiguous float32/float64 CPU tensor, as
# a student's backward pass or a caller of compare_gradient may hand them over
_UNUSUAL = {
    "float16 answer, equal values": (_E.half(), _E.half().float()),
    "float16 answer": (_E.half(), _E),
    "bfloat16 answer": (_E.bfloat16(), _E),
    "bfloat16 answer, wrong": (_E.bfloat16() * 2, _E),
    "int64 answer": ((_E * 3).round().long(), (_E * 3).round()),
    "int32 answer, wrong": ((_E * 3).long().int(), _E * 3),
    "bool answer": (_E > 0, (_E > 0).float()),
    "bool answer, wrong": (_E > 0, _E),
    "float64 answer beyond float32's range": (_E.double() * 1e39, _E),
    "float16 answer with NaN": (_WITH_NAN.half(), _E),
    "float16 answer with an infinity": (_E.half() * 1e5, _E),
    "transposed answer, approximate": (_transposed(_NEAR), _E),
    "transposed answer, wrong": (_transposed(_E * 1.5), _E),
    "transposed float64 answer": (_transposed(_NEAR.double()), _E),
    "strided answer": (torch.stack([_NEAR, _E], dim=-1)[..., 0], _E),
    "expanded answer and reference": (_NEAR[:1].expand(32, 27), _E[:1].expand(32, 27)),
    "misaligned answer": (torch.cat([torch.zeros(1), _NEAR.reshape(-1)])[1:].view(32, 27), _E),
    "answer that requires grad": (_NEAR.clone().requires_grad_(True), _E),
    "empty answers": (torch.empty(0, 3), torch.empty(0, 3)),
    "empty float64 answer": (torch.empty(0, 3, dtype=torch.float64), torch.empty(0, 3)),
    "0-d answer": (_NEAR[0, 0].clone(), _E[0, 0].clone()),
    "transposed reference": (_NEAR, _transposed(_E)),
    "float16 reference": (_E, _E.half()),
    "bfloat16 reference, wrong": (_E * 1.01, _E.bfloat16()),
    "int64 reference": (_E, (_E * 3).round().long()),
    "bool reference": (_E > 0.5, _E > 0),
}


@pytest.mark.parametrize("name", sorted(_UNUSUAL))
def test_an_unusual_answer_gets_the_oracle_s_verdict_full_or_brief(name):
    actual, expected = _UNUSUAL[name]
    for kwargs in ({}, {"scale": 0.02}, {"tolerance": Tolerance(rtol=1e-2)}):
        assert _outcome(compare_gradient, actual, expected, **kwargs) == \
            _outcome(_oracle_compare_gradient, actual, expected, **kwargs), kwargs
        full = compare_gradient(actual, expected, **kwargs)
        brief = compare_gradient(actual, expected, brief=True, **kwargs)
        assert (brief.status, brief.message, repr(brief.maxdiff)) == \
            (full.status, full.message, repr(full.maxdiff))
