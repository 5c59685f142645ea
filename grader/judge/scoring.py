"""Points, and the Result they add up to: what each gradient is worth under the assignment's
options, what it earns, and the first wrong step a student is pointed to."""

from __future__ import annotations

from typing import Sequence

from .. import __version__
from ..lecture.catalog import EXERCISES, Gradient
from ..output.results import ExerciseResult, IntegrityFlag, Result
from .grading import GradingOptions, Verdict
from .request import GradeRequest

__all__ = ["PointsTable", "error_result", "first_failing_in_chain", "first_wrong",
           "graded_result", "max_points_for", "points_for", "points_table"]

# (exercise, gradient, max points), for every gradient that counts, in the report's order
PointsTable = tuple[tuple[str, Gradient, float], ...]

# the verdicts of an answer that is there and wrong (not missing)
_WRONG = ("wrong", "shape", "nonfinite", "error", "integrity")


def max_points_for(gradient: Gradient, options: GradingOptions) -> float:
    """``options.points`` by "ex4.dC" (exercise-qualified: ex1 and ex4 share names) or "dC"."""
    qualified = f"{gradient.exercise}.{gradient.name}"
    return options.points.get(qualified, options.points.get(gradient.name, gradient.points))


def points_for(gradient: Gradient, status: str, options: GradingOptions) -> float:
    """Full points for exact, and for approximate unless the gradient must be exact."""
    max_points = max_points_for(gradient, options)
    if status == "exact" or (status == "approx" and gradient.name not in options.exact_required):
        return max_points
    return 0.0


def points_table(options: GradingOptions) -> PointsTable:
    """Every gradient of the exercises that count, with its points: the gradebook's columns."""
    return tuple((ex, g, max_points_for(g, options)) for ex, gs in EXERCISES.items()
                 if ex in options.exercises for g in gs)


def error_result(name: str, message: str, *, status: str = "error",
                 request: GradeRequest = GradeRequest(), loss: float | None = None) -> Result:
    """The result of a submission that cannot be graded at all: zero points and the reason."""
    options = request.options
    max_score = sum(max_points_for(g, options) for ex in options.exercises
                    for g in EXERCISES.get(ex, ()))
    return Result(submission=name, status=status, message=message, score=0.0,
                  max_score=max_score, mode="isolated", loss=loss, grader_version=__version__)


def graded_result(name: str, exercises: tuple[ExerciseResult, ...], *, request: GradeRequest,
                  mode: str, loss: float, notes: Sequence[str], first_wrong: str | None = None,
                  output: str = "", integrity: tuple[IntegrityFlag, ...] = ()) -> Result:
    """The result of a graded submission: its exercises' points, on the request's configs."""
    return Result(
        submission=name, status="graded", message=None,
        score=sum(e.score for e in exercises), max_score=sum(e.max_score for e in exercises),
        mode=mode, loss=loss, exercises=exercises, first_wrong=first_wrong, notes=tuple(notes),
        configs=tuple(c.label() for c in (request.config, *request.hidden_configs())),
        grader_version=__version__, output=output, integrity=integrity)


def first_wrong(exercises: tuple[ExerciseResult, ...], verdicts: Sequence[Verdict]
                ) -> str | None:
    """Stubs: the first gradient, in the exercises' order, that an isolated-mode verdict (in
    any config) found wrong. Isolated mode grades each step on its own, so this is where the
    student's first mistake is."""
    wrong = {(v.gradient.exercise, v.gradient.name) for v in verdicts
             if v.mode == "isolated" and v.status in _WRONG}
    return next((g.name for ex in exercises for g in ex.gradients if (ex.name, g.name) in wrong),
                None)


def first_failing_in_chain(exercises: tuple[ExerciseResult, ...]) -> str | None:
    """Lecture-style code (chained mode only): the first exercise-1 gradient that fails. The
    ones after it are computed from the student's own, so they may fail because of it."""
    return next((g.name for ex in exercises if ex.name == "ex1" for g in ex.gradients
                 if g.status in _WRONG), None)
