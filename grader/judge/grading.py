"""The grading engine: feed each stub its inputs in the sandbox, compare with autograd.

Isolated mode feeds autograd's upstream gradients, so every local step is graded on its own;
chained mode feeds the student's own, as the notebook does. Points come from isolated mode
(stub format) in every config.

Beyond the lecture config, ``grade_hidden_configs`` grades each gradient that passed there on the
hidden configs (grader/configs.py), in isolated mode with random upstream probes
(grader/probes.py): a gradient passes only if it passes everywhere. When it fails somewhere, the
grader finds out why with a few more calls of that stub only: the probe again on the lecture
config (then the step is wrong, hidden behind a nearly-zero true upstream), else one size changed
at a time (then a size is hard-coded). Exactness comes from the lecture config alone: elsewhere
(other sizes, random upstream) an answer only has to be right, approximate or exact.

A wrong answer gets a hint (grader/hints.py) when it matches a known mistake, built in this
process from the same inputs the stub got; a right but inexact one gets an explanation
(grader/explain.py).

Calls go to the child in batches, one round trip each (SandboxSession.call_many), and the
gradient under test never goes to the child before the stub's answer came back: the stubs are
called in answer order (exercises 2 and 3's fused stubs beside the exercise-1 step they replace),
and a batch ends before a call that takes, as input, a tensor another call of the batch is judged
against (tests/test_grading.py checks every request).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import torch

from ..lecture.catalog import (
    EXERCISE4_GRADIENTS,
    EXERCISE4_INPUT_NAMES,
    EXERCISE4_TRAINING,
    EXERCISES,
    GRADIENTS,
    INPUT_NAMES,
    Gradient,
)
from .compare import Comparison, Tolerance, compare_gradient
from ..lecture.configs import Dimension, changed_dimensions, describe_hard_coding, dimension_config
from .explain import EXERCISE4_REASON, explain_inexact
from .hints import find_hint
from .integrity import autograd_events, autograd_message
from ..lecture.model import (
    PARAMETER_NAMES,
    Config,
    LectureState,
    build_dataset,
    fused_forward,
    init_parameters,
    sample_batches,
    train_with_autograd,
)
from .probes import Probe, probe_book
from .scoring import max_points_for, points_for
from ..output.results import ConfigVerdict, ExerciseResult, GradientResult, ModeVerdict
from ..sandbox.session import Call, CallOutcome, SandboxSession
from ..lecture.training import batch_tensors
from .views import failure_fields

__all__ = ["GradingOptions", "Verdict", "grade_exercise4", "grade_exercise4_hidden",
           "grade_hidden_configs", "grade_stub_gradients", "collect_gradient_results",
           "explain_inexact", "verdict_from_tensor", "warm_references"]

MODES = ("isolated", "chained")
PASSING = ("exact", "approx")
StateFor = Callable[[Config], LectureState]


@dataclass(frozen=True)
class GradingOptions:
    modes: tuple[str, ...] = MODES
    tolerance: Tolerance = field(default_factory=Tolerance)
    train_steps: int = 10
    train_lr: float = 0.1
    exact_required: frozenset[str] = frozenset()
    points: dict[str, float] = field(default_factory=dict)   # per-gradient override
    exercises: tuple[str, ...] = ("ex1", "ex2", "ex3", "ex4")
    probes: bool = True       # isolated mode: also grade each step on random upstream gradients
    integrity_policy: str = "zero"   # a gradient computed with autograd: "zero" points or "flag"

    def __post_init__(self) -> None:
        if self.integrity_policy not in ("zero", "flag"):
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
    probe: bool = False                 # fed random upstream gradients (grader/probes.py)
    hint: str | None = None             # a known mistake (grader/hints.py), when it matched
    hint_key: str | None = None
    limit: str | None = None            # the sandbox limit the call hit ("wall time", ...)

    @property
    def passed(self) -> bool:
        return self.status in PASSING


def _check_signature(gradient: Gradient, params: tuple[str, ...], allowed: frozenset[str]
                     ) -> str | None:
    for p in params:
        if p.startswith("*"):
            return (f"takes {p}: name each input as a parameter (e.g. {', '.join(gradient.signature)}) "
                    "so the grader knows what to pass")
        if p == gradient.name:
            return f"asks for {p}, its own gradient: compute it from the forward tensors and upstream gradients"
        if p.startswith("d") and p not in allowed and p not in INPUT_NAMES:
            return (f"asks for {p}, which is not upstream of {gradient.name} "
                    f"(upstream: {', '.join(gradient.allowed_gradients) or 'none'})")
        if p not in allowed:
            return (f"asks for '{p}', which is not a lecture tensor, parameter, n, Xb, Yb or an "
                    f"upstream gradient (try: {', '.join(gradient.signature)})")
    return None


def _scale(gradient: Gradient, state: LectureState) -> float:
    """The magnitude that sets the absolute tolerance of a step: its upstream gradients."""
    return max((state.grad_abs_max(u) for u in gradient.upstream if u in state.grads),
               default=0.0)


def _noise(gradient: Gradient, state: LectureState) -> float:
    """Autograd's rounding noise for this gradient or the upstream ones it is computed from
    (a correct answer from slightly different upstream values differs by about as much)."""
    names = (f"d{gradient.variable}", *gradient.upstream)
    return max(state.noise.get(name, 0.0) for name in names)


def _base(state: LectureState) -> dict[str, Any]:
    return {**state.forward, **state.params, "n": state.config.n, "Xb": state.Xb, "Yb": state.Yb}


def verdict_from_tensor(gradient: Gradient, state: LectureState, actual: torch.Tensor,
                        options: GradingOptions, *, mode: str = "chained",
                        inputs: dict[str, Any] | None = None,
                        inexact_upstream: tuple[str, ...] = ()) -> Verdict:
    """A gradient the student computed by other means (lecture-style code) vs autograd's, with
    the same hints and explanations as a stub's answer."""
    expected = state.grads[f"d{gradient.variable}"]
    outcome = CallOutcome("ok", {"result": actual})
    return _judge(gradient, state.config, mode, outcome, expected,
                  scale=_scale(gradient, state),
                  pool={**_base(state), **state.grads, **(inputs or {})}, options=options,
                  inexact_upstream=inexact_upstream, teach=actual.device.type != "meta",
                  noise=_noise(gradient, state))


def _outcome_verdict(gradient: Gradient, config: Config, mode: str,
                     outcome: CallOutcome, *, probe: bool = False) -> Verdict:
    status = "missing" if outcome.status == "missing" else "error"
    message = outcome.message
    if outcome.status == "timeout":
        message = f"{gradient.name}() {outcome.message}"
    return Verdict(gradient, config, mode, status, message=message, traceback=outcome.traceback,
                   probe=probe, limit=outcome.limit)


def _judge(gradient: Gradient, config: Config, mode: str, outcome: CallOutcome,
           expected: torch.Tensor, *, scale: float, pool: dict[str, Any],
           options: GradingOptions, probe: bool = False, teach: bool = True,
           generic_hints: bool = True, inexact_upstream: tuple[str, ...] = (),
           noise: float = 0.0) -> Verdict:
    """Compare one call's answer; a wrong one gets a hint, an inexact one an explanation.

    ``noise``: autograd's own rounding noise for this gradient (LectureState.noise); below batch
    norm at n = 2 the true gradients are rounding noise, and chained answers carry as much."""
    if outcome.status != "ok":
        return _outcome_verdict(gradient, config, mode, outcome, probe=probe)
    actual = outcome.tensors["result"]
    # without teaching (a hidden config), an approximate answer's status and maxdiff are all
    # that is shown of it
    cmp = compare_gradient(actual, expected, scale=scale, tolerance=options.tolerance,
                           noise=noise, brief=not teach)
    verdict = Verdict(gradient, config, mode, cmp.status, cmp, message=cmp.message,
                      actual=actual, expected=expected, probe=probe)
    if not teach:
        return verdict
    if cmp.status == "approx":
        verdict.explanation = explain_inexact(
            gradient.name, pool, actual, expected, ulps=cmp.ulps, scale=scale,
            inexact_upstream=inexact_upstream,
            exact_required=gradient.name in options.exact_required)
    elif not verdict.passed:
        hint = find_hint(gradient.name, actual, expected, pool, scale=scale,
                         generic=generic_hints, probe=probe)
        if hint is not None:
            verdict.hint, verdict.hint_key = hint.text, hint.key
    return verdict


def _integrity_checked(verdict: Verdict, session: SandboxSession, outcome: CallOutcome,
                       options: GradingOptions) -> Verdict:
    """Under the "zero" policy, a gradient whose call (or the file's load) used autograd gets
    status "integrity" and no points; see grader.judge.integrity."""
    if options.integrity_policy != "zero":
        return verdict
    if autograd_events(outcome.integrity):
        return replace(verdict, status="integrity", message=autograd_message(outcome.integrity))
    if autograd_events(session.load_integrity):
        return replace(verdict, status="integrity",
                       message=autograd_message(session.load_integrity, at_load=True))
    return verdict


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


def _same_inputs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        (torch.equal(v, b[k]) if isinstance(v, torch.Tensor) else v == b[k]) for k, v in a.items())


def _in_answer_order(gradients: Sequence[Gradient]) -> list[Gradient]:
    """The stubs in the order their calls must go: a stub computing the same gradient as an
    earlier one (exercise 2's dlogits_fused, exercise 3's dhprebn_fused) right after it, before
    that gradient goes to the child as the next stub's upstream."""
    first: dict[str, int] = {}
    for i, g in enumerate(gradients):
        first.setdefault(g.variable, i)
    return sorted(gradients, key=lambda g: first[g.variable])


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
    base = _base(state)
    own: dict[str, torch.Tensor] = {}          # the student's chained gradients so far
    own_passed: dict[str, bool] = {}
    batch: list[Call] = []
    in_batch: set[str] = set()                 # the gradients the batch's stubs compute
    planned: list[_Planned] = []

    def flush() -> None:
        outcomes = session.call_many(batch) if batch else []
        for plan in planned:
            verdicts.append(plan.verdict if plan.verdict is not None
                            else _stub_verdict(plan, outcomes[plan.call], state, base, options,
                                               session, own, own_passed))
        batch.clear()
        in_batch.clear()
        planned.clear()

    for gradient in _in_answer_order(gradients):
        if gradient.exercise not in options.exercises:
            continue
        params = functions.get(gradient.name)
        if params is not None and any(p in in_batch for p in params):
            flush()
        if params is None:
            status, problem = "missing", f"no function {gradient.name}() in your file"
        else:
            allowed = frozenset(INPUT_NAMES | set(gradient.allowed_gradients))
            found = _check_signature(gradient, params, allowed)
            status, problem = "error", found and f"{gradient.name}() {found}"
        previous: dict[str, Any] | None = None   # the inputs of this stub's last call
        for mode in options.modes:
            if params is None or problem:
                planned.append(_Planned(gradient, mode, verdict=Verdict(
                    gradient, state.config, mode, status, message=problem)))
                continue
            inputs: dict[str, Any] = {}
            substituted = []
            for p in params:
                if p in gradient.allowed_gradients:
                    if mode == "chained" and p in own:
                        inputs[p] = own[p]
                    else:
                        inputs[p] = state.grads[p]
                        if mode == "chained":
                            substituted.append(p)
                else:
                    inputs[p] = base[p]
            upstream = [p for p in params if p in gradient.allowed_gradients]
            plan = _Planned(
                gradient, mode, inputs, substituted=tuple(substituted),
                wrong_upstream=tuple(p for p in upstream
                                     if mode == "chained" and p in own and not own_passed[p]),
                inexact_upstream=tuple(p for p in upstream if mode == "chained" and p in own
                                       and own_passed[p]
                                       and not torch.equal(own[p], state.grads[p])))
            if previous is None or not _same_inputs(previous, inputs):
                batch.append(Call(gradient.name, inputs, group=gradient.name))
                previous = inputs
            plan.call = len(batch) - 1       # chained inputs equal isolated: the same call
            planned.append(plan)
        in_batch.add(f"d{gradient.variable}")
        in_batch.add(gradient.name)
    flush()
    catalog = {g.name: i for i, g in enumerate(gradients)}
    return sorted(verdicts, key=lambda v: catalog[v.gradient.name])


def _stub_verdict(plan: _Planned, outcome: CallOutcome, state: LectureState,
                  base: dict[str, Any], options: GradingOptions, session: SandboxSession,
                  own: dict[str, torch.Tensor], own_passed: dict[str, bool]) -> Verdict:
    """Judge one planned call of ``grade_stub_gradients``; a chained answer becomes the
    student's own upstream gradient for the stubs after it."""
    gradient, mode = plan.gradient, plan.mode
    expected = state.grads[f"d{gradient.variable}"]
    verdict = _integrity_checked(
        _judge(gradient, state.config, mode, outcome, expected,
               scale=_scale(gradient, state), pool={**base, **state.grads, **plan.inputs},
               options=options, generic_hints=not plan.wrong_upstream,
               inexact_upstream=plan.inexact_upstream, noise=_noise(gradient, state)),
        session, outcome, options)
    verdict.substituted = plan.substituted
    if mode == "chained" and verdict.actual is not None \
            and verdict.status in ("exact", "approx", "wrong") \
            and verdict.actual.shape == expected.shape:
        own[gradient.name] = verdict.actual
        own_passed[gradient.name] = verdict.passed
    if plan.wrong_upstream and not verdict.passed:
        wrong = plan.wrong_upstream
        note = (f"your {', '.join(wrong)}, which chained mode feeds to this step, "
                f"{'was' if len(wrong) == 1 else 'were'} already wrong")
        verdict.message = f"{verdict.message}; {note}" if verdict.message else note
    return verdict


# -- hidden configs and probes --------------------------------------------------------------

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


def _isolated(gradient: Gradient, params: tuple[str, ...], state: LectureState,
              probe: Probe | None) -> _IsolatedCall:
    """Autograd's upstream gradients, or a probe's random ones."""
    if probe is not None:
        return _IsolatedCall(gradient, state, probe.inputs(params), probe.expected, probe.pool,
                             probe.scale(params), True, 0.0)
    base = _base(state)
    inputs = {p: state.grads[p] if p in gradient.allowed_gradients else base[p] for p in params}
    return _IsolatedCall(gradient, state, inputs, state.grads[f"d{gradient.variable}"],
                         {**base, **state.grads}, _scale(gradient, state), False,
                         _noise(gradient, state))


def _isolated_verdict(planned: _IsolatedCall, outcome: CallOutcome, options: GradingOptions,
                      *, teach: bool) -> Verdict:
    return _judge(planned.gradient, planned.state.config, "isolated", outcome, planned.expected,
                  scale=planned.scale, pool=planned.pool, options=options, probe=planned.probe,
                  teach=teach, noise=planned.noise)


def _isolated_call(session: SandboxSession, gradient: Gradient, params: tuple[str, ...],
                   state: LectureState, probe: Probe | None, options: GradingOptions,
                   *, teach: bool) -> Verdict:
    """One isolated call of a stub: autograd's upstream gradients, or a probe's random ones."""
    planned = _isolated(gradient, params, state, probe)
    return _isolated_verdict(planned, session.call_many([planned.call()])[0], options,
                             teach=teach)


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
        verdicts += [_isolated_verdict(c, o, options, teach=teach)
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


def _culprits(lecture: Config, hidden: Config, fails_alone: Callable[[Config], bool]
              ) -> tuple[tuple[Dimension, ...], tuple[Dimension, ...]]:
    """The sizes that differ, and those that break the answer when changed alone."""
    changed = changed_dimensions(lecture, hidden)
    return changed, tuple(d for d in changed if fails_alone(dimension_config(lecture, hidden, d)))


def _with_detail(message: str, verdict: Verdict) -> str:
    if not verdict.message:
        return message
    return f"{message} (in {verdict.config.name}: {verdict.message})"


def grade_hidden_configs(session: SandboxSession, functions: dict[str, tuple[str, ...]],
                         lecture_verdicts: list[Verdict], lecture: LectureState,
                         hidden: tuple[LectureState, ...], options: GradingOptions, *,
                         state_for: StateFor,
                         gradients: tuple[Gradient, ...] = GRADIENTS) -> list[Verdict]:
    """Each stub that passed the lecture config, on the hidden configs (and probes).

    Isolated mode (the default): one call per stub and hidden config, with random upstream
    gradients where the stub's signature allows a consistent probe (grader/probes.py); with no
    hidden config, one probe call per stub on the lecture config. A stub stops at its first
    failure, which is then explained with a few more calls of that stub alone (none after a call
    that hit a sandbox limit). Chained-only grading runs the hidden configs chained, without
    probes or diagnosis.
    """
    targets = [g for g in gradients if g.exercise in options.exercises
               and g.name in functions]
    if "isolated" not in options.modes:
        return _hidden_chained(session, functions, lecture_verdicts, lecture, hidden, options,
                               gradients)
    passed_there = {v.gradient.name for v in lecture_verdicts
                    if v.mode == "isolated" and v.passed and v.config == lecture.config
                    and not v.probe}
    passed = [g for g in targets if g.name in passed_there]
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
    going = _in_answer_order(passed)    # still passing: graded on the next hidden config
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

    changed = changed_dimensions(lecture.config, failed.config)
    if failed.limit is not None:     # a hang or a crash: no more calls to find out which size
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
        _, culprits = _culprits(lecture.config, failed.config, fails_alone)
        tested = True
    except _GiveUp:
        culprits, tested = (), False
    failed.message = _with_detail(describe_hard_coding(culprits, base=lecture.config,
                                                       other=failed.config, changed=changed,
                                                       tested=tested), failed)
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
                changed = changed_dimensions(lecture.config, state.config)
                v.message = _with_detail(describe_hard_coding(
                    (), base=lecture.config, other=state.config, changed=changed, tested=False), v)
            v.hint = v.hint_key = None      # hidden failures are explained by the sizes
            out.append(v)
    return out


@dataclass(frozen=True)
class Exercise4Setup:
    config: Config
    params: dict[str, torch.Tensor]
    batches: list[tuple[torch.Tensor, torch.Tensor]]


def exercise4_setup(config: Config, steps: int) -> Exercise4Setup:
    """The n_hidden=200 net of the lecture's training loop, and its first batches."""
    data = build_dataset(config.resolved_words(), config.block_size)
    g = torch.Generator().manual_seed(config.seed)
    params = init_parameters(config, data.vocab_size, g)
    batches = sample_batches(data.Xtr, data.Ytr, config.n, max(steps, 1), g)
    return Exercise4Setup(config, params, batches)


@dataclass(frozen=True)
class _Exercise4Reference:
    setup: Exercise4Setup
    expected: dict[str, torch.Tensor]    # autograd's 7 gradients at step 0
    scales: dict[str, float]             # tolerance scale of each
    pool: dict[str, Any]                 # what backward() may ask for, at step 0


@functools.lru_cache(maxsize=16)
def _exercise4_reference(config: Config, steps: int) -> _Exercise4Reference:
    """Autograd's step-0 gradients of the fused forward (cached: the same for every student)."""
    setup = exercise4_setup(config, steps)
    Xb, Yb = setup.batches[0]
    leaves = {k: v.clone().requires_grad_(True) for k, v in setup.params.items()}
    fwd = fused_forward(leaves, Xb, Yb)
    for name in ("emb", "hprebn", "hpreact", "logits"):
        fwd[name].retain_grad()
    fwd["loss"].backward()
    expected = {f"d{k}": v.grad for k, v in leaves.items()}
    # the tolerance scale of each parameter's gradient: the upstream gradient it is summed from
    consumer = {"dC": "emb", "dW1": "hprebn", "db1": "hprebn", "dW2": "logits", "db2": "logits",
                "dbngain": "hpreact", "dbnbias": "hpreact"}
    scales = {k: float(fwd[v].grad.abs().max()) for k, v in consumer.items()}
    pool: dict[str, Any] = {**{k: v.detach() for k, v in fwd.items()}, **setup.params,
                            "n": config.n, "Xb": Xb, "Yb": Yb}
    return _Exercise4Reference(setup, expected, scales, pool)


@functools.lru_cache(maxsize=8)
def _training_reference(config: Config, steps: int, lr: float
                        ) -> tuple[dict[str, torch.Tensor], list[float]]:
    setup = _exercise4_reference(config, steps).setup
    return train_with_autograd(setup.params, setup.batches[:steps], lr=lr)


def warm_references(states: Sequence[LectureState], ex4_configs: Sequence[Config],
                    options: GradingOptions) -> None:
    """Compute now what every submission is compared with (probes for the catalog's
    signatures, exercise 4's gradients and training run); all of it is cached. A batch calls
    this before forking its worker processes, which then share the results."""
    for state in states:
        if options.probes:
            book = probe_book(state.config)
            for gradient in GRADIENTS:
                book.probe(gradient, gradient.signature)
    if "ex4" in options.exercises:
        for config in ex4_configs:
            _exercise4_reference(config, options.train_steps)
        _training_reference(ex4_configs[0], options.train_steps, options.train_lr)


def _backward_verdicts(session: SandboxSession, params_of_backward: tuple[str, ...],
                       config: Config, options: GradingOptions, *, teach: bool = True
                       ) -> list[Verdict]:
    """One call of backward() at step 0: a verdict for each of its 7 gradients. Without
    ``teach`` (a hidden config, whose verdicts show status, maxdiff and message only), an
    approximate one is compared briefly and not explained."""
    ref = _exercise4_reference(config, options.train_steps)
    outcome = session.call("backward", {p: ref.pool[p] for p in params_of_backward},
                           returns="list")
    verdicts: list[Verdict] = []
    for i, gradient in enumerate(EXERCISE4_GRADIENTS):
        exp = ref.expected[gradient.name]
        if outcome.status != "ok":
            verdicts.append(_outcome_verdict(gradient, config, "isolated", outcome))
            continue
        if str(i) not in outcome.tensors:
            verdicts.append(Verdict(gradient, config, "isolated", "error",
                                    message=f"backward() returned {len(outcome.tensors)} tensors, "
                                            "expected 7: [dC, dW1, db1, dW2, db2, dbngain, dbnbias]"))
            continue
        actual = outcome.tensors[str(i)]
        cmp = compare_gradient(actual, exp, scale=ref.scales[gradient.name],
                               tolerance=options.tolerance, brief=not teach)
        v = Verdict(gradient, config, "isolated", cmp.status, cmp, message=cmp.message,
                    actual=actual, expected=exp)
        if cmp.status == "approx" and teach:
            v.explanation = explain_inexact(
                gradient.name, {}, actual, exp, ulps=cmp.ulps, scale=ref.scales[gradient.name],
                exact_required=gradient.name in options.exact_required,
                known_reason=EXERCISE4_REASON)
        verdicts.append(_integrity_checked(v, session, outcome, options))
    return verdicts


def _backward_problem(params_of_backward: tuple[str, ...]) -> str | None:
    bad = [p for p in params_of_backward if p not in EXERCISE4_INPUT_NAMES]
    if bad:
        return (f"backward() asks for '{bad[0]}', which is not one of the training loop's tensors "
                f"({', '.join(sorted(EXERCISE4_INPUT_NAMES))})")
    return None


def grade_exercise4(session: SandboxSession, params_of_backward: tuple[str, ...] | None,
                    config: Config, options: GradingOptions) -> list[Verdict]:
    """backward(): its 7 gradients at step 0, then K steps of SGD with it vs autograd's."""
    targets = (*EXERCISE4_GRADIENTS, EXERCISE4_TRAINING)
    if params_of_backward is None:
        return [Verdict(g, config, "isolated", "missing",
                        message="no function backward() in your file") for g in targets]
    problem = _backward_problem(params_of_backward)
    if problem:
        return [Verdict(g, config, "isolated", "error", message=problem) for g in targets]
    verdicts = _backward_verdicts(session, params_of_backward, config, options)
    verdicts.append(_grade_training(session, params_of_backward,
                                    _exercise4_reference(config, options.train_steps).setup,
                                    options))
    return verdicts


def grade_exercise4_hidden(session: SandboxSession, params_of_backward: tuple[str, ...] | None,
                           lecture_verdicts: list[Verdict], lecture: Config, hidden: Config,
                           options: GradingOptions) -> list[Verdict]:
    """backward()'s step-0 gradients on one hidden config (training stays on the lecture's).

    A gradient right in the lecture config and wrong here is re-checked with one size changed at
    a time (one more call of backward() per size) to name the hard-coded one.
    """
    if params_of_backward is None or _backward_problem(params_of_backward):
        return []
    passed = {v.gradient.name for v in lecture_verdicts
              if v.gradient.exercise == "ex4" and v.passed and v.config == lecture}
    if not passed:
        return []
    verdicts = _backward_verdicts(session, params_of_backward, hidden, options, teach=False)
    failing = [v for v in verdicts if v.gradient.name in passed and not v.passed]
    if failing:
        alone: dict[Config, set[str]] = {}

        def fails_alone_for(name: str) -> Callable[[Config], bool]:
            def fails(config: Config) -> bool:
                if config not in alone:
                    alone[config] = {v.gradient.name for v in _backward_verdicts(
                        session, params_of_backward, config, options, teach=False)
                        if not v.passed}
                return name in alone[config]
            return fails

        for v in failing:
            changed, culprits = _culprits(lecture, hidden, fails_alone_for(v.gradient.name))
            v.message = _with_detail(describe_hard_coding(culprits, base=lecture, other=hidden,
                                                          changed=changed), v)
    return [v for v in verdicts if v.gradient.name in passed]


def _grade_training(session: SandboxSession, signature: tuple[str, ...], setup: Exercise4Setup,
                    options: GradingOptions) -> Verdict:
    gradient, config = EXERCISE4_TRAINING, setup.config
    steps = options.train_steps
    expected_params, expected_losses = _training_reference(config, steps, options.train_lr)
    outcome = session.request(
        {"op": "train", "steps": steps, "n": config.n, "lr": options.train_lr,
         "signature": list(signature)},
        {**setup.params, **batch_tensors(setup.batches[:steps])},
        seconds=session.limits.call_seconds * 3)
    if outcome.status != "ok":
        return _outcome_verdict(gradient, config, "isolated", outcome)
    losses = outcome.meta.get("losses")
    if not isinstance(losses, list) or len(losses) != steps or \
            not all(isinstance(x, (int, float)) for x in losses):
        return Verdict(gradient, config, "isolated", "error",
                       message="the training loop sent back no loss curve")
    tolerance = Tolerance(rtol=1e-4, atol_scale=1e-5)
    worst: tuple[str, Comparison] | None = None
    exact = True
    for name in PARAMETER_NAMES:
        actual = outcome.tensors.get(name)
        if actual is None:
            return Verdict(gradient, config, "isolated", "error",
                           message=f"the training loop sent back no {name}")
        # brief: the worst parameter's is the only comparison shown, in full (below)
        cmp = compare_gradient(actual, expected_params[name], tolerance=tolerance, brief=True)
        exact = exact and cmp.exact
        if worst is None or (cmp.maxdiff or 0) > (worst[1].maxdiff or 0) or cmp.status not in ("exact", "approx"):
            if worst is None or worst[1].status in ("exact", "approx"):
                worst = (name, cmp)
    loss_diff = max(abs(a - b) for a, b in zip(losses, expected_losses))
    assert worst is not None
    name, cmp = worst
    if cmp.status == "approx":
        cmp = compare_gradient(outcome.tensors[name], expected_params[name], tolerance=tolerance)
    ok = cmp.status in ("exact", "approx") and loss_diff <= 1e-4 * max(expected_losses)
    status = "exact" if exact and loss_diff == 0 else ("approx" if ok else "wrong")
    message = (f"after {steps} SGD steps (lr {options.train_lr:g}): loss {losses[-1]:.6f} vs "
               f"autograd's {expected_losses[-1]:.6f}; largest parameter difference "
               f"{'not finite' if cmp.maxdiff is None else format(cmp.maxdiff, '.3g')} in {name}")
    if status == "wrong" and cmp.message:
        message += f" ({cmp.message})"
    return _integrity_checked(
        Verdict(gradient, config, "isolated", status, cmp, message=message,
                actual=torch.tensor(losses), expected=torch.tensor(expected_losses)),
        session, outcome, options)


def collect_gradient_results(verdicts: list[Verdict], *, scoring_mode: str,
                             options: GradingOptions, lecture: Config,
                             hints: dict[str, str] | None = None
                             ) -> tuple[ExerciseResult, ...]:
    """Fold verdicts (configs x modes) into one GradientResult per gradient, per exercise."""
    by_gradient: dict[tuple[str, str], list[Verdict]] = {}
    for v in verdicts:
        by_gradient.setdefault((v.gradient.exercise, v.gradient.name), []).append(v)
    exercises = []
    for ex_name, gradients in EXERCISES.items():
        if ex_name not in options.exercises:
            continue
        results = []
        for gradient in gradients:
            vs = by_gradient.get((ex_name, gradient.name), [])
            results.append(_gradient_result(gradient, vs, scoring_mode, options, lecture,
                                            (hints or {}).get(gradient.name)))
        exercises.append(ExerciseResult(ex_name, sum(r.points for r in results),
                                        sum(r.max_points for r in results), tuple(results)))
    return tuple(exercises)


def _gradient_result(gradient: Gradient, vs: list[Verdict], scoring_mode: str,
                     options: GradingOptions, lecture: Config, hint: str | None) -> GradientResult:
    """Pass only if every config passes; exact or approximate as in the lecture config.

    The message of a gradient right in the lecture config but wrong elsewhere is the reason the
    grader found: a probe on the lecture config (the step itself is wrong) or a hidden config
    (a hard-coded size).
    """
    max_points = max_points_for(gradient, options)
    scoring = [v for v in vs if v.mode == scoring_mode] or vs
    if not scoring:
        return GradientResult(gradient.name, gradient.variable, "missing", False, False, None, 0.0,
                              max_points, message="not graded", forward=gradient.forward,
                              shape=gradient.shape)
    main = next((v for v in scoring if v.config == lecture and not v.probe), scoring[0])
    failing = [v for v in scoring if v is not main and not v.passed]
    cause = None
    if main.passed and failing:
        cause = next((v for v in failing if v.probe and v.config == lecture), failing[0])
    shown = cause or main
    status, message = shown.status, shown.message
    if cause is not None and not cause.probe and cause.config != main.config \
            and not (message or "").startswith("correct"):
        # not diagnosed by grade_hidden_configs (lecture style): name what changed at least
        changed = changed_dimensions(main.config, cause.config)
        message = _with_detail(describe_hard_coding((), base=main.config, other=cause.config,
                                                    changed=changed, tested=False), cause)
    hint_text, hint_key = shown.hint, shown.hint_key
    if hint_text is None and not (main.passed and cause is None):
        hint_text = hint
    cmp = main.comparison
    modes = []
    for v in vs:
        if v.config != main.config or v.probe:
            continue
        c = v.comparison
        modes.append(ModeVerdict(v.mode, v.status, bool(c and c.exact), bool(c and c.approx),
                                 bool(c and c.allclose), c.maxdiff if c else None,
                                 c.rel_error if c else None, c.ulps if c else None,
                                 _with_substitution(v), hint=v.hint, hint_key=v.hint_key,
                                 explanation=v.explanation))
    configs = tuple(ConfigVerdict(v.config.name, v.status,
                                  v.comparison.maxdiff if v.comparison else None, v.mode,
                                  v.message, probe=v.probe, label=v.config.label(),
                                  limit=v.limit)
                    for v in vs)
    return GradientResult(
        name=gradient.name, variable=gradient.variable, status=status,
        exact=bool(cmp and cmp.exact and status == "exact"),
        approx=status in ("exact", "approx"),
        maxdiff=cmp.maxdiff if cmp else None,
        points=points_for(gradient, status, options), max_points=max_points,
        message=message, hint=hint_text, hint_key=hint_key, configs=configs,
        allclose=bool(cmp and cmp.allclose), rel_error=cmp.rel_error if cmp else None,
        ulps=cmp.ulps if cmp else None, forward=gradient.forward, shape=gradient.shape,
        actual_shape=tuple(main.actual.shape) if main.actual is not None else None,
        expected_shape=tuple(main.expected.shape) if main.expected is not None else None,
        modes=tuple(modes), traceback=shown.traceback,
        explanation=main.explanation if status == "approx" else None,
        **_failure_pictures(status, shown, scoring))


def _failure_pictures(status: str, shown: Verdict, scoring: list[Verdict]) -> dict[str, Any]:
    """A failing gradient's mismatch summary and heatmap views (views.py), from the first verdict
    that failed with tensors to show: the one whose message is shown when it has them."""
    if status in ("exact", "approx"):
        return {}
    pictured = next((v for v in (shown, *scoring) if not v.passed
                     and v.actual is not None and v.expected is not None), None)
    if pictured is None:
        return {}
    return {**failure_fields(pictured.actual, pictured.expected, pictured.comparison),
            "views_from": f"{pictured.mode} mode, {pictured.config.label()}"
                          + (" (random upstream probe)" if pictured.probe else "")}


def _with_substitution(v: Verdict) -> str | None:
    if not v.substituted:
        return v.message
    note = (f"used autograd's {', '.join(v.substituted)} because yours could not be used")
    return f"{v.message}; {note}" if v.message else note
