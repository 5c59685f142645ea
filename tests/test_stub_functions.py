"""Exercise functions read without running the file: ``def``, top-level lambdas and aliases are
graded; functions made at run time are named, with what to write instead, never "found none"."""

import ast
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from grader.api import GradeRequest, grade_submission
from grader.judge.grading import GradingOptions
from grader.submissions.loader import SubmissionError, load_submission
from grader.submissions.stub_functions import exercise_functions, functions_made_at_run_time

from conftest import EXERCISE, ROOT, SOLUTION, SUBMISSIONS, expectation

RUN_TIME = SUBMISSIONS / "run_time"
QUICK = GradeRequest(options=GradingOptions(train_steps=2))


def made(code):
    tree = ast.parse(code)
    return functions_made_at_run_time(code, exercise_functions(tree), parse=lambda: tree)


# -- reading ---------------------------------------------------------------------------------------

def test_defs_lambdas_and_aliases_of_functions_defined_above_are_read_with_their_parameters():
    tree = ast.parse("def dprobs(dlogprobs, probs):\n    return 1\n"
                     "dlogprobs = lambda logprobs, Yb, n: 0\n"
                     "def helper(logits, Yb, n):\n    return 0\n"
                     "dlogits_fused = helper\n"
                     "dh: object = lambda dlogits, W2, *rest, **more: 0\n"
                     "dW2 = undefined_elsewhere\n")
    assert exercise_functions(tree) == {
        "dprobs": ("dlogprobs", "probs"), "dlogprobs": ("logprobs", "Yb", "n"),
        "dlogits_fused": ("logits", "Yb", "n"), "dh": ("dlogits", "W2", "*rest", "**more")}


def test_the_solution_the_exercise_and_lecture_style_code_make_nothing_at_run_time():
    assert made(SOLUTION.read_text()) is None
    assert made(EXERCISE.read_text()) is None
    assert made((RUN_TIME / "lambdas.py").read_text()) is None


@pytest.mark.parametrize("code, names, line", [
    ("for name in ['dlogprobs', 'dprobs']:\n    globals()[name] = make(name)\n",
     ("dlogprobs", "dprobs"), 1),
    ("import torch\nexec(SOURCE)\nTABLE = {'dC': f}\n", ("dC",), 2),
    ("funcs = {}\ndlogprobs = funcs['dlogprobs']\n", ("dlogprobs",), 2),
    ("from my_solution import dlogprobs, dh as dh\n", ("dlogprobs", "dh"), 1),
    ("x = 1\nglobals().update(load())\n", (), 2),
    ("from functools import partial\ndC = partial(f, 3)\n", ("dC",), 2),
    ("import sol\ndh = sol.dh\n", ("dh",), 2),
    ("dlogprobs, dprobs = make_all()\n", ("dlogprobs", "dprobs"), 1),
])
def test_functions_made_at_run_time_are_named_with_the_line_that_makes_them(code, names, line):
    found = made(code)
    assert found is not None and found.names == names and found.line == line


@pytest.mark.parametrize("code", [
    "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / n\n",
    "dprobs = probs\ndprobs **= -1\n",
    "dlogprobs = compute(logprobs)\n",
])
def test_a_gradient_computed_as_a_tensor_is_not_a_function_made_at_run_time(code):
    assert made(code) is None


def test_the_advice_gives_the_exercise_files_parameters():
    found = made("for n in ['dbnraw']:\n    globals()[n] = None\n")
    assert found.describe() == ("dbnraw is made at run time (line 1: `for n in ['dbnraw']:`)")
    assert "write `def dbnraw(dhpreact, bngain):`" in found.advice()


# -- loading and grading ---------------------------------------------------------------------------

def test_a_file_of_lambdas_is_graded_to_full_marks():
    submission = load_submission(RUN_TIME / "lambdas.py")
    assert submission.format == "stubs"
    assert submission.functions["dlogprobs"] == ("logprobs", "Yb", "n")
    assert submission.functions["dlogits_fused"] == ("logits", "Yb", "n")
    result = grade_submission(RUN_TIME / "lambdas.py", request=QUICK)
    assert result.status == "graded", result.message
    assert result.score == result.max_score == int(expectation(RUN_TIME / "lambdas.py", "score"))


def test_a_globals_loop_is_refused_saying_what_happened_and_still_scanned_for_autograd():
    path = RUN_TIME / "globals_loop.py"
    with pytest.raises(SubmissionError) as e:
        load_submission(path)
    assert "found none" not in str(e.value)
    result = grade_submission(path, request=QUICK)
    assert result.status == "error" and result.score == 0
    assert result.message == "globals_loop.py: " + expectation(path, "message") + \
        " (as in the exercise file) for each exercise function"
    assert expectation(path, "integrity") in [f.detail for f in result.integrity]


def test_a_file_whose_top_level_raises_after_calling_backward_is_flagged():
    path = RUN_TIME / "raises_after_backward.py"
    result = grade_submission(path, request=QUICK)
    assert result.status == "error" and result.score == 0
    assert result.message.startswith(expectation(path, "message"))
    assert expectation(path, "integrity") in [f.detail for f in result.integrity]
    assert "load" in {f.kind for f in result.integrity}       # and at run time, when it loaded


def test_some_functions_by_def_and_others_made_at_run_time_grade_the_first_and_name_the_others(
        tmp_path):
    path = tmp_path / "mixed.py"
    path.write_text(SOLUTION.read_text().replace("def dbnraw(", "def _dbnraw(")
                    + "\nfor name in ['dbnraw']:\n    globals()[name] = _dbnraw\n")
    result = grade_submission(path, request=GradeRequest(
        options=GradingOptions(exercises=("ex1",))))
    assert result.score == 25
    assert any(n.startswith("dbnraw is made at run time (line ") and
               "write `def dbnraw(dhpreact, bngain):`" in n for n in result.notes)


def test_a_notebook_of_lambdas_keeps_them_as_definitions(tmp_path):
    nb = new_notebook(cells=[new_code_cell("import torch\nwords = open('names.txt').read()"),
                             new_code_cell("dprobs = lambda dlogprobs, probs: dlogprobs / probs\n"
                                           "print(dprobs)")])
    path = tmp_path / "lambdas.ipynb"
    nbformat.write(nb, path)
    submission = load_submission(path)
    assert submission.functions == {"dprobs": ("dlogprobs", "probs")}
    assert "open(" not in submission.code and "dprobs = lambda" in submission.code


def test_a_notebook_that_makes_its_functions_at_run_time_names_the_line_in_the_joined_cells(
        tmp_path):
    # a notebook's joined code is parsed only where a line number in it is needed: here
    nb = new_notebook(cells=[new_code_cell("import torch"),
                             new_code_cell("def dprobs(dlogprobs, probs):\n    return 1\n"),
                             new_code_cell("x = 2\nfrom my_solution import dlogprobs, dh\n")])
    path = tmp_path / "made.ipynb"
    nbformat.write(nb, path)
    submission = load_submission(path)
    twin = made(submission.code)
    assert submission.tree is None and twin is not None and twin.names == ("dlogprobs", "dh")
    assert submission.code.splitlines()[twin.line - 1] == "from my_solution import dlogprobs, dh"
    assert [n for n in submission.notes if "made at run time" in n] == [
        f"{twin.describe()}: {twin.advice()}"]


def test_check_on_a_globals_loop_exits_2_with_the_reason_and_the_flags():
    p = subprocess.run([sys.executable, "-m", "grader", "check",
                        str(RUN_TIME / "globals_loop.py"), "--no-hidden"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "cannot grade: globals_loop.py: defines no exercise function by `def`" in p.stdout
    assert "INTEGRITY source: globals_loop.py, line 28: calls .backward()" in p.stdout
