"""``check()``: a student's self-check from inside Jupyter (or a Python shell or script).

``from grader import check; check()`` grades the code this notebook's kernel has run so far (its
input history, cell by cell, in the order it ran), or the file given as ``check("backprop.ipynb")``.
The code goes through the same path as ``backprop-grader check``: it is read, never executed in
this process, and runs in the grader's separate, limited process. What comes back shows itself as
an HTML table in a notebook (``_repr_html_``) and as the text table in a shell.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api import GradeRequest, error_result, grade_submission, lecture_config
from .judge.grading import GradingOptions
from .submissions.loader import SubmissionError, submission_from_code
from .submissions.code_cells import CodeCell, join_cells
from .output.formatting import EXERCISE_TITLES, table_maxdiff
from .output.report import template_environment
from .output.results import GradientResult, Result
from .output.terminal import render_text

__all__ = ["CheckReport", "check", "render_check_html"]

_KERNEL_NAME = "this notebook"


@dataclass(frozen=True)
class CheckReport:
    """What ``check()`` returns: the Result, shown as HTML in Jupyter and as text elsewhere."""

    result: Result

    @property
    def passed(self) -> bool:
        return self.result.all_passed

    @property
    def score(self) -> float:
        return self.result.score

    def _repr_html_(self) -> str:
        return render_check_html(self.result)

    def __str__(self) -> str:
        return render_text(self.result)

    def __repr__(self) -> str:
        return render_text(self.result)


def _inside_the_grader() -> bool:
    """True in the grader's own sandboxed process: check() there must not grade again. (Not
    "grader.sandbox.worker.child is imported": the grader process may import it too.)"""
    from .sandbox.worker.child import SANDBOX_ENV

    return os.environ.get(SANDBOX_ENV) == "1"


def _kernel_cells() -> list[CodeCell] | None:
    """The cells this IPython kernel has run, as typed (magics included), oldest first."""
    ipython_module = sys.modules.get("IPython")
    if ipython_module is None:
        return None
    shell = ipython_module.get_ipython()
    if shell is None:
        return None
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    if history is None:
        history = shell.user_ns.get("In", [])
    return [CodeCell(f"In [{i}]", str(src)) for i, src in enumerate(history)
            if i > 0 and str(src).strip()]


def _script_path() -> Path | None:
    """The file run as ``python backprop.py`` (not ``python -m something``)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or getattr(main, "__spec__", None) is not None:
        return None
    return Path(path) if Path(path).suffix in (".py", ".ipynb") else None


def _request(words: str | Path | None, steps: int, request: GradeRequest | None) -> GradeRequest:
    if request is not None:
        return request
    return GradeRequest(config=lecture_config(words),
                        options=GradingOptions(train_steps=max(int(steps), 1)))


def check(path: str | Path | None = None, *, words: str | Path | None = None, steps: int = 10,
          request: GradeRequest | None = None) -> CheckReport:
    """Grade this notebook's code (or ``path``) in the sandbox and return the report.

    In Jupyter the report shows as a table in the cell output; ``print(check())`` gives text.
    ``words``: the lecture's names.txt (default: the grader's embedded word list); ``steps``:
    exercise-4 training steps.
    """
    if _inside_the_grader():
        return CheckReport(error_result(_KERNEL_NAME, "check() does nothing while the grader "
                                                      "runs your code (it grades it already)"))
    if words is not None and not Path(words).is_file():
        return CheckReport(error_result(str(path or _KERNEL_NAME),
                                        f"words={str(words)!r}: no such file"))
    grade_request = _request(words, steps, request)
    if path is not None:
        return CheckReport(grade_submission(path, request=grade_request))
    cells = _kernel_cells()
    if cells is None:
        script = _script_path()
        if script is None:
            return CheckReport(error_result("check()", "not in a notebook and no file given: "
                                                       "call check('backprop.py') with your file"))
        return CheckReport(grade_submission(script, request=grade_request))
    return CheckReport(_grade_cells(cells, grade_request))


def _grade_cells(cells: list[CodeCell], request: GradeRequest) -> Result:
    if not cells:
        return error_result(_KERNEL_NAME, "this notebook has run no code yet: run your exercise "
                                          "cells, then check()")
    code, notes = join_cells(cells)
    try:
        submission = submission_from_code(code, name=_KERNEL_NAME, source_kind="ipynb",
                                          notes=(*notes, f"graded the {len(cells)} cells this "
                                                          "kernel has run, in the order they ran"))
    except SubmissionError as e:
        message = str(e)
        if message.startswith(_KERNEL_NAME + ": "):
            message = message[len(_KERNEL_NAME) + 2:]
        return error_result(_KERNEL_NAME, f"{message} (run your exercise cells first, or give "
                                          "the file: check('backprop.ipynb'))")
    return grade_submission(submission, request=request)


# -- HTML ------------------------------------------------------------------------------------------

def _row(g: GradientResult) -> dict[str, Any]:
    details = [d for d in (g.message, g.explanation, g.hint and f"hint: {g.hint}") if d]
    if g.status == "approx":    # why approximate, and that its shape is not the tensor's
        details = [d for d in details if d == g.explanation
                   or (d == g.message and g.shape_differs)]
    return {"name": g.name, "status": g.status, "exact": g.exact, "approx": g.approx,
            "allclose": g.allclose, "maxdiff": table_maxdiff(g.maxdiff),
            "points": g.points, "max_points": g.max_points, "details": details,
            "traceback": g.traceback if g.status == "error" else None,
            "modes": {m.mode: m.status for m in g.modes}}


def render_check_html(result: Result) -> str:
    """The report as one self-contained HTML fragment (inline CSS, no script)."""
    env = template_environment()
    exercises = [{"title": EXERCISE_TITLES.get(ex.name, ex.name), "score": ex.score,
                  "max_score": ex.max_score, "rows": [_row(g) for g in ex.gradients]}
                 for ex in result.exercises]
    return env.get_template("check.html.j2").render(
        result=result, exercises=exercises, score=result.score,
        max_score=result.max_score, passed=result.all_passed,
        output=result.output.strip()[-4000:])
