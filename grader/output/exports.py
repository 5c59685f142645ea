"""Exports of results for course platforms: a gradebook CSV and Gradescope's results.json.

Gradescope's format is its "Autograder Specifications" (gradescope-autograders.readthedocs.io,
/en/latest/specs/): top level ``score``, ``execution_time``, ``output``, ``output_format``,
``visibility``, ``stdout_visibility``, ``extra_data``, ``tests``; each test ``score``,
``max_score``, ``status`` ("passed" | "failed"), ``name``, ``number``, ``output``,
``output_format``, ``tags``, ``visibility``, ``extra_data``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Sequence

from ..lecture.catalog import Gradient
from .control_chars import escape_control_chars
from .formatting import EXERCISE_NAMES, REVIEW_WHY, export_number, withheld_text
from .results import GradientResult, Result

__all__ = ["GradebookRow", "Points", "gradebook_columns", "gradescope_results", "render_gradebook"]

# (exercise, gradient, max points) for every gradient that counts, in the report's order: what
# grader.judge.scoring.points_table(options) gives
Points = Sequence[tuple[str, Gradient, float]]
_MAX_OUTPUT = 20_000          # characters of one Gradescope "output"
_MAX_CELL = 500               # characters of one gradebook text cell


@dataclass(frozen=True)
class GradebookRow:
    """One student: their result, or ``None`` while not graded (an interrupted batch)."""

    student: str
    submission: str
    result: Result | None
    report: str = ""


def _text(value: str | None) -> str:
    """A text cell: capped, on one line, its control characters shown, and never read as a
    formula by a spreadsheet."""
    text = escape_control_chars(" ".join((value or "").split()))   # `cat gradebook.csv`
    if len(text) > _MAX_CELL:
        text = text[:_MAX_CELL - 3] + "..."
    if text[:1] in ("=", "+", "-", "@"):
        text = "'" + text
    return text


def gradebook_columns(points: Points) -> list[str]:
    """The gradebook's header: a column per exercise and per gradient of ``points``."""
    exercises = list(dict.fromkeys(ex for ex, _, _ in points))
    gradient_columns = [f"{ex}.{g.name}" for ex, g, _ in points]
    return (["student", "status", "score", "max_score", "review"] + exercises
            + gradient_columns + ["first_wrong", "problems", "submission", "report"])


def _problems(result: Result) -> str:
    """What went wrong beyond wrong answers: errors, time limits, crashes, integrity flags."""
    parts = [f"{f.kind}: {f.detail}" for f in result.integrity]
    if result.status not in ("graded", "review"):
        return "; ".join([result.message or result.status, *parts])
    for ex in result.exercises:
        for g in ex.gradients:
            if g.status in ("error", "integrity"):
                parts.append(f"{ex.name} {g.name}: {g.message or g.status}")
    return "; ".join(parts)


def _review_cell(result: Result) -> str:
    """Why the score is withheld (status "review"), with the score it would have had."""
    if result.status != "review":
        return ""
    withheld = "" if result.withheld_score is None else \
        f"withheld {export_number(result.withheld_score)}: "
    return withheld + "; ".join(result.review)


def render_gradebook(rows: Sequence[GradebookRow], *, points: Points) -> str:
    """CSV text: one row per student, a column per exercise and per gradient (points), total."""
    columns = gradebook_columns(points)
    max_score = sum(max_points for _, _, max_points in points)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        r = row.result
        cells: dict[str, str] = {"student": _text(row.student), "submission": _text(row.submission),
                                 "report": row.report, "max_score": export_number(max_score)}
        if r is None:
            cells.update(status="pending", problems="not graded yet (the batch was interrupted)")
        else:
            cells.update(status=r.status, score=export_number(r.score),
                         max_score=export_number(r.max_score),
                         first_wrong=r.first_wrong or "", problems=_text(_problems(r)),
                         review=_text(_review_cell(r)))
            for ex in r.exercises:
                cells[ex.name] = export_number(ex.score)
                for g in ex.gradients:
                    cells[f"{ex.name}.{g.name}"] = export_number(g.points)
        writer.writerow([cells.get(c, "") for c in columns])
    return buffer.getvalue()


# -- Gradescope ------------------------------------------------------------------------------

def _cap(text: str) -> str:
    return text if len(text) <= _MAX_OUTPUT else text[:_MAX_OUTPUT] + "\n... (cut)"


def _gradient_output(g: GradientResult) -> str:
    lines = [f"status: {g.status}" + (f"   maxdiff: {g.maxdiff:.3g}" if g.maxdiff is not None
                                       else "")]
    if g.forward:
        lines.append(f"forward: {g.forward}")
    for label, value in (("", g.message), ("hint: ", g.hint), ("why approximate: ", g.explanation)):
        if value:
            lines.append(f"{label}{value}")
    failing = [c for c in g.configs if c.status not in ("exact", "approx")]
    for c in failing[:5]:
        lines.append(f"{c.mode} mode, config {c.config}: {c.status}"
                     + (f" ({c.message})" if c.message else ""))
    if g.traceback:
        lines.append(g.traceback.rstrip())
    return _cap("\n".join(lines))


def _review_output(result: Result) -> str:
    withheld = withheld_text(result.withheld_score, result.max_score)
    return "\n".join([f"Held for review: the score{withheld} is withheld until an instructor "
                      f"has looked at this submission. It {REVIEW_WHY}:",
                      *(f"- {reason}" for reason in result.review)])


def _summary_output(result: Result) -> str:
    lines = [f"score: {export_number(result.score)} / {export_number(result.max_score)}   "
             f"status: {result.status}"]
    if result.status == "review":
        lines.append(_review_output(result))
    if result.message:
        lines.append(result.message)
    if result.first_wrong:
        lines.append(f"first wrong step (isolated mode): {result.first_wrong}")
    for flag in result.integrity:
        lines.append(f"integrity: {flag.kind}: {flag.detail}")
    lines += list(result.notes)
    if result.output.strip():
        lines += ["", "what your code printed:", result.output.rstrip()]
    return _cap("\n".join(lines))


def gradescope_results(result: Result, *, points: Points, settings: Any = None,
                       execution_time: float | None = None) -> dict[str, Any]:
    """One result in Gradescope's results.json format: a test per gradient.

    A submission that could not be graded still lists every gradient (score 0, the reason), so
    Gradescope shows the same maximum for everyone.
    """
    visibility = getattr(settings, "visibility", "visible")
    stdout_visibility = getattr(settings, "stdout_visibility", "hidden")
    graded = {(ex.name, g.name): g for ex in result.exercises for g in ex.gradients}
    tests: list[dict[str, Any]] = []
    numbers: dict[str, int] = {}
    for ex, gradient, max_points in points:
        numbers[ex] = numbers.get(ex, 0) + 1
        g = graded.get((ex, gradient.name))
        test: dict[str, Any] = {
            "name": f"{EXERCISE_NAMES[ex]}: {gradient.name}",
            "number": f"{ex[2:]}.{numbers[ex]}",
            "max_score": float(g.max_points if g else max_points),
            "output_format": "text",
            "tags": [ex],
        }
        if g is None:
            test.update(score=0.0, status="failed",
                        output=f"not graded: {result.message or result.status}")
        elif result.status == "review":
            test.update(score=0.0, status="failed", output=_cap(
                f"withheld pending review ({export_number(g.points)} points before review)\n"
                + _gradient_output(g)))
        else:
            test.update(score=float(g.points), status="passed" if g.passed else "failed",
                        output=_gradient_output(g))
        tests.append(test)
    if result.status == "review":         # first, where a student and a TA look
        tests.insert(0, {"name": "Integrity review", "number": "0", "score": 0.0,
                         "max_score": 0.0, "status": "failed", "output_format": "text",
                         "tags": ["review"], "output": _cap(_review_output(result))})
    data: dict[str, Any] = {
        "score": float(result.score),
        "output": _summary_output(result),
        "output_format": "text",
        "visibility": visibility,
        "stdout_visibility": stdout_visibility,
        "extra_data": {"schema": result.schema, "status": result.status, "mode": result.mode,
                       "first_wrong": result.first_wrong, "grader_version": result.grader_version,
                       "review": list(result.review), "withheld_score": result.withheld_score},
        "tests": tests,
    }
    if execution_time is not None:
        data["execution_time"] = int(round(execution_time))
    return data
