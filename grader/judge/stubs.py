"""The stubs of exercises 1-3 in one config, in isolated and chained mode.

Isolated mode feeds autograd's upstream gradients, so every local step is graded on its own;
chained mode feeds the student's own, as the notebook does. Points come from isolated mode
(stub format) in every config.

Calls go to the child in batches, one round trip each (SandboxSession.call_many), and the
gradient under test never goes to the child before the stub's answer came back: the stubs are
called in answer order (exercises 2 and 3's fused stubs beside the exercise-1 step they replace),
and a batch ends before a call that takes, as input, a tensor another call of the batch is judged
against (tests/test_grading.py checks every request).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..lecture.catalog import GRADIENTS, INPUT_NAMES, Gradient
from ..lecture.model import LectureState
from ..output.results import PASSING
from ..sandbox.session import Call, CallOutcome, SandboxSession
from .grading import GradingOptions, Verdict, autograd_noise, integrity_checked, judge_answer, \
    lecture_inputs, outcome_verdict, upstream_scale

__all__ = ["grade_stub_gradients", "in_answer_order"]


def in_answer_order(gradients: Sequence[Gradient]) -> list[Gradient]:
    """The stubs in the order their calls must go: a stub computing the same gradient as an
    earlier one (exercise 2's dlogits_fused, exercise 3's dhprebn_fused) right after it, before
    that gradient goes to the child as the next stub's upstream."""
    first: dict[str, int] = {}
    for i, g in enumerate(gradients):
        first.setdefault(g.variable, i)
    return sorted(gradients, key=lambda g: first[g.variable])


@dataclass
class _Planned:
    """One verdict to come in ``grade_stub_gradients``: its call (an index into the batch), or
    the verdict itself when there is nothing to call."""

    gradient: Gradient
    mode: str
    inputs: dict[str, Any] = field(default_factory=dict)
    call: int | None = None
    verdict: Verdict | None = None
    substituted: tuple[str, ...] = ()
    wrong_upstream: tuple[str, ...] = ()
    inexact_upstream: tuple[str, ...] = ()


def grade_stub_gradients(session: SandboxSession, functions: dict[str, tuple[str, ...]],
                         state: LectureState, options: GradingOptions,
                         gradients: tuple[Gradient, ...] = GRADIENTS) -> list[Verdict]:
    """Every exercise-1..3 stub in one config, in both modes.

    The calls go in batches (one round trip each, SandboxSession.call_many): a batch takes
    stubs in answer order until one asks for the gradient of a stub already in it, which is
    that stub's answer (isolated mode) or not computed yet (chained mode). So the child never
    holds the gradient under test before the stub's answer came back; the verdicts come in
    catalog order."""
    verdicts: list[Verdict] = []
    base = lecture_inputs(state)
    own: dict[str, torch.Tensor] = {}          # the student's chained gradients so far
    own_passed: dict[str, bool] = {}
    own_inexact: set[str] = set()              # those that pass, but not with autograd's values
    batch: list[Call] = []
    in_batch: set[str] = set()                 # the gradients the batch's stubs compute
    planned: list[_Planned] = []

    def flush() -> None:
        outcomes = session.call_many(batch) if batch else []
        for plan in planned:
            verdicts.append(plan.verdict if plan.verdict is not None
                            else _stub_verdict(plan, outcomes[plan.call], state, base, options,
                                               session, own, own_passed, own_inexact))
        batch.clear()
        in_batch.clear()
        planned.clear()

    for gradient in in_answer_order(gradients):
        if gradient.exercise not in options.exercises:
            continue
        params = functions.get(gradient.name)
        if params is not None and any(p in in_batch for p in params):
            flush()
        problem = _stub_problem(gradient, params)
        previous: dict[str, Any] | None = None   # the inputs of this stub's last call
        for mode in options.modes:
            if problem is not None:
                status, message = problem
                planned.append(_Planned(gradient, mode, verdict=Verdict(
                    gradient, state.config, mode, status, message=message)))
                continue
            assert params is not None
            plan = _planned_call(gradient, params, mode, state, base, own, own_passed,
                                 own_inexact)
            if previous is None or not _same_inputs(previous, plan.inputs):
                batch.append(Call(gradient.name, plan.inputs, group=gradient.name))
                previous = plan.inputs
            plan.call = len(batch) - 1       # chained inputs equal isolated: the same call
            planned.append(plan)
        in_batch.add(f"d{gradient.variable}")
        in_batch.add(gradient.name)
    flush()
    catalog = {g.name: i for i, g in enumerate(gradients)}
    return sorted(verdicts, key=lambda v: catalog[v.gradient.name])


def _stub_problem(gradient: Gradient, params: tuple[str, ...] | None
                  ) -> tuple[str, str] | None:
    """The status and message of a stub that cannot be called: missing, or asking for what
    the grader cannot give it."""
    if params is None:
        return "missing", f"no function {gradient.name}() in your file"
    found = _signature_problem(gradient, params)
    return ("error", f"{gradient.name}() {found}") if found else None


def _signature_problem(gradient: Gradient, params: tuple[str, ...]) -> str | None:
    allowed = INPUT_NAMES | set(gradient.allowed_gradients)
    for p in params:
        if p.startswith("*"):
            return (f"takes {p}: name each input as a parameter (e.g. "
                    f"{', '.join(gradient.signature)}) so the grader knows what to pass")
        if p == gradient.name:
            return (f"asks for {p}, its own gradient: compute it from the forward tensors and "
                    "upstream gradients")
        if p.startswith("d") and p not in allowed:
            return (f"asks for {p}, which is not upstream of {gradient.name} "
                    f"(upstream: {', '.join(gradient.allowed_gradients) or 'none'})")
        if p not in allowed:
            return (f"asks for '{p}', which is not a lecture tensor, parameter, n, Xb, Yb or an "
                    f"upstream gradient (try: {', '.join(gradient.signature)})")
    return None


def _planned_call(gradient: Gradient, params: tuple[str, ...], mode: str, state: LectureState,
                  base: dict[str, Any], own: dict[str, torch.Tensor],
                  own_passed: dict[str, bool], own_inexact: set[str]) -> _Planned:
    """A stub's call in one mode: autograd's upstream gradients, or in chained mode the
    student's own where there is one (autograd's substituted where there is none)."""
    chained = mode == "chained"
    inputs: dict[str, Any] = {}
    substituted = []
    for p in params:
        if p not in gradient.allowed_gradients:
            inputs[p] = base[p]
        elif chained and p in own:
            inputs[p] = own[p]
        else:
            inputs[p] = state.grads[p]
            if chained:
                substituted.append(p)
    from_own = [p for p in params if p in gradient.allowed_gradients and chained and p in own]
    return _Planned(
        gradient, mode, inputs, substituted=tuple(substituted),
        wrong_upstream=tuple(p for p in from_own if not own_passed[p]),
        inexact_upstream=tuple(p for p in from_own if p in own_inexact))


def _same_inputs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        (torch.equal(v, b[k]) if isinstance(v, torch.Tensor) else v == b[k])
        for k, v in a.items())


def _stub_verdict(plan: _Planned, outcome: CallOutcome, state: LectureState,
                  base: dict[str, Any], options: GradingOptions, session: SandboxSession,
                  own: dict[str, torch.Tensor], own_passed: dict[str, bool],
                  own_inexact: set[str]) -> Verdict:
    """Judge one planned call of ``grade_stub_gradients``; a chained answer that was compared
    with autograd's becomes, as it came (a (64,) answer for a (1, 64) tensor too), the
    student's own upstream gradient for the stubs after it."""
    gradient, mode = plan.gradient, plan.mode
    expected = state.grads[f"d{gradient.variable}"]
    if outcome.status != "ok":
        judged = outcome_verdict(gradient, state.config, mode, outcome)
    else:
        judged = judge_answer(
            gradient, state.config, mode, outcome.tensors["result"], expected,
            scale=upstream_scale(gradient, state), pool={**base, **state.grads, **plan.inputs},
            options=options, generic_hints=not plan.wrong_upstream,
            inexact_upstream=plan.inexact_upstream, noise=autograd_noise(gradient, state))
    verdict = integrity_checked(judged, session, outcome, options)
    verdict.substituted = plan.substituted
    cmp = verdict.comparison
    if mode == "chained" and verdict.actual is not None and cmp is not None \
            and verdict.status in (*PASSING, "wrong"):
        own[gradient.name] = verdict.actual
        own_passed[gradient.name] = verdict.passed
        if verdict.passed and cmp.maxdiff != 0.0:
            own_inexact.add(gradient.name)
    if plan.wrong_upstream and not verdict.passed:
        wrong = plan.wrong_upstream
        note = (f"your {', '.join(wrong)}, which chained mode feeds to this step, "
                f"{'was' if len(wrong) == 1 else 'were'} already wrong")
        verdict.message = f"{verdict.message}; {note}" if verdict.message else note
    return verdict
