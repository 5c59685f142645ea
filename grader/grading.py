"""The grading engine: feed each stub its inputs in the sandbox, compare with autograd.

Isolated mode feeds autograd's upstream gradients, so every local step is graded on its own;
chained mode feeds the student's own, as the notebook does. Points come from isolated mode
(stub format) in every config.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .catalog import (
    EXERCISE4_GRADIENTS,
    EXERCISE4_INPUT_NAMES,
    EXERCISE4_TRAINING,
    EXERCISES,
    GRADIENTS,
    INPUT_NAMES,
    Gradient,
)
from .compare import Comparison, Tolerance, compare_gradient
from .integrity import autograd_events, autograd_message
from .lecture import (
    PARAMETER_NAMES,
    Config,
    LectureState,
    build_dataset,
    fused_forward,
    init_parameters,
    sample_batches,
    train_with_autograd,
)
from .results import ConfigVerdict, ExerciseResult, GradientResult, ModeVerdict
from .sandbox import CallOutcome, SandboxSession
from .training import batch_tensors
from .views import failure_fields

__all__ = ["GradingOptions", "Verdict", "grade_exercise4", "grade_stub_gradients",
           "collect_gradient_results", "explain_inexact", "verdict_from_tensor"]

MODES = ("isolated", "chained")


@dataclass(frozen=True)
class GradingOptions:
    modes: tuple[str, ...] = MODES
    tolerance: Tolerance = field(default_factory=Tolerance)
    train_steps: int = 10
    train_lr: float = 0.1
    exact_required: frozenset[str] = frozenset()
    points: dict[str, float] = field(default_factory=dict)   # per-gradient override
    exercises: tuple[str, ...] = ("ex1", "ex2", "ex3", "ex4")
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
    mags = [float(state.grads[u].abs().max()) for u in gradient.upstream if u in state.grads]
    return max(mags, default=0.0)


def explain_inexact(gradient: Gradient, inputs: dict[str, Any], actual: torch.Tensor,
                    expected: torch.Tensor) -> str | None:
    """Why a correct answer is approximate rather than exact, when the grader can tell."""
    if gradient.name == "dhpreact" and {"dh", "h"} <= inputs.keys():
        h, dh = inputs["h"], inputs["dh"]
        if torch.equal(actual, (1.0 - h**2) * dh) or torch.equal(actual, dh * (1 - h * h)):
            return ("(1 - h**2) * dh is the right formula; current PyTorch's tanh backward rounds "
                    "differently (it is not computed in the same order), so the result differs from "
                    "autograd's in the last bits. Approximate earns full points.")
    return None


UPSTREAM_INEXACT = ("an upstream gradient you computed was already approximate, and that "
                    "difference carries through this step")


def verdict_from_tensor(gradient: Gradient, state: LectureState, actual: torch.Tensor,
                        options: GradingOptions, *, mode: str = "chained",
                        inputs: dict[str, Any] | None = None,
                        upstream_inexact: bool = False) -> Verdict:
    """A gradient the student computed by other means (lecture-style code) vs autograd's."""
    expected = state.grads[f"d{gradient.variable}"]
    comparison = _compare(gradient, state, actual, expected, options)
    explanation = None
    if comparison.status == "approx":
        explanation = explain_inexact(gradient, inputs or {}, actual, expected)
        if explanation is None and upstream_inexact:
            explanation = UPSTREAM_INEXACT
    return Verdict(gradient, state.config, mode, comparison.status, comparison,
                   message=comparison.message, actual=actual, expected=expected,
                   explanation=explanation)


def _compare(gradient: Gradient, state: LectureState, actual: torch.Tensor,
             expected: torch.Tensor, options: GradingOptions) -> Comparison:
    return compare_gradient(actual, expected, scale=_scale(gradient, state),
                            tolerance=options.tolerance)


def _outcome_verdict(gradient: Gradient, config: Config, mode: str,
                     outcome: CallOutcome) -> Verdict:
    status = "missing" if outcome.status == "missing" else "error"
    message = outcome.message
    if outcome.status == "timeout":
        message = f"{gradient.name}() {outcome.message}"
    return Verdict(gradient, config, mode, status, message=message, traceback=outcome.traceback)


def _integrity_checked(verdict: Verdict, session: SandboxSession, outcome: CallOutcome,
                       options: GradingOptions) -> Verdict:
    """Under the "zero" policy, a gradient whose call (or the file's load) used autograd gets
    status "integrity" and no points; see grader.integrity."""
    if options.integrity_policy != "zero":
        return verdict
    if autograd_events(outcome.integrity):
        return replace(verdict, status="integrity", message=autograd_message(outcome.integrity))
    if autograd_events(session.load_integrity):
        return replace(verdict, status="integrity",
                       message=autograd_message(session.load_integrity, at_load=True))
    return verdict


def grade_stub_gradients(session: SandboxSession, functions: dict[str, tuple[str, ...]],
                         state: LectureState, options: GradingOptions,
                         gradients: tuple[Gradient, ...] = GRADIENTS) -> list[Verdict]:
    """Every exercise-1..3 stub in one config, in both modes."""
    verdicts: list[Verdict] = []
    base: dict[str, Any] = {**state.forward, **state.params, "n": state.config.n,
                            "Xb": state.Xb, "Yb": state.Yb}
    own: dict[str, torch.Tensor] = {}          # the student's chained gradients so far
    cache: dict[tuple[str, str], tuple[dict[str, Any], CallOutcome]] = {}
    for gradient in gradients:
        if gradient.exercise not in options.exercises:
            continue
        params = functions.get(gradient.name)
        expected = state.grads[f"d{gradient.variable}"]
        for mode in options.modes:
            if params is None:
                verdicts.append(Verdict(gradient, state.config, mode, "missing",
                                        message=f"no function {gradient.name}() in your file"))
                continue
            allowed = INPUT_NAMES | set(gradient.allowed_gradients)
            problem = _check_signature(gradient, params, frozenset(allowed))
            if problem:
                verdicts.append(Verdict(gradient, state.config, mode, "error",
                                        message=f"{gradient.name}() {problem}"))
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
            outcome = _reuse_or_call(session, gradient.name, inputs, cache)
            if outcome.status != "ok":
                verdicts.append(_outcome_verdict(gradient, state.config, mode, outcome))
                continue
            actual = outcome.tensors["result"]
            comparison = _compare(gradient, state, actual, expected, options)
            if mode == "chained" and comparison.status in ("exact", "approx", "wrong") \
                    and actual.shape == expected.shape:
                own[gradient.name] = actual
            explanation = None
            if comparison.status == "approx":
                explanation = explain_inexact(gradient, inputs, actual, expected)
                if explanation is None and mode == "chained" and any(
                        not torch.equal(own.get(p, state.grads[p]), state.grads[p])
                        for p in params if p in gradient.allowed_gradients):
                    explanation = UPSTREAM_INEXACT
            verdicts.append(_integrity_checked(
                Verdict(gradient, state.config, mode, comparison.status, comparison,
                        message=comparison.message, actual=actual, expected=expected,
                        explanation=explanation, substituted=tuple(substituted)),
                session, outcome, options))
    return verdicts


def _reuse_or_call(session: SandboxSession, name: str, inputs: dict[str, Any],
                   cache: dict[tuple[str, str], tuple[dict[str, Any], CallOutcome]]
                   ) -> CallOutcome:
    """Chained inputs equal to isolated ones (an exact upstream) need no second call."""
    key = (name, "any")
    previous = cache.get(key)
    if previous is not None:
        old_inputs, outcome = previous
        if old_inputs.keys() == inputs.keys() and all(
                (torch.equal(v, inputs[k]) if isinstance(v, torch.Tensor) else v == inputs[k])
                for k, v in old_inputs.items()):
            return outcome
    outcome = session.call(name, inputs)
    cache[key] = (inputs, outcome)
    return outcome


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


def grade_exercise4(session: SandboxSession, params_of_backward: tuple[str, ...] | None,
                    config: Config, options: GradingOptions) -> list[Verdict]:
    """backward(): its 7 gradients at step 0, then K steps of SGD with it vs autograd's."""
    setup = exercise4_setup(config, options.train_steps)
    targets = (*EXERCISE4_GRADIENTS, EXERCISE4_TRAINING)
    if params_of_backward is None:
        return [Verdict(g, config, "isolated", "missing",
                        message="no function backward() in your file") for g in targets]
    allowed = EXERCISE4_INPUT_NAMES
    bad = [p for p in params_of_backward if p not in allowed]
    if bad:
        message = (f"backward() asks for '{bad[0]}', which is not one of the training loop's tensors "
                   f"({', '.join(sorted(allowed))})")
        return [Verdict(g, config, "isolated", "error", message=message) for g in targets]
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
    outcome = session.call("backward", {p: pool[p] for p in params_of_backward}, returns="list")
    verdicts: list[Verdict] = []
    for i, gradient in enumerate(EXERCISE4_GRADIENTS):
        exp = expected[gradient.name]
        if outcome.status != "ok":
            verdicts.append(_outcome_verdict(gradient, config, "isolated", outcome))
            continue
        if str(i) not in outcome.tensors:
            verdicts.append(Verdict(gradient, config, "isolated", "error",
                                    message=f"backward() returned {len(outcome.tensors)} tensors, "
                                            "expected 7: [dC, dW1, db1, dW2, db2, dbngain, dbnbias]"))
            continue
        actual = outcome.tensors[str(i)]
        cmp = compare_gradient(actual, exp, scale=scales[gradient.name],
                               tolerance=options.tolerance)
        verdicts.append(_integrity_checked(
            Verdict(gradient, config, "isolated", cmp.status, cmp, message=cmp.message,
                    actual=actual, expected=exp), session, outcome, options))
    verdicts.append(_grade_training(session, params_of_backward, setup, options))
    return verdicts


def _grade_training(session: SandboxSession, signature: tuple[str, ...], setup: Exercise4Setup,
                    options: GradingOptions) -> Verdict:
    gradient, config = EXERCISE4_TRAINING, setup.config
    steps = options.train_steps
    expected_params, expected_losses = train_with_autograd(setup.params, setup.batches[:steps],
                                                           lr=options.train_lr)
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
        cmp = compare_gradient(actual, expected_params[name], tolerance=tolerance)
        exact = exact and cmp.exact
        if worst is None or (cmp.maxdiff or 0) > (worst[1].maxdiff or 0) or cmp.status not in ("exact", "approx"):
            if worst is None or worst[1].status in ("exact", "approx"):
                worst = (name, cmp)
    loss_diff = max(abs(a - b) for a, b in zip(losses, expected_losses))
    assert worst is not None
    name, cmp = worst
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


_RANK = {"exact": 0, "approx": 1, "wrong": 2, "nonfinite": 3, "shape": 4, "integrity": 5,
         "error": 6, "missing": 7}


def _points_for(gradient: Gradient, status: str, options: GradingOptions) -> float:
    max_points = options.points.get(gradient.name, gradient.points)
    if status == "exact" or (status == "approx" and gradient.name not in options.exact_required):
        return max_points
    return 0.0


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
    max_points = options.points.get(gradient.name, gradient.points)
    scoring = [v for v in vs if v.mode == scoring_mode] or vs
    if not scoring:
        return GradientResult(gradient.name, gradient.variable, "missing", False, False, None, 0.0,
                              max_points, message="not graded", forward=gradient.forward,
                              shape=gradient.shape)
    main = next((v for v in scoring if v.config == lecture), scoring[0])
    worst = max(scoring, key=lambda v: _RANK.get(v.status, 9))
    status = worst.status if _RANK.get(worst.status, 9) > _RANK.get(main.status, 9) else main.status
    message = main.message
    if worst is not main and _RANK.get(worst.status, 9) > 1 and main.status in ("exact", "approx"):
        message = (f"correct in the {main.config.name} config but {worst.status} in "
                   f"{worst.config.label()}" + (f": {worst.message}" if worst.message else ""))
    cmp = main.comparison
    modes = []
    for v in vs:
        if v.config != main.config:
            continue
        c = v.comparison
        modes.append(ModeVerdict(v.mode, v.status, bool(c and c.exact), bool(c and c.approx),
                                 bool(c and c.allclose), c.maxdiff if c else None,
                                 c.rel_error if c else None, c.ulps if c else None,
                                 _with_substitution(v)))
    configs = tuple(ConfigVerdict(v.config.name, v.status,
                                  v.comparison.maxdiff if v.comparison else None, v.mode,
                                  v.message) for v in vs)
    return GradientResult(
        name=gradient.name, variable=gradient.variable, status=status,
        exact=bool(cmp and cmp.exact and status == "exact"),
        approx=status in ("exact", "approx"),
        maxdiff=cmp.maxdiff if cmp else None,
        points=_points_for(gradient, status, options), max_points=max_points,
        message=message, hint=hint, configs=configs,
        allclose=bool(cmp and cmp.allclose), rel_error=cmp.rel_error if cmp else None,
        ulps=cmp.ulps if cmp else None, forward=gradient.forward, shape=gradient.shape,
        actual_shape=tuple(main.actual.shape) if main.actual is not None else None,
        expected_shape=tuple(main.expected.shape) if main.expected is not None else None,
        modes=tuple(modes), traceback=main.traceback, explanation=main.explanation,
        **_failure_pictures(status, main, scoring))


def _failure_pictures(status: str, main: Verdict, scoring: list[Verdict]) -> dict[str, Any]:
    """A failing gradient's mismatch summary and heatmap views (views.py), from the first verdict
    that failed with tensors to show: the lecture config when it failed there."""
    if status in ("exact", "approx"):
        return {}
    shown = next((v for v in (main, *scoring) if v.status not in ("exact", "approx")
                  and v.actual is not None and v.expected is not None), None)
    if shown is None:
        return {}
    return {**failure_fields(shown.actual, shown.expected, shown.comparison),
            "views_from": f"{shown.mode} mode, {shown.config.label()}"}


def _with_substitution(v: Verdict) -> str | None:
    if not v.substituted:
        return v.message
    note = (f"used autograd's {', '.join(v.substituted)} because yours could not be used")
    return f"{v.message}; {note}" if v.message else note
