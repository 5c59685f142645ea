"""How the outputs write numbers and name the exercises.

Each output keeps its own way with numbers, as its readers know it: the terminal table and
check()'s table give a difference two significant digits, the HTML pages three, the gradebook and
Gradescope's text up to six.
"""

from __future__ import annotations

import math

__all__ = ["EXERCISE_NAMES", "EXERCISE_TITLES", "REVIEW_WHY", "export_number", "page_number",
           "page_points", "table_maxdiff", "withheld_text"]

# why a submission is held for review, after "it" (the terminal and Gradescope's text)
REVIEW_WHY = "does something no answer to the exercise needs, which could hide autograd from " \
             "the grader"

# headings of the terminal table, check()'s table and the report
EXERCISE_TITLES = {"ex1": "Exercise 1: backprop through every step",
                   "ex2": "Exercise 2: cross-entropy backward in one expression",
                   "ex3": "Exercise 3: batch-norm backward in one expression",
                   "ex4": "Exercise 4: train with your own backward()"}
# short names, before a gradient's name: Gradescope's tests ("Exercise 1: dlogprobs")
EXERCISE_NAMES = {"ex1": "Exercise 1", "ex2": "Exercise 2 (fused cross-entropy)",
                  "ex3": "Exercise 3 (fused batch norm)", "ex4": "Exercise 4 (backward + training)"}


def table_maxdiff(value: float | None) -> str:
    """A difference in the terminal table and check()'s: "-" when none, "0.0", else 2
    significant digits."""
    return "-" if value is None else f"{value:.2g}" if value else "0.0"


def page_number(x: float | None) -> str:
    """A number on the HTML pages: "–" when none, nan / inf as such, "0", else 3 significant
    digits."""
    if x is None:
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.3g}"


def page_points(x: float) -> str:
    """Points on the HTML pages: 26, 0.5, 33.25."""
    return "%g" % (x,)


def export_number(x: float | None) -> str:
    """A number in the gradebook CSV and Gradescope's text: "" when none, else rounded to 6
    decimals and written with at most 6 significant digits, no trailing zeros."""
    if x is None:
        return ""
    return f"{round(float(x), 6):g}"


def withheld_text(withheld: float | None, max_score: float) -> str:
    """`` (34 / 34)``: the score a submission held for review would have had; "" if unknown."""
    if withheld is None:
        return ""
    return f" ({export_number(withheld)} / {export_number(max_score)})"
