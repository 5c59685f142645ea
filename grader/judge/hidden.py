"""The stubs that passed the lecture config, on the hidden configs and random upstream probes.

``grade_hidden_configs`` grades each gradient that passed the lecture config on the hidden
configs (grader.lecture.configs), in isolated mode with random upstream probes
(grader.judge.probes): a gradient passes only if it passes everywhere. When it fails somewhere,
the grader finds out why with a few more calls of that stub only: the probe again on the lecture
config (then the step is wrong, hidden behind a nearly-zero true upstream), else one size changed
at a time (then a size is hard-coded). Exactness comes from the lecture config alone: elsewhere
(other sizes, random upstream) an answer only has to be right, approximate or exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from ..lecture.catalog import GRADIENTS, Gradient
from ..lecture.configs import Dimension, changed_dimensions, describe_hard_coding, dimension_config
from ..lecture.model import Config, LectureState
from ..sandbox.session import Call, CallOutcome, SandboxSession
from .grading import GradingOptions, Verdict, autograd_noise, judge_answer, lecture_inputs, \
    outcome_verdict, upstream_scale
from .probes import Probe, probe_book
from .stubs import grade_stub_gradients, in_answer_order

__all__ = ["StateFor", "culprits", "grade_hidden_configs", "hard_coding_message"]

StateFor = Callable[[Config], LectureState]


def grade_hidden_configs(session: SandboxSession, functions: dict[str, tuple[str, ...]],
                         lecture_verdicts: list[Verdict], lecture: LectureState,
                         hidden: tuple[LectureState, ...], options: GradingOptions, *,
                         state_for: StateFor,
                         gradients: tuple[Gradient, ...] = GRADIENTS) -> list[Verdict]:
    """Each stub that passed the lecture config, on the hidden configs (and probes).

    Isolated mode (the default): one call per stub and hidden config, with random upstream
    gradients where the stub's signature allows a consistent probe (grader.judge.probes); with
    no hidden config, one probe call per stub on the lecture config. A stub stops at its first
    failure, which is then explained with a few more calls of that stub alone (none after a call
    that hit a sandbox limit). Chained-only grading runs the hidden configs chained, without
    probes or diagnosis.
    """
    if "isolated" not in options.modes:
        return _hidden_chained(session, functions, lecture_verdicts, lecture, hidden, options,
                               gradients)
    passed_there = {v.gradient.name for v in lecture_verdicts
                    if v.mode == "isolated" and v.passed and v.config == lecture.config
                    and not v.probe}
    passed = [g for g in gradients if g.exercise in options.exercises
              and g.name in functions and g.name in passed_there]
    books = [probe_book(s.config) if options.probes else None for s in (lecture, *hidden)]
    by_gradient: dict[str, list[Verdict]] = {g.name: [] for g in passed}
    if not hidden and books[0] is not None:
        probes = [(g, probe) for g in passed
                  if (probe := books[0].probe(g, functions[g.name])) is not None]
        planned = [_isolated(g, functions[g.name], lecture, probe) for g, probe in probes]
        for (g, probe), v in zip(probes, _isolated_calls(session, planned, options, teach=True)):
            if not v.passed:
                v.message = _probe_message(g, functions[g.name], lecture, probe, v)
            by_gradient[g.name].append(v)
    going = in_answer_order(passed)     # still passing: graded on the next hidden config
    for state, book in zip(hidden, books[1:]):
        planned = [_isolated(g, functions[g.name], state,
                             book.probe(g, functions[g.name]) if book else None) for g in going]
        verdicts = _isolated_calls(session, planned, options, teach=False)
        going = []
        for gradient, v in zip([c.gradient for c in planned], verdicts):
            by_gradient[gradient.name].append(v)
            if v.passed:
                going.append(gradient)
            else:
                by_gradient[gradient.name] += _explain_hidden_failure(
                    session, gradient, functions[gradient.name], lecture, v, options, state_for)
    return [v for g in passed for v in by_gradient[g.name]]


def culprits(lecture: Config, hidden: Config, fails_alone: Callable[[Config], bool]
             ) -> tuple[Dimension, ...]:
    """The sizes that break the answer when changed alone from ``lecture`` to ``hidden``."""
    return tuple(d for d in changed_dimensions(lecture, hidden)
                 if fails_alone(dimension_config(lecture, hidden, d)))


def hard_coding_message(failed: Verdict, *, base: Config, culprits: tuple[Dimension, ...] = (),
                        tested: bool = True) -> str:
    """What a verdict right in ``base`` and wrong in its own config says: the sizes that
    changed, and which of them break it (grader.lecture.configs.describe_hard_coding), then
    its own message."""
    message = describe_hard_coding(culprits, base=base, other=failed.config,
                                   changed=changed_dimensions(base, failed.config), tested=tested)
    if not failed.message:
        return message
    return f"{message} (in {failed.config.name}: {failed.message})"


@dataclass(frozen=True)
class _IsolatedCall:
    """An isolated call's inputs and what to judge its answer against."""

    gradient: Gradient
    state: LectureState
    inputs: dict[str, Any]
    expected: torch.Tensor
    pool: dict[str, Any]
    scale: float
    probe: bool
    noise: float

    def call(self) -> Call:
        return Call(self.gradient.name, self.inputs, group=self.gradient.name)

    def verdict(self, outcome: CallOutcome, options: GradingOptions, *, teach: bool
                ) -> Verdict:
        config = self.state.config
        if outcome.status != "ok":
            return outcome_verdict(self.gradient, config, "isolated", outcome, probe=self.probe)
        return judge_answer(self.gradient, config, "isolated", outcome.tensors["result"],
                            self.expected, scale=self.scale, pool=self.pool, options=options,
                            probe=self.probe, teach=teach, noise=self.noise)


def _isolated(gradient: Gradient, params: tuple[str, ...], state: LectureState,
              probe: Probe | None) -> _IsolatedCall:
    """Autograd's upstream gradients, or a probe's random ones."""
    if probe is not None:
        return _IsolatedCall(gradient, state, probe.inputs(params), probe.expected, probe.pool,
                             probe.scale(params), True, 0.0)
    base = lecture_inputs(state)
    inputs = {p: state.grads[p] if p in gradient.allowed_gradients else base[p] for p in params}
    return _IsolatedCall(gradient, state, inputs, state.grads[f"d{gradient.variable}"],
                         {**base, **state.grads}, upstream_scale(gradient, state), False,
                         autograd_noise(gradient, state))


def _isolated_call(session: SandboxSession, gradient: Gradient, params: tuple[str, ...],
                   state: LectureState, probe: Probe | None, options: GradingOptions,
                   *, teach: bool) -> Verdict:
    """One isolated call of a stub: autograd's upstream gradients, or a probe's random ones."""
    planned = _isolated(gradient, params, state, probe)
    return planned.verdict(session.call_many([planned.call()])[0], options, teach=teach)


def _isolated_calls(session: SandboxSession, planned: list[_IsolatedCall],
                    options: GradingOptions, *, teach: bool) -> list[Verdict]:
    """Isolated calls in as few round trips as the gradients under test allow: a batch ends
    before a call that takes, as an input, the very tensor another call of the batch is
    judged against (probes draw their random gradients per stub, so they never do)."""
    verdicts: list[Verdict] = []
    start = 0
    while start < len(planned):
        end, secrets = start, set[int]()     # ids of the tensors the batch is judged against
        while end < len(planned):
            if any(id(v) in secrets for v in planned[end].inputs.values()):
                break
            secrets.add(id(planned[end].expected))
            end += 1
        outcomes = session.call_many([c.call() for c in planned[start:end]])
        verdicts += [c.verdict(o, options, teach=teach)
                     for c, o in zip(planned[start:end], outcomes)]
        start = end
    return verdicts


def _probe_message(gradient: Gradient, params: tuple[str, ...], lecture: LectureState,
                   probe: Probe, verdict: Verdict) -> str:
    upstream = [p for p in params if p in gradient.allowed_gradients]
    mags = {p: float(lecture.grads[p].abs().max()) for p in upstream}
    top = max(mags.values(), default=0.0)
    tiny = [p for p, m in mags.items() if m <= 1e-5 * top]
    own = float(lecture.grads[f"d{gradient.variable}"].abs().max())
    if tiny:
        why = (f"autograd's {', '.join(tiny)} {'is' if len(tiny) == 1 else 'are'} nearly zero "
               f"here (largest {max(mags[p] for p in tiny):.1g}), which hides a mistake in this "
               "step")
    elif own <= 1e-5 * top:
        why = (f"autograd's own {gradient.name} is nearly zero here (largest {own:.1g}), so a "
               "wrong step still lands within the tolerance")
    else:
        why = "it only happens to match for autograd's particular upstream"
    detail = f" ({verdict.message})" if verdict.message else ""
    return (f"correct with autograd's upstream gradients but not with random ones (d"
            f"{', d'.join(probe.injected)} drawn at random, the rest derived from "
            f"{'it' if len(probe.injected) == 1 else 'them'}): {why}{detail}")


def _explain_hidden_failure(session: SandboxSession, gradient: Gradient, params: tuple[str, ...],
                            lecture: LectureState, failed: Verdict, options: GradingOptions,
                            state_for: StateFor) -> list[Verdict]:
    """Probe on the lecture config first (the step itself is wrong), then one size at a time."""
    if failed.probe:
        probe = probe_book(lecture.config).probe(gradient, params)
        assert probe is not None
        v = _isolated_call(session, gradient, params, lecture, probe, options, teach=True)
        if not v.passed:
            v.message = _probe_message(gradient, params, lecture, probe, v)
            failed.message = f"also wrong in {failed.config.name}" + (
                f": {failed.message}" if failed.message else "")
            return [v]

    if failed.limit is not None:     # a hang or a crash: no more calls to find out which size
        changed = changed_dimensions(lecture.config, failed.config)
        sizes = ", ".join(d.phrase("hidden") for d in changed)
        failed.message = (f"correct in the {lecture.config.name} config, but in "
                          f"{failed.config.name} ({sizes or 'other data'}): {failed.message}")
        return []

    def fails_alone(config: Config) -> bool:
        v = _isolated_call(session, gradient, params, state_for(config), None, options,
                           teach=False)
        if v.limit is not None:
            raise _GiveUp
        return not v.passed

    try:
        found, tested = culprits(lecture.config, failed.config, fails_alone), True
    except _GiveUp:
        found, tested = (), False
    failed.message = hard_coding_message(failed, base=lecture.config, culprits=found,
                                         tested=tested)
    return []


class _GiveUp(Exception):
    """A diagnosis call hit a sandbox limit: stop calling that stub."""


def _hidden_chained(session: SandboxSession, functions: dict[str, tuple[str, ...]],
                    lecture_verdicts: list[Verdict], lecture: LectureState,
                    hidden: tuple[LectureState, ...], options: GradingOptions,
                    gradients: tuple[Gradient, ...]) -> list[Verdict]:
    passed = {v.gradient.name for v in lecture_verdicts if v.mode == "chained" and v.passed}
    chained = replace(options, modes=("chained",))
    out: list[Verdict] = []
    for state in hidden:
        for v in grade_stub_gradients(session, functions, state, chained, gradients):
            if not v.passed and v.gradient.name in passed:
                v.message = hard_coding_message(v, base=lecture.config, tested=False)
            v.hint = v.hint_key = None      # hidden failures are explained by the sizes
            out.append(v)
    return out
