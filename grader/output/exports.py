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

from ..lecture.catalog import EXERCISES, Gradient
from ..judge.grading import GradingOptions
from ..judge.scoring import max_points_for
from .results import GradientResult, Result

__all__ = ["GradebookRow", "gradebook_columns", "gradescope_results", "render_gradebook"]

_EXERCISE_TITLES = {"ex1": "Exercise 1", "ex2": "Exercise 2 (fused cross-entropy)",
                    "ex3": "Exercise 3 (fused batch norm)", "ex4": "Exercise 4 (backward + training)"}
_MAX_OUTPUT = 20_000          # characters of one Gradescope "output"
_MAX_CELL = 500               # characters of one gradebook text cell


@dataclass(frozen=True)
class GradebookRow:
    """One student: their result, or ``None`` while not graded (an interrupted batch)."""

    student: str
    submission: str
    result: Result | None
    report: str = ""


def _num(x: float | None) -> str:
    if x is None:
        return ""
    return f"{round(float(x), 6):g}"


def _text(value: str | None) -> str:
    """A text cell: capped, on one line, and never read as a formula by a spreadsheet."""
    text = " ".join((value or "").split())
    if len(text) > _MAX_CELL:
        text = text[:_MAX_CELL - 3] + "..."
    if text[:1] in ("=", "+", "-", "@"):
        text = "'" + text
    return text


def _counted(options: GradingOptions) -> list[tuple[str, Gradient]]:
    return [(ex, g) for ex, gs in EXERCISES.items() if ex in options.exercises for g in gs]


def gradebook_columns(options: GradingOptions) -> list[str]:
    gradient_columns = [f"{ex}.{g.name}" for ex, g in _counted(options)]
    return (["student", "status", "score", "max_score"]
            + [ex for ex in EXERCISES if ex in options.exercises]
            + gradient_columns + ["first_wrong", "problems", "submission", "report"])


def _problems(result: Result) -> str:
    """What went wrong beyond wrong answers: errors, time limits, crashes, integrity flags."""
    if result.status != "graded":
        return result.message or result.status
    parts = [f"{f.kind}: {f.detail}" for f in result.integrity]
    for ex in result.exercises:
        for g in ex.gradients:
            if g.status in ("error", "integrity"):
                parts.append(f"{ex.name} {g.name}: {g.message or g.status}")
    return "; ".join(parts)


def render_gradebook(rows: Sequence[GradebookRow], *, options: GradingOptions) -> str:
    """CSV text: one row per student, a column per exercise and per gradient (points), total."""
    columns = gradebook_columns(options)
    counted = _counted(options)
    max_score = sum(max_points_for(g, options) for _, g in counted)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        r = row.result
        cells: dict[str, str] = {"student": _text(row.student), "submission": _text(row.submission),
                                 "report": row.report, "max_score": _num(max_score)}
        if r is None:
            cells.update(status="pending", problems="not graded yet (the batch was interrupted)")
        else:
            cells.update(status=r.status, score=_num(r.score), max_score=_num(r.max_score),
                         first_wrong=r.first_wrong or "", problems=_text(_problems(r)))
            for ex in r.exercises:
                cells[ex.name] = _num(ex.score)
                for g in ex.gradients:
                    cells[f"{ex.name}.{g.name}"] = _num(g.points)
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


def _summary_output(result: Result) -> str:
    lines = [f"score: {_num(result.score)} / {_num(result.max_score)}   status: {result.status}"]
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


def gradescope_results(result: Result, *, options: GradingOptions, settings: Any = None,
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
    for ex, gradient in _counted(options):
        numbers[ex] = numbers.get(ex, 0) + 1
        g = graded.get((ex, gradient.name))
        test: dict[str, Any] = {
            "name": f"{_EXERCISE_TITLES[ex]}: {gradient.name}",
            "number": f"{ex[2:]}.{numbers[ex]}",
            "max_score": float(g.max_points if g else max_points_for(gradient, options)),
            "output_format": "text",
            "tags": [ex],
        }
        if g is None:
            test.update(score=0.0, status="failed",
                        output=f"not graded: {result.message or result.status}")
        else:
            test.update(score=float(g.points), status="passed" if g.passed else "failed",
                        output=_gradient_output(g))
        tests.append(test)
    data: dict[str, Any] = {
        "score": float(result.score),
        "output": _summary_output(result),
        "output_format": "text",
        "visibility": visibility,
        "stdout_visibility": stdout_visibility,
        "extra_data": {"schema": result.schema, "status": result.status, "mode": result.mode,
                       "first_wrong": result.first_wrong, "grader_version": result.grader_version},
        "tests": tests,
    }
    if execution_time is not None:
        data["execution_time"] = int(round(execution_time))
    return data
