"""Verdicts (configs x modes, probes) folded into one GradientResult per gradient, per exercise.

A gradient passes only if every config passes, and is exact or approximate as in the lecture
config. Its points come from the scoring mode (isolated for stubs, chained for lecture-style
code); the other mode is shown beside it.
"""

from __future__ import annotations

from typing import Any

from ..lecture.catalog import EXERCISES, Gradient
from ..lecture.model import Config
from ..output.results import PASSING, ConfigVerdict, ExerciseResult, GradientResult, ModeVerdict
from .grading import GradingOptions, Verdict
from .hidden import hard_coding_message
from .scoring import max_points_for, points_for
from .views import failure_fields

__all__ = ["collect_gradient_results"]


def collect_gradient_results(verdicts: list[Verdict], *, scoring_mode: str,
                             options: GradingOptions, lecture: Config
                             ) -> tuple[ExerciseResult, ...]:
    """Fold verdicts (configs x modes) into one GradientResult per gradient, per exercise."""
    by_gradient: dict[tuple[str, str], list[Verdict]] = {}
    for v in verdicts:
        by_gradient.setdefault((v.gradient.exercise, v.gradient.name), []).append(v)
    exercises = []
    for ex_name, gradients in EXERCISES.items():
        if ex_name not in options.exercises:
            continue
        results = tuple(_gradient_result(gradient, by_gradient.get((ex_name, gradient.name), []),
                                         scoring_mode, options, lecture)
                        for gradient in gradients)
        exercises.append(ExerciseResult(ex_name, sum(r.points for r in results),
                                        sum(r.max_points for r in results), results))
    return tuple(exercises)


def _gradient_result(gradient: Gradient, vs: list[Verdict], scoring_mode: str,
                     options: GradingOptions, lecture: Config) -> GradientResult:
    """Pass only if every config passes; exact or approximate as in the lecture config.

    The message of a gradient right in the lecture config but wrong elsewhere is the reason the
    grader found: a probe on the lecture config (the step itself is wrong) or a hidden config
    (a hard-coded size).
    """
    max_points = max_points_for(gradient, options)
    scoring = [v for v in vs if v.mode == scoring_mode] or vs
    if not scoring:
        return GradientResult(gradient.name, gradient.variable, "missing", False, False, None,
                              0.0, max_points, message="not graded", forward=gradient.forward,
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
        message = hard_coding_message(cause, base=main.config, tested=False)
    cmp = main.comparison
    return GradientResult(
        name=gradient.name, variable=gradient.variable, status=status,
        exact=bool(cmp and cmp.exact and status == "exact"),
        approx=status in PASSING,
        maxdiff=cmp.maxdiff if cmp else None,
        points=points_for(gradient, status, options), max_points=max_points,
        message=message, hint=shown.hint, hint_key=shown.hint_key,
        configs=tuple(_config_verdict(v) for v in vs),
        allclose=bool(cmp and cmp.allclose), rel_error=cmp.rel_error if cmp else None,
        ulps=cmp.ulps if cmp else None, forward=gradient.forward, shape=gradient.shape,
        actual_shape=tuple(main.actual.shape) if main.actual is not None else None,
        expected_shape=tuple(main.expected.shape) if main.expected is not None else None,
        modes=tuple(_mode_verdict(v) for v in vs if v.config == main.config and not v.probe),
        traceback=shown.traceback,
        explanation=main.explanation if status == "approx" else None,
        **_failure_pictures(status, shown, scoring))


def _mode_verdict(v: Verdict) -> ModeVerdict:
    c = v.comparison
    return ModeVerdict(v.mode, v.status, bool(c and c.exact), bool(c and c.approx),
                       bool(c and c.allclose), c.maxdiff if c else None,
                       c.rel_error if c else None, c.ulps if c else None,
                       _with_substitution(v), hint=v.hint, hint_key=v.hint_key,
                       explanation=v.explanation)


def _config_verdict(v: Verdict) -> ConfigVerdict:
    return ConfigVerdict(v.config.name, v.status, v.comparison.maxdiff if v.comparison else None,
                         v.mode, v.message, probe=v.probe, label=v.config.label(),
                         limit=v.limit)


def _with_substitution(v: Verdict) -> str | None:
    if not v.substituted:
        return v.message
    note = f"used autograd's {', '.join(v.substituted)} because yours could not be used"
    return f"{v.message}; {note}" if v.message else note


def _failure_pictures(status: str, shown: Verdict, scoring: list[Verdict]) -> dict[str, Any]:
    """A failing gradient's mismatch summary and heatmap views (grader.judge.views), from the
    first verdict that failed with tensors to show: the one whose message is shown when it has
    them."""
    if status in PASSING:
        return {}
    pictured = next((v for v in (shown, *scoring) if not v.passed
                     and v.actual is not None and v.expected is not None), None)
    if pictured is None:
        return {}
    return {**failure_fields(pictured.actual, pictured.expected, pictured.comparison),
            "views_from": f"{pictured.mode} mode, {pictured.config.label()}"
                          + (" (random upstream probe)" if pictured.probe else "")}
