"""What a verdict is, and how one answer gets one: compared with autograd's, then taught.

A wrong answer gets a hint (grader.judge.hints) when it matches a known mistake, built in this
process from the same inputs the stub got; a right but inexact one gets an explanation
(grader.judge.explain). A call that failed (an exception, a sandbox limit) gets its outcome as
its verdict.

The grading built on this: the stubs of exercises 1-3 in the lecture config, in isolated and
chained mode (grader.judge.stubs); the same stubs on the hidden configs and random upstream
probes, with the diagnosis of what fails there (grader.judge.hidden); exercise 4's backward()
and training loop (grader.judge.exercise4); lecture-style code (grader.judge.lecture_style).
grader.judge.gradient_results folds the verdicts into the results, grader.judge.scoring into
points and a Result.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import torch

from ..lecture.catalog import EXERCISES, Gradient
from ..lecture.model import Config, LectureState
from ..output.results import PASSING
from ..sandbox.session import CallOutcome, SandboxSession
from .compare import Comparison, Tolerance, compare_gradient, graded_answer
from .explain import explain_inexact
from .hints import find_hint
from .integrity import POLICIES, autograd_events, autograd_message, grad_read_note

__all__ = ["MODES", "GradingOptions", "Verdict", "autograd_noise", "integrity_checked",
           "judge_answer", "lecture_inputs", "outcome_verdict", "upstream_scale",
           "verdict_from_tensor"]

MODES = ("isolated", "chained")


@dataclass(frozen=True)
class GradingOptions:
    modes: tuple[str, ...] = MODES
    tolerance: Tolerance = field(default_factory=Tolerance)
    train_steps: int = 10
    train_lr: float = 0.1
    exact_required: frozenset[str] = frozenset()
    points: dict[str, float] = field(default_factory=dict)   # per-gradient override
    exercises: tuple[str, ...] = tuple(EXERCISES)
    probes: bool = True       # isolated mode: also grade each step on random upstream gradients
    integrity_policy: str = "zero"   # a gradient computed with autograd: "zero" points or "flag"

    def __post_init__(self) -> None:
        if self.integrity_policy not in POLICIES:
            raise ValueError("integrity_policy must be 'zero' or 'flag', not "
                             f"{self.integrity_policy!r}")


@dataclass
class Verdict:
    """One gradient in one config and one mode."""

    gradient: Gradient
    config: Config
    mode: str
    status: str
    comparison: Comparison | None = None
    message: str | None = None
    traceback: str | None = None
    actual: torch.Tensor | None = None
    expected: torch.Tensor | None = None
    explanation: str | None = None
    substituted: tuple[str, ...] = ()   # chained mode: upstream gradients replaced by autograd's
    probe: bool = False                 # fed random upstream gradients (grader.judge.probes)
    hint: str | None = None             # a known mistake (grader.judge.hints), when it matched
    hint_key: str | None = None
    limit: str | None = None            # the sandbox limit the call hit ("wall time", ...)

    @property
    def passed(self) -> bool:
        return self.status in PASSING


def upstream_scale(gradient: Gradient, state: LectureState) -> float:
    """The magnitude that sets the absolute tolerance of a step: its upstream gradients."""
    return max((state.grad_abs_max(u) for u in gradient.upstream if u in state.grads),
               default=0.0)


def autograd_noise(gradient: Gradient, state: LectureState) -> float:
    """Autograd's rounding noise for this gradient or the upstream ones it is computed from
    (a correct answer from slightly different upstream values differs by about as much)."""
    names = (f"d{gradient.variable}", *gradient.upstream)
    return max(state.noise.get(name, 0.0) for name in names)


def lecture_inputs(state: LectureState) -> dict[str, Any]:
    """What a stub may ask for besides gradients: forward tensors, parameters, n, Xb, Yb."""
    return {**state.forward, **state.params, "n": state.config.n, "Xb": state.Xb,
            "Yb": state.Yb}


def outcome_verdict(gradient: Gradient, config: Config, mode: str, outcome: CallOutcome, *,
                    probe: bool = False) -> Verdict:
    """The verdict of a call that brought no answer back: its exception, or the limit it hit."""
    status = "missing" if outcome.status == "missing" else "error"
    message = outcome.message
    if outcome.status == "timeout":
        message = f"{gradient.name}() {outcome.message}"
    note = grad_read_note(outcome.integrity) if "NoneType" in (message or "") else None
    if note:
        message = f"{message}: {note}"
    return Verdict(gradient, config, mode, status, message=message, traceback=outcome.traceback,
                   probe=probe, limit=outcome.limit)


def judge_answer(gradient: Gradient, config: Config, mode: str, actual: torch.Tensor,
                 expected: torch.Tensor, *, scale: float, options: GradingOptions,
                 pool: Mapping[str, Any] | None = None, probe: bool = False,
                 teach: bool = True, generic_hints: bool = True,
                 inexact_upstream: tuple[str, ...] = (), noise: float = 0.0,
                 known_reason: str | None = None) -> Verdict:
    """Compare one answer with autograd's; a wrong one gets a hint, an inexact one an
    explanation.

    ``pool``: what the answer was computed from (forward tensors, parameters, n, Xb, Yb and the
    upstream gradients it was given), from which a hint rebuilds the known mistakes; without
    it, no hint. ``teach`` off (a hidden config): an approximate answer's status and maxdiff are
    all that is shown of it, and nothing is explained. ``noise``: autograd's own rounding noise
    for this gradient (LectureState.noise); below batch norm at n = 2 the true gradients are
    rounding noise, and chained answers carry as much. ``known_reason``: why an approximate
    answer is approximate when no known formulation says why.

    An answer in the tensor's shape but for size-1 dimensions in front is judged on its values
    (compare_gradient); the verdict keeps it as it came (chained mode feeds it on as it is),
    and its hint or explanation is found in the tensor's shape."""
    cmp = compare_gradient(actual, expected, scale=scale, tolerance=options.tolerance,
                           noise=noise, brief=not teach, variable=gradient.variable)
    verdict = Verdict(gradient, config, mode, cmp.status, cmp, message=cmp.message,
                      actual=actual, expected=expected, probe=probe)
    if not teach:
        return verdict
    graded = graded_answer(actual, expected, tolerance=options.tolerance)
    answer = actual if graded is None else graded
    if cmp.status == "approx":
        verdict.explanation = explain_inexact(
            gradient.name, pool or {}, answer, expected, ulps=cmp.ulps, scale=scale,
            inexact_upstream=inexact_upstream,
            exact_required=gradient.name in options.exact_required, known_reason=known_reason)
    elif not verdict.passed and pool is not None:
        hint = find_hint(gradient.name, answer, expected, pool, scale=scale,
                         generic=generic_hints, probe=probe)
        if hint is not None:
            verdict.hint, verdict.hint_key = hint.text, hint.key
    return verdict


def verdict_from_tensor(gradient: Gradient, state: LectureState, actual: torch.Tensor,
                        options: GradingOptions, *, inputs: dict[str, Any] | None = None,
                        inexact_upstream: tuple[str, ...] = (), teach: bool = True) -> Verdict:
    """A gradient the student computed by other means (lecture-style code) vs autograd's, in
    chained mode, with the same hints and explanations as a stub's answer (``teach``: see
    judge_answer). An answer on the meta device (only its shape came back) gets its verdict
    and nothing else."""
    return judge_answer(gradient, state.config, "chained", actual,
                        state.grads[f"d{gradient.variable}"],
                        scale=upstream_scale(gradient, state),
                        pool={**lecture_inputs(state), **state.grads, **(inputs or {})},
                        options=options, inexact_upstream=inexact_upstream,
                        teach=teach and actual.device.type != "meta",
                        noise=autograd_noise(gradient, state))


def integrity_checked(verdict: Verdict, session: SandboxSession, outcome: CallOutcome,
                      options: GradingOptions) -> Verdict:
    """Under the "zero" policy, a gradient whose call used autograd gets status "integrity" and
    no points; see grader.judge.integrity. (A file that uses autograd when it is run, as a
    self-check copied from the lecture does, is held for review instead: grader.judge.review.)"""
    if options.integrity_policy != "zero":
        return verdict
    if autograd_events(outcome.integrity):
        return replace(verdict, status="integrity", message=autograd_message(outcome.integrity))
    return verdict
