"""The exercise notebook students get: generated from exercises/backprop.py, it must not drift,
it first says how to self-check, and it grades like the file it comes from."""

import subprocess
import sys

import nbformat

from grader.api import GradeRequest, grade_submission
from grader.exercise_notebook import exercise_notebook_text
from grader.judge.grading import GradingOptions
from grader.submissions.loader import load_submission

from conftest import EXERCISE, ROOT, SOLUTION


def verdicts(result):
    return {(ex.name, g.name): (g.status, tuple((m.mode, m.status) for m in g.modes))
            for ex in result.exercises for g in ex.gradients}


def test_the_exercise_notebook_is_generated_from_the_py_file_and_has_not_drifted():
    committed = (ROOT / "exercises" / "backprop.ipynb").read_text("utf-8")
    assert committed == exercise_notebook_text(EXERCISE), (
        "exercises/backprop.ipynb differs from what exercises/backprop.py generates: run "
        "`backprop-grader notebook exercises/backprop.py -o exercises/backprop.ipynb`")


def test_the_exercise_notebook_first_explains_how_to_self_check():
    nb = nbformat.reads(exercise_notebook_text(EXERCISE), as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "How to check your work" in first.source
    assert "check()" in first.source and "backprop-grader check backprop.ipynb" in first.source
    assert nb.cells[-1].source == "from grader import check\n\ncheck()"
    functions = [c.source.split("(")[0][4:] for c in nb.cells if c.source.startswith("def ")]
    assert functions == list(load_submission(EXERCISE).functions)


def test_the_exercise_notebook_grades_like_the_exercise_file():
    request = GradeRequest(options=GradingOptions(train_steps=1))
    nb = grade_submission(ROOT / "exercises" / "backprop.ipynb", request=request)
    py = grade_submission(EXERCISE, request=request)
    assert verdicts(nb) == verdicts(py) and nb.score == py.score == 0
    assert not nb.notes          # the check() cell is the notebook's own: nothing to report


def test_the_notebook_command_writes_and_checks_for_drift(tmp_path):
    source = tmp_path / "backprop.py"
    source.write_text(SOLUTION.read_text())
    out = tmp_path / "backprop.ipynb"

    def run(*args):
        return subprocess.run([sys.executable, "-m", "grader", "notebook", str(source), *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)

    assert run("--check").returncode == 1
    assert run().returncode == 0 and out.exists()
    assert run("--check").returncode == 0
    source.write_text(SOLUTION.read_text() + "\n\ndef extra():\n    pass\n")
    p = run("--check")
    assert p.returncode == 1 and "out of date" in p.stdout
