"""Notebooks: read code cells only, never run outputs, drop magics with a note, refuse broken
files in one line; the exercise notebook is generated from the .py file and must not drift."""

import json
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from grader.api import GradeRequest, grade_submission
from grader.judge.grading import GradingOptions
from grader.submissions.loader import SubmissionError, load_submission
from grader.submissions.notebook import (
    CodeCell,
    cell_of_line,
    exercise_notebook_text,
    join_cells,
    load_notebook_source,
)

from conftest import EXERCISE, ROOT, SOLUTION, SUBMISSIONS

NOTEBOOKS = SUBMISSIONS / "notebooks"
EX1_ONLY = GradeRequest(options=GradingOptions(exercises=("ex1", "ex2", "ex3")))


def write_notebook(tmp_path, *cells, name="nb.ipynb"):
    nb = new_notebook(cells=[c if not isinstance(c, str) else new_code_cell(c) for c in cells])
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


# -- refusing what cannot be read -------------------------------------------------------------

def test_broken_json_is_one_line_naming_the_file(tmp_path):
    p = tmp_path / "cut.ipynb"
    p.write_text('{"cells": [{"cell_type": "code", "source": "x = 1"')
    with pytest.raises(SubmissionError) as e:
        load_submission(p)
    message = str(e.value)
    assert message.startswith(str(p)) and "broken JSON at line 1" in message
    assert "\n" not in message


def test_a_wrong_nbformat_version_is_refused_with_what_to_do(tmp_path):
    p = tmp_path / "old.ipynb"
    p.write_text(json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}))
    with pytest.raises(SubmissionError, match=r"old.ipynb: notebook format version 3, but only "
                                              r"version 4 is read.*nbconvert"):
        load_submission(p)


def test_json_that_is_not_a_notebook_is_refused(tmp_path):
    p = tmp_path / "data.ipynb"
    p.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(SubmissionError, match="data.ipynb: not a Jupyter notebook"):
        load_submission(p)


def test_a_notebook_that_breaks_the_schema_is_refused(tmp_path):
    p = tmp_path / "bad.ipynb"
    p.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                             "cells": [{"cell_type": "code", "source": 42, "metadata": {},
                                        "outputs": [], "execution_count": None, "id": "a"}]}))
    with pytest.raises(SubmissionError, match=r"bad.ipynb: not a valid notebook: .*cells/0"):
        load_submission(p)


@pytest.mark.parametrize("cells, expected", [
    ([], "the notebook is empty"),
    ([new_markdown_cell("# only words")], "has no code cells"),
    (["", "   \n"], "every code cell of the notebook is empty"),
], ids=["no cells", "markdown only", "blank code cells"])
def test_an_empty_notebook_is_refused(tmp_path, cells, expected):
    p = write_notebook(tmp_path, *cells)
    with pytest.raises(SubmissionError, match=expected):
        load_submission(p)


def test_an_empty_file_and_a_missing_file_are_refused(tmp_path):
    (tmp_path / "zero.ipynb").write_bytes(b"")
    with pytest.raises(SubmissionError, match="zero.ipynb: the file is empty"):
        load_submission(tmp_path / "zero.ipynb")
    with pytest.raises(SubmissionError, match="nowhere.ipynb: no such file"):
        load_submission(tmp_path / "nowhere.ipynb")


# -- what is read ---------------------------------------------------------------------------------

def test_only_code_cells_are_read_and_outputs_never(tmp_path):
    code = new_code_cell("def dprobs(dlogprobs, probs):\n    return dlogprobs / probs",
                         execution_count=3, outputs=[
                             new_output("stream", name="stdout", text="def dC(demb): pass\n"),
                             new_output("execute_result", data={"text/plain": "import os"},
                                        execution_count=3)])
    p = write_notebook(tmp_path, new_markdown_cell("def dlogprobs(): pass"), code)
    sub = load_submission(p)
    assert sub.format == "stubs" and sub.source_kind == "ipynb"
    assert set(sub.functions) == {"dprobs"}
    assert "def dC" not in sub.code and "import os" not in sub.code and "markdown" not in sub.code


def test_fields_of_other_tools_and_malformed_outputs_do_not_matter(tmp_path):
    p = tmp_path / "colab.ipynb"
    p.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {"colab": {}}, "cells": [
        {"cell_type": "code", "source": ["def dprobs(dlogprobs, probs):\n", "    return 1\n"],
         "metadata": {}, "execution_count": 1, "tool_field": True,
         "outputs": [{"output_type": "not-an-output", "data": 3}]}]}))
    assert set(load_submission(p).functions) == {"dprobs"}


def test_magics_and_shell_lines_are_dropped_with_a_note(tmp_path):
    p = write_notebook(tmp_path, "%matplotlib inline\n!pip install torch\nimport torch",
                       "%%bash\nrm -rf /", "%%time\ndef dprobs(dlogprobs, probs):\n"
                       "    return dlogprobs / probs", "torch.zeros?")
    code, notes = load_notebook_source(p)
    assert "rm -rf" not in code and "%" not in code.replace("# %%", "") and "!pip" not in code
    assert "def dprobs" in code                       # %%time keeps its Python body
    assert len(notes) == 1 and "dropped (not run)" in notes[0]
    for shown in ("%matplotlib inline", "!pip install torch", "%%bash cell not run", "%%time",
                  "torch.zeros?"):
        assert shown in notes[0]


def test_a_cell_with_a_syntax_error_is_left_out_with_a_note(tmp_path):
    p = write_notebook(tmp_path, "def dprobs(dlogprobs, probs):\n    return dlogprobs / probs",
                       "def dcounts(:\n    pass")
    sub = load_submission(p)
    assert set(sub.functions) == {"dprobs"}
    assert any("cell 2 has a syntax error at line 1" in n for n in sub.notes)


def test_cells_keep_their_numbers_and_lines():
    code, _ = join_cells([CodeCell("cell 1", "a = 1\n"), CodeCell("cell 3", "b = 2\nc = 3\n")])
    line = code.splitlines().index("c = 3") + 1
    assert cell_of_line(code, line) == ("cell 3", 2)
    assert cell_of_line("x = 1\ny = 2\n", 2) == (None, 2)


def test_a_cell_cannot_fake_another_cells_marker():
    code, _ = join_cells([CodeCell("cell 1", "a = (1,\n# %% [cell 9]\n2)\n")])
    assert cell_of_line(code, 4) == ("cell 1", 3)
    assert code.splitlines()[1:] == ["a = (1,", "#  %% [cell 9]", "2)"]


def test_a_lecture_notebook_with_no_exercise_code_says_what_was_looked_for(tmp_path):
    p = write_notebook(tmp_path, new_markdown_cell("## Exercise 1"),
                       "words = open('names.txt').read().splitlines()",
                       "emb = C[Xb]\nloss = -logprobs[range(n), Yb].mean()\nloss.backward()",
                       "# dlogprobs = ... # TODO\n# cmp('logprobs', dlogprobs, logprobs)")
    with pytest.raises(SubmissionError, match=r"nb.ipynb: found none of the exercise functions "
                                              r"\(dlogprobs, .*no lecture-style assignments"):
        load_submission(p)


def test_in_the_function_format_only_definitions_are_taken(tmp_path):
    marker = tmp_path / "data-loading-ran"
    p = write_notebook(tmp_path, "import torch",
                       f"words = open({str(marker)!r}, 'w').write('x')\nprint(words)",
                       "def dprobs(dlogprobs, probs):\n    return dlogprobs / probs\nEPS = 1e-5",
                       "from grader import check\ncheck()")
    sub = load_submission(p)
    assert "open(" not in sub.code and "check()" not in sub.code and "EPS = 1e-5" in sub.code
    assert any("not run: cell 2 lines 1, 2" in n for n in sub.notes)
    assert not any("cell 4" in n for n in sub.notes)       # the self-check cell goes unmentioned
    r = grade_submission(sub, request=GradeRequest(options=GradingOptions(exercises=("ex1",))))
    assert r.status == "graded" and not marker.exists()


# -- the same verdicts as the .py twin -----------------------------------------------------------

def verdicts(result):
    return {(ex.name, g.name): (g.status, tuple((m.mode, m.status) for m in g.modes))
            for ex in result.exercises for g in ex.gradients}


def test_a_function_format_notebook_grades_like_its_py_twin():
    nb = grade_submission(NOTEBOOKS / "stubs.ipynb", request=EX1_ONLY)
    py = grade_submission(NOTEBOOKS / "stubs.py", request=EX1_ONLY)
    assert nb.status == py.status == "graded" and nb.mode == py.mode == "isolated"
    assert verdicts(nb) == verdicts(py)
    assert nb.first_wrong == py.first_wrong == "dcounts"
    assert nb.score == py.score == 25


def check_json(tmp_path, path):
    out = tmp_path / f"{path.stem}-{path.suffix[1:]}.json"
    p = subprocess.run([sys.executable, "-m", "grader", "check", str(path), "--steps", "2",
                        "--json", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "Traceback" not in p.stdout + p.stderr
    data = json.loads(out.read_text())
    return p.returncode, {(ex["name"], g["name"]): (g["status"], g["points"])
                          for ex in data["exercises"] for g in ex["gradients"]}, data


@pytest.mark.parametrize("twin, notebook", [
    ("lecture/correct.py", "notebooks/magics.ipynb"),
    ("lecture/mistakes.py", "notebooks/mistakes.ipynb"),
    ("lecture/raises.py", "notebooks/raises.ipynb"),
])
def test_cli_check_on_a_notebook_gives_the_verdicts_of_the_equivalent_py(tmp_path, twin, notebook):
    code_py, py, data_py = check_json(tmp_path, SUBMISSIONS / twin)
    code_nb, nb, data_nb = check_json(tmp_path, SUBMISSIONS / notebook)
    assert nb == py and code_nb == code_py
    assert data_nb["mode"] == data_py["mode"] == "chained"
    assert data_nb["score"] == data_py["score"]


# -- the exercise notebook --------------------------------------------------------------------------

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
