"""A notebook cell that does not parse as a whole: the statement that does not parse is left out
with a note naming it in the student's terms, and the rest of the cell is graded."""

import subprocess
import sys
import time
import types

import nbformat
import pytest

from grader import check
from grader.api import GradeRequest, grade_submission
from grader.judge.grading import GradingOptions
from grader.submissions.cell_salvage import salvage_cell
from grader.submissions.code_cells import CodeCell, join_cells

from conftest import ROOT, SOLUTION, SUBMISSIONS

UNPARSABLE = SUBMISSIONS / "unparsable"
QUICK = GradeRequest(options=GradingOptions(train_steps=2))
NO_EX4 = GradeRequest(options=GradingOptions(exercises=("ex1", "ex2", "ex3")))


def left_out(source):
    salvaged = salvage_cell(source)
    assert salvaged is not None
    return [(spot.lines(), spot.text, spot.reason) for spot in salvaged.left_out], salvaged.source


# -- which lines go ---------------------------------------------------------------------------------

def test_an_unfinished_last_line_goes_alone_and_every_other_line_keeps_its_number():
    spots, source = left_out("a = 1\nb = 2\ndC =\n")
    assert spots == [("line 3", "dC =", "invalid syntax")]
    assert source.splitlines() == ["a = 1", "b = 2", ""]


def test_an_unfinished_line_mid_cell_goes_with_the_comments_under_it_but_not_the_next_line():
    spots, source = left_out("a = 1\ndb2 = \n# db2 = dlogits.sum(0)?\ndb2 = x.sum(0)\n")
    assert spots == [("line 2", "db2 =", "invalid syntax")]
    assert source.splitlines() == ["a = 1", "", "", "db2 = x.sum(0)"]


def test_a_for_whose_body_lost_its_indentation_goes_with_that_body():
    spots, source = left_out("a = 1\nfor k in range(3):\nb = k\nc = 2\n")
    assert spots == [("lines 2-3", "for k in range(3):",
                      "expected an indented block after 'for' statement on line 2")]
    assert source.splitlines() == ["a = 1", "", "", "c = 2"]


def test_a_bad_line_inside_a_block_costs_the_whole_top_level_block():
    nested = "dC = 0\nfor k in range(3):\n    for j in range(2):\n    dC += k\nd = 1\n"
    assert left_out(nested)[1].splitlines() == ["dC = 0", "", "", "", "d = 1"]
    in_def = "def f(x):\n    y = x +\n    return y\nz = 1\n"
    assert left_out(in_def)[0] == [("lines 1-3", "def f(x):", "invalid syntax")]
    unindent = "for k in range(3):\n    if k:\n        x = 1\n      y = 2\nc = 3\n"
    assert left_out(unindent)[1].splitlines() == ["", "", "", "", "c = 3"]
    dangling_else = "if a:\n    x = 1\nelse\n    x = 2\nz = 1\n"
    assert left_out(dangling_else)[0] == [("lines 1-4", "if a:", "expected ':'")]


def test_an_indented_line_after_a_complete_statement_goes_alone():
    spots, source = left_out("a = 1\n    b = 2\nc = 3\n")
    assert spots == [("line 2", "b = 2", "unexpected indent")]
    assert source.splitlines() == ["a = 1", "", "c = 3"]


def test_a_bracket_never_closed_goes_to_where_python_can_go_on():
    assert left_out("a = 1\nb = foo(1,\n  2,\n")[0] == [
        ("lines 2-3", "b = foo(1,", "'(' was never closed")]
    spots, source = left_out("a = 1\nb = foo(1,\nc = 3\n")
    assert spots == [("line 2", "b = foo(1,", "'(' was never closed")]
    assert source.splitlines() == ["a = 1", "", "c = 3"]
    # the bad line inside the brackets, then the opening line: one spot, the first reason
    assert left_out("x = foo(\na, b b)\ny = 1\n")[0] == [
        ("lines 1-2", "x = foo(", "invalid syntax. Perhaps you forgot a comma?")]


def test_prompts_pasted_errors_and_several_spots_in_one_cell_each_get_their_own_note():
    source = ("a = 1\n>>> a.shape\nb = 2\nTraceback (most recent call last):\n"
              '  File "<stdin>", line 1, in <module>\nNameError: name \'x\' is not defined\n'
              "c = 'abc\nd = 3\n")
    spots, kept = left_out(source)
    assert [s[:2] for s in spots] == [("line 2", ">>> a.shape"),
                                      ("lines 4-5", "Traceback (most recent call last):"),
                                      ("line 6", "NameError: name 'x' is not defined"),
                                      ("line 7", "c = 'abc")]
    assert [line for line in kept.splitlines() if line] == ["a = 1", "b = 2", "d = 3"]


def test_a_cell_with_no_code_left_or_too_broken_is_not_salvaged():
    assert salvage_cell("dC =\n# a comment\n") is None
    assert salvage_cell("This cell holds my notes, not code.\n") is None
    assert salvage_cell("".join(f"line {i} is prose\n" for i in range(20)) + "a = 1\n") is None


def test_hostile_cells_end_quickly_and_never_raise():
    start = time.perf_counter()
    for source in ("x = " + "(" * 500 + "\n", "(" * 100_000, "\0a = 1\nb =\n",
                   "a = 1\n" * 20_000 + "b =\n" * 50, "-" * 200_000 + "x\n",
                   "\n".join("def f():\n" + "    " * i + "if x:" for i in range(100)),
                   "a = 1\n" + ")" * 30 + "\n" + "]\n" * 30):
        result = salvage_cell(source)
        assert result is None or result.left_out
    assert time.perf_counter() - start < 20


# -- notes, in both notebook formats ----------------------------------------------------------------

def test_the_note_names_the_cell_the_line_and_the_text_and_the_rest_is_joined():
    code, notes = join_cells([CodeCell("cell 14", "x = 1\n" * 36 + "dC =\n")])
    assert notes == ("cell 14, line 37: `dC =` is not complete Python (invalid syntax) and was "
                     "left out; the rest of the cell was graded",)
    assert code.splitlines()[1:] == ["x = 1"] * 36 + [""]


def test_in_the_function_format_the_rest_of_a_broken_cell_is_still_read():
    code, notes = join_cells([
        CodeCell("cell 1", "import torch\n\ndef dprobs(dlogprobs, probs):\n    return dlogprobs / probs"
                           "\n\ndprobs(\n"),
        CodeCell("cell 2", "def dlogprobs(logprobs, Yb, n):\n    out = torch.zeros_like(logprobs\n"
                           "    return out\n\nEPS = 1e-5\n")])
    assert "def dprobs(dlogprobs, probs):" in code and "def dlogprobs" not in code
    assert "EPS = 1e-5" in code
    assert any(n.startswith("cell 1, line 6: `dprobs(` is not complete Python") for n in notes)
    assert any(n.startswith("cell 2, lines 1-3: `def dlogprobs(logprobs, Yb, n):` is not "
                            "complete Python") for n in notes)


# -- graded notebooks -------------------------------------------------------------------------------

def test_a_notebook_whose_exercise_cell_ends_in_an_unfinished_line_scores_full_marks():
    result = grade_submission(UNPARSABLE / "unfinished_line.ipynb", request=QUICK)
    assert result.status == "graded" and result.score == result.max_score == 34
    assert "cell 7, line 36: `dC =` is not complete Python (invalid syntax) and was left out; " \
           "the rest of the cell was graded" in result.notes
    dC = next(g for ex in result.exercises if ex.name == "ex1" for g in ex.gradients
              if g.name == "dC")
    assert dC.points == dC.max_points


def test_an_indentation_error_costs_its_block_not_the_cell():
    result = grade_submission(UNPARSABLE / "lost_indent.ipynb", request=NO_EX4)
    assert result.score == result.max_score == 30
    assert "cell 8, lines 13-14: `for i in range(2):` is not complete Python (expected an " \
           "indented block after 'for' statement on line 13) and was left out; the rest of the " \
           "cell was graded" in result.notes
    # the scratch cell has nothing left once its loop goes: it is left out whole, as before
    assert any(n.startswith("cell 7 has a syntax error at line 3") for n in result.notes)


def test_several_bad_lines_in_a_notebook_are_each_left_out_and_named():
    result = grade_submission(UNPARSABLE / "bad_lines.ipynb", request=NO_EX4)
    assert result.score == result.max_score == 30
    notes = " | ".join(result.notes)
    for spot in ("cell 7, line 14: `>>> dh.shape` is not complete Python (invalid syntax)",
                 "cell 7, line 19: `dbnraw =` is not complete Python (invalid syntax)",
                 "cell 10, line 5: `print(dlogits.shape, (dlogits.sum(1)` is not complete Python "
                 "('(' was never closed)"):
        assert spot in notes


def test_check_grades_the_notebook_and_says_which_line_was_left_out():
    p = subprocess.run([sys.executable, "-m", "grader", "check",
                        str(UNPARSABLE / "unfinished_line.ipynb"), "--steps", "1", "--no-hidden"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "note: cell 7, line 36: `dC =` is not complete Python (invalid syntax)" in p.stdout
    assert "total: 34 / 34" in p.stdout


def test_a_py_file_with_a_syntax_error_still_exits_2_with_one_line_saying_where(tmp_path):
    path = tmp_path / "backprop.py"
    path.write_text(SOLUTION.read_text() + "\ndC =\n")
    p = subprocess.run([sys.executable, "-m", "grader", "check", str(path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    lines = len(SOLUTION.read_text().splitlines()) + 2
    assert p.returncode == 2
    assert f"cannot grade: backprop.py: syntax error at line {lines}: invalid syntax: dC =" in p.stdout


def test_check_in_jupyter_grades_a_kernel_cell_that_ends_in_an_unfinished_line(monkeypatch):
    exercise = (SUBMISSIONS / "lecture" / "reads_grad.py").read_text().split("# %%\n")[2]
    exercise = exercise.replace("dhpreact = hpreact.grad", "dhpreact = (1.0 - h**2) * dh")
    history = ["", "import torch", exercise + "db1 =\n"]
    shell = types.SimpleNamespace(history_manager=types.SimpleNamespace(input_hist_raw=history),
                                  user_ns={})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    report = check(request=GradeRequest(options=GradingOptions(exercises=("ex1",))))
    assert report.result.status == "graded" and report.score == 26
    line = len(exercise.splitlines()) + 1
    assert f"In [2], line {line}: `db1 =` is not complete Python (invalid syntax) and was left " \
           "out; the rest of the cell was graded" in report.result.notes


@pytest.mark.parametrize("name", ["unfinished_line", "lost_indent", "bad_lines"])
def test_the_committed_notebooks_are_what_build_py_makes(name, tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_unparsable", UNPARSABLE / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    monkeypatch.setattr(build, "HERE", tmp_path)
    build.main()
    made = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
    committed = nbformat.read(UNPARSABLE / f"{name}.ipynb", as_version=4)
    assert [c.source for c in made.cells] == [c.source for c in committed.cells]
