"""Points: what each gradient is worth under the assignment's options, and what it earns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lecture.catalog import EXERCISES, Gradient

if TYPE_CHECKING:
    from .grading import GradingOptions

__all__ = ["PointsTable", "max_points_for", "points_for", "points_table"]

# (exercise, gradient, max points), for every gradient that counts, in the report's order
PointsTable = tuple[tuple[str, Gradient, float], ...]


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
