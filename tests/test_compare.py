"""Comparing actual (student) with expected (autograd)."""

import torch

from grader.compare import Tolerance, compare_gradient, ulp_distance


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


def test_ulp_distance_counts_float32_steps():
    x = torch.tensor([1.0])
    assert ulp_distance(torch.nextafter(x, torch.tensor([2.0])), x) == 1
    assert ulp_distance(torch.tensor([-0.0]), torch.tensor([0.0])) == 0


def test_autograd_s_own_rounding_noise_widens_the_tolerance_only_as_far_as_it_goes():
    expected = torch.zeros(8)
    actual = torch.full((8,), 1e-9)
    assert compare_gradient(actual, expected, scale=1e-6).status == "wrong"
    assert compare_gradient(actual, expected, scale=1e-6, noise=1e-10).status == "approx"
    assert compare_gradient(actual, expected, scale=1e-6, noise=1e-12).status == "wrong"
