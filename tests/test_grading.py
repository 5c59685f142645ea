"""The grading engine's calls: batched, yet the gradient under test never reaches the child first."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from grader.api import grade_submission
from grader.lecture.catalog import GRADIENTS
from grader.lecture.model import cached_lecture_state
from grader.sandbox.runner import SandboxRunner
from grader.sandbox.session import SandboxSession

from conftest import SOLUTION, SUBMISSIONS, probe_for, with_overrides

BY_NAME = {g.name: g for g in GRADIENTS}


@pytest.fixture(scope="module")
def runner():
    with SandboxRunner() as r:
        yield r


def _record_requests(monkeypatch) -> list[list]:
    """Every call_many request the grading makes, in order."""
    requests: list[list] = []
    original = SandboxSession.call_many

    def call_many(self, calls, **kwargs):
        requests.append(list(calls))
        return original(self, calls, **kwargs)

    monkeypatch.setattr(SandboxSession, "call_many", call_many)
    return requests


def _answers(call, states) -> list[torch.Tensor]:
    """What a call of a stub is judged against, in each config whose shapes its inputs have:
    autograd's gradient there, and the stub's probe's."""
    gradient = BY_NAME[call.name]
    params = tuple(call.inputs)
    out = []
    for state in states:
        pool = {**state.forward, **state.params, **state.grads, "Xb": state.Xb, "Yb": state.Yb}
        if all(not isinstance(v, torch.Tensor) or (p in pool and pool[p].shape == v.shape)
               for p, v in call.inputs.items()):
            out.append(state.grads[f"d{gradient.variable}"])
            probe = probe_for(state.config, gradient, params)
            if probe is not None:
                out.append(probe.expected)
    return out


@pytest.mark.parametrize("code,probes", [
    (SOLUTION.read_text(), True),
    (with_overrides(SUBMISSIONS / "wrong" / "forgot_counts_branch.py"), True),
    (SOLUTION.read_text(), False),
], ids=["solution", "forgot_counts_branch", "solution_without_probes"])
def test_no_request_carries_the_answer_of_a_stub_called_in_it_or_after(code, probes, tmp_path,
                                                                       runner, quick_request,
                                                                       monkeypatch):
    path = tmp_path / "submission.py"
    path.write_text(code)
    requests = _record_requests(monkeypatch)
    request = replace(quick_request, options=replace(quick_request.options, probes=probes))
    result = grade_submission(path, request=request, runner=runner)
    assert result.status == "graded"
    assert len(requests) < 80, "calls go in batches"
    states = [cached_lecture_state(c) for c in (quick_request.config,
                                                *quick_request.hidden_configs())]
    sent: list[torch.Tensor] = []
    checked = 0
    for calls in requests:
        sent += [v for c in calls for v in c.inputs.values() if isinstance(v, torch.Tensor)]
        for call in calls:
            if call.name not in BY_NAME:
                continue
            for answer in _answers(call, states):
                checked += 1
                leaked = [t for t in sent if t.shape == answer.shape and torch.equal(t, answer)]
                assert not leaked, f"{call.name}: its answer went to the child before its call"
    assert checked > 60


def test_stubs_are_batched_until_one_takes_a_gradient_of_the_batch(tmp_path, runner,
                                                                  quick_request, monkeypatch):
    requests = _record_requests(monkeypatch)
    grade_submission(SOLUTION, request=quick_request, runner=runner)
    first = [c.name for c in requests[0]]
    assert first == ["dlogprobs"], "chained inputs equal to isolated ones: one call for both"
    second = [c.name for c in requests[1]]
    assert second[0] == "dprobs"
    together = next(r for r in requests if "dbngain" in [c.name for c in r])
    assert {"dbngain", "dbnraw", "dbnbias"} <= {c.name for c in together}, \
        "stubs that take the same upstream gradient go together"


def test_the_training_verdict_shows_its_worst_parameter_compared_in_full(runner):
    """Each parameter is compared briefly; the one shown (the worst) in full: ULPs, allclose
    and relative error, as any lecture-config verdict."""
    from grader.api import GradeRequest
    from grader.judge.grading import GradingOptions

    r = grade_submission(SOLUTION, runner=runner, request=GradeRequest(
        hidden=(), options=GradingOptions(exercises=("ex4",), train_steps=3)))
    training = next(g for g in r.gradients() if g.name == "training")
    assert training.status == "approx", training
    assert training.allclose is not None and training.ulps is not None \
        and training.rel_error is not None
    assert "largest parameter difference" in training.message
