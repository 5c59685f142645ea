"""Random upstream probes: each local step graded against autograd's vector-Jacobian product."""

import inspect

import pytest
import torch

from grader.api import GradeRequest, grade_submission
from grader.lecture.catalog import GRADIENTS
from grader.judge.compare import compare_gradient
from grader.lecture.configs import HiddenConfigs
from grader.judge.grading import GradingOptions
from grader.lecture.model import PARAMETER_NAMES, Config, build_lecture_state, chunked_forward
from grader.judge.probes import PARENTS, ProbeBook, downstream_of, injection_points

from conftest import SUBMISSIONS, gradient_by_name, probe_for, reference_solution_module, \
    with_overrides

LECTURE = Config()
SMALL = Config(seed=11, n=5, n_embd=3, n_hidden=7, block_size=2, name="small")
MAX_TO_ALL = SUBMISSIONS / "mistakes" / "dlogits_max_to_every_element.py"


SOLUTION_MODULE = reference_solution_module()
STUBS = [g for g in GRADIENTS if g.name != "dlogprobs" and g.exercise != "ex2"]


def _params(name):
    return tuple(inspect.signature(getattr(SOLUTION_MODULE, name)).parameters)


def test_the_graph_table_matches_what_autograd_sees():
    state = build_lecture_state(SMALL)
    leaves = {k: v.clone().requires_grad_(True) for k, v in state.params.items()}
    fwd = chunked_forward(leaves, state.Xb, state.Yb)
    nodes = {**fwd, **leaves}
    for x in (*PARENTS, *PARAMETER_NAMES):
        for y in PARENTS:
            if x == y:
                continue
            (grad,) = torch.autograd.grad(fwd[y].sum(), nodes[x], retain_graph=True,
                                          allow_unused=True)
            assert (grad is not None) == (y in downstream_of(x)), (x, y)


@pytest.mark.parametrize("name, params, injected", [
    ("dcounts", ("dprobs", "counts_sum_inv", "dcounts_sum"), ("probs",)),
    ("dcounts", ("dprobs", "counts_sum_inv", "counts_sum", "counts"), ("probs",)),
    ("dlogits", ("dnorm_logits", "dlogit_maxes", "logits"), ("norm_logits",)),
    ("dlogits", ("dlogit_maxes", "logits"), ("logit_maxes",)),
    ("dbndiff", ("dbnraw", "bnvar_inv", "dbndiff2", "bndiff"), ("bnraw",)),
    ("dhprebn_fused", ("dhpreact", "bngain", "bnvar_inv", "bnraw", "n"), ("hpreact",)),
    ("dlogprobs", ("logprobs", "Yb", "n"), ()),
    ("dlogits", ("logits", "Yb", "n"), ()),
    ("dhpreact", ("dW2", "h"), ()),
])
def test_random_gradients_enter_at_the_most_downstream_tensor_the_stub_asks_about(
        name, params, injected):
    assert injection_points(gradient_by_name(name), params) == injected


def test_the_upstream_gradients_of_a_probe_are_consistent_with_each_other():
    g = gradient_by_name("dcounts")
    probe = probe_for(LECTURE, g, _params("dcounts"))
    p = probe.pool
    derived = -(p["counts"] * p["dprobs"]).sum(1, keepdim=True) * p["counts_sum"] ** -2
    assert torch.allclose(p["dcounts_sum"], derived, rtol=1e-5, atol=1e-9)
    probe = probe_for(LECTURE, gradient_by_name("dlogits"), _params("dlogits"))
    p = probe.pool
    assert torch.allclose(p["dlogit_maxes"], -p["dnorm_logits"].sum(1, keepdim=True))


def test_a_probe_is_not_hidden_behind_a_nearly_zero_upstream():
    state = build_lecture_state(LECTURE)
    assert float(state.grads["dlogit_maxes"].abs().max()) < 1e-7
    probe = probe_for(LECTURE, gradient_by_name("dlogits"), _params("dlogits"))
    assert float(probe.pool["dlogit_maxes"].abs().max()) > 1e-3


def test_probes_are_reproducible():
    g = gradient_by_name("dbndiff")
    a = probe_for(SMALL, g, _params("dbndiff"))
    b = ProbeBook(SMALL).probe(g, _params("dbndiff"))       # built afresh, not from the cache
    assert a is not b
    assert torch.equal(a.pool["dbnraw"], b.pool["dbnraw"]) and torch.equal(a.expected, b.expected)


@pytest.mark.parametrize("config", [LECTURE, SMALL, Config(seed=3, n=2, n_hidden=5)],
                         ids=lambda c: f"n={c.n}")
@pytest.mark.parametrize("gradient", STUBS, ids=lambda g: g.name)
def test_the_reference_solution_passes_every_probe(gradient, config):
    params = _params(gradient.name)
    probe = probe_for(config, gradient, params)
    assert probe is not None
    actual = getattr(SOLUTION_MODULE, gradient.name)(**probe.inputs(params))
    cmp = compare_gradient(actual, probe.expected, scale=probe.scale(params))
    assert cmp.status in ("exact", "approx"), cmp.message


def test_routing_the_max_to_every_element_passes_allclose_with_autograds_own_upstream():
    state = build_lecture_state(LECTURE)
    routed = state.grads["dnorm_logits"] + state.grads["dlogit_maxes"]
    assert torch.allclose(routed, state.grads["dlogits"])


@pytest.mark.parametrize("hidden", [HiddenConfigs(), HiddenConfigs.off()],
                         ids=["hidden configs", "lecture config only"])
def test_routing_the_max_to_every_element_fails_at_dlogits(hidden, tmp_path):
    path = tmp_path / "max_to_all.py"
    path.write_text(with_overrides(MAX_TO_ALL))
    r = grade_submission(path, request=GradeRequest(
        hidden=hidden, options=GradingOptions(exercises=("ex1",))))
    g = next(g for g in r.gradients() if g.name == "dlogits")
    assert g.status == "wrong" and g.points == 0 and not r.all_passed
    assert r.first_wrong == "dlogits"
    assert "random" in g.message and "dlogit_maxes" in g.message
    assert g.hint_key == "dlogits_max_to_every_element"
    assert next(m for m in g.modes if m.mode == "isolated").allclose
    assert [x.name for x in r.gradients() if not x.passed] == ["dlogits"]


def test_without_probes_the_routed_max_goes_unnoticed(tmp_path):
    path = tmp_path / "max_to_all.py"
    path.write_text(with_overrides(MAX_TO_ALL))
    r = grade_submission(path, request=GradeRequest(
        hidden=HiddenConfigs.off(),
        options=GradingOptions(exercises=("ex1",), modes=("isolated",), probes=False)))
    assert next(g for g in r.gradients() if g.name == "dlogits").passed
