"""Why a right answer is approximate, not exact: named when the grader can tell, with its ULPs."""

import pytest

from grader.judge.compare import compare_gradient
from grader.judge.explain import EXERCISE4_REASON, explain_inexact
from grader.lecture.model import Config, build_lecture_state

ODD = Config(seed=5, n=19)


def _pool(state):
    return {**state.forward, **state.params, "n": state.config.n, **state.grads}


@pytest.mark.parametrize("name, build, needle", [
    ("dhpreact", lambda p: (1.0 - p["h"] ** 2) * p["dh"], "tanh backward"),
    ("dprobs", lambda p: (1.0 / p["probs"]) * p["dlogprobs"], "1.0/x"),
    ("dcounts_sum", lambda p: -p["dcounts_sum_inv"] / p["counts_sum"] ** 2, "division"),
    ("dbnvar", lambda p: -0.5 * p["bnvar_inv"] ** 3 * p["dbnvar_inv"], "bnvar_inv**3"),
])
def test_a_known_inexact_formulation_is_named_with_its_ulp_distance(name, build, needle):
    state = build_lecture_state(ODD)
    pool = _pool(state)
    actual, expected = build(pool), state.grads[name]
    assert not actual.equal(expected)            # right, yet not bit-exact
    ulps = compare_gradient(actual, expected).ulps
    text = explain_inexact(name, pool, actual, expected, ulps=ulps, scale=1.0)
    assert needle in text and f"{ulps} ULP" in text and "full points" in text


def test_an_unknown_reordering_is_explained_by_the_order_of_operations():
    state = build_lecture_state(ODD)
    pool = _pool(state)
    expected = state.grads["dW2"]
    actual = (pool["h"].T.double() @ pool["dlogits"].double()).float()
    text = explain_inexact("dW2", pool, actual, expected,
                           ulps=compare_gradient(actual, expected).ulps, scale=1.0)
    assert "order of operations" in text and "ULP" in text


def test_an_inexact_upstream_in_chained_mode_is_named():
    state = build_lecture_state(ODD)
    text = explain_inexact("dbngain", _pool(state), state.grads["dbngain"] * 1.0000001,
                           state.grads["dbngain"], ulps=3, inexact_upstream=("dhpreact",))
    assert text.startswith("your dhpreact was already approximate")


def test_a_gradient_that_is_rounding_noise_says_the_ulp_distance_means_nothing():
    state = build_lecture_state(Config())
    db1 = state.grads["db1"]
    scale = float(state.grads["dhprebn"].abs().max())
    text = explain_inexact("db1", _pool(state), db1 * 0.5, db1, ulps=10**9, scale=scale)
    assert "rounding noise" in text and "means nothing" in text


def test_the_policy_follows_the_instructor():
    state = build_lecture_state(ODD)
    pool = _pool(state)
    actual = (1.0 - pool["h"] ** 2) * pool["dh"]
    text = explain_inexact("dhpreact", pool, actual, state.grads["dhpreact"], ulps=4,
                           exact_required=True)
    assert "requires exact" in text and "no points" in text
    text = explain_inexact("dC", {}, state.grads["dC"] * 1.0000001, state.grads["dC"], ulps=2,
                           known_reason=EXERCISE4_REASON)
    assert text.startswith("backward() uses the fused")
