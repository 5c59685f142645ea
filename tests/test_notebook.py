"""Notebooks: read code cells only, never run outputs, drop magics with a note, refuse broken
files in one line; a notebook grades like its .py twin."""

import json
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from grader.api import GradeRequest, grade_submission
from grader.judge.grading import GradingOptions
from grader.submissions.loader import SubmissionError, load_submission
from grader.submissions.notebook import load_notebook_source

from conftest import ROOT, SUBMISSIONS

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


def test_a_notebook_whose_json_holds_an_integer_too_long_to_read_is_refused(tmp_path):
    p = tmp_path / "big.ipynb"
    p.write_text('{"nbformat": 4, "x": ' + "9" * 5000 + "}")
    with pytest.raises(SubmissionError, match="big.ipynb: not a valid notebook"):
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


# -- what the grader must analyse is bounded; what it never reads costs little ---------------

def _raw_notebook(path, cells, metadata=None):
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": metadata or {},
                                "cells": cells}))
    return path


def _code(source, **extra):
    return {"cell_type": "code", "source": source, "metadata": {}, "outputs": [],
            "execution_count": None, **extra}


def test_deeply_nested_metadata_is_never_copied_or_validated(tmp_path):
    deep = '{"a": [' * 450 + "{}" + "]}" * 450    # json reads it; a recursive copy would not
    p = tmp_path / "deep.ipynb"
    p.write_text('{"nbformat": 4, "nbformat_minor": 5, "metadata": {"colab": %s}, "cells": [{'
                 '"cell_type": "code", "source": "def dprobs(dlogprobs, probs):\\n    return 1",'
                 ' "metadata": %s, "tool_field": %s, "outputs": [], "execution_count": null}]}' % (deep, deep, deep))
    assert set(load_submission(p).functions) == {"dprobs"}


def test_400000_empty_cells_are_refused_before_the_json_is_parsed(tmp_path, monkeypatch):
    p = tmp_path / "many.ipynb"
    p.write_text('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": ['
                 + ",".join(['{"cell_type": "code", "source": "", "metadata": {}, "outputs": []}']
                            * 400_000) + "]}")
    monkeypatch.setattr("grader.submissions.notebook.json.loads",
                        lambda *a, **k: pytest.fail("the JSON was parsed"))
    with pytest.raises(SubmissionError, match=r"400,000 cells, more than the 5,000"):
        load_notebook_source(p)


def test_too_many_cells_or_too_much_code_is_refused_before_nbformat(tmp_path, monkeypatch):
    monkeypatch.setattr("nbformat.validator.normalize",
                        lambda *a, **k: pytest.fail("nbformat read it"))
    # a cell count hidden from the cheap count by an escape is still counted once parsed
    many = tmp_path / "many.ipynb"
    many.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                "cells": [_code("")] * 6000}).replace('"cell_type"',
                                                                      '"\\u0063ell_type"'))
    with pytest.raises(SubmissionError, match=r"6,000 cells"):
        load_notebook_source(many)
    big = _raw_notebook(tmp_path / "big.ipynb", [_code("x = 1\n" * 400_000)])
    with pytest.raises(SubmissionError, match=r"2,400,000 characters of code, more than"):
        load_notebook_source(big)


def test_a_notebook_with_tens_of_mb_of_plot_outputs_still_grades(tmp_path):
    image = "iVBORw0KGgo" * (3 * 2**20)          # ~33 MB of base64 "PNG": never read
    output = {"output_type": "display_data", "metadata": {}, "data": {"image/png": image}}
    p = _raw_notebook(tmp_path / "plots.ipynb",
                      [_code("def dprobs(dlogprobs, probs):\n    return 1\n", outputs=[output])])
    assert p.stat().st_size > 30 * 2**20
    assert set(load_submission(p).functions) == {"dprobs"}


def test_a_cell_too_deep_to_parse_is_left_out_with_a_note_and_the_rest_is_read(tmp_path):
    p = write_notebook(tmp_path, "def dprobs(dlogprobs, probs):\n    return 1\n",
                       "x = " + "+".join(["1"] * 3000))
    sub = load_submission(p)
    assert set(sub.functions) == {"dprobs"}
    assert any("cell 2 is nested too deeply to analyse and was left out" in n for n in sub.notes)


def test_a_cell_that_parses_but_nests_past_the_bound_is_left_out_the_same_way(tmp_path):
    """Whether ast.parse gives up depends on the stack it is called from: the bound decides
    the same way every time."""
    p = write_notebook(tmp_path, "def dprobs(dlogprobs, probs):\n    return 1\n",
                       "x = " + "+".join(["1"] * 150))
    sub = load_submission(p)
    assert set(sub.functions) == {"dprobs"}
    assert any("cell 2 is nested too deeply to analyse and was left out" in n for n in sub.notes)


def test_a_notebook_read_without_nbformat_is_one_nbformat_accepts_as_it_is(tmp_path):
    """The usual notebook skips nbformat's validation (grader.submissions.notebook's
    _plainly_valid); whatever takes that way must be one nbformat accepts, with the same cells,
    and whatever nbformat refuses must go through it, for its message."""
    import copy
    import itertools

    from grader.submissions import notebook

    values = [None, 0, 3, -1, True, 1.5, "x = 1\n", ["x = 1\n", "y = 2\n"], ["x", 1], {},
              "ok-id_1", "bad id", "a" * 65]
    fast = 0
    for minor, kind, source, cell_id, count in itertools.product(
            [0, 4, 5, 6], ["code", "markdown", "raw", "other"], values[6:9] + [42],
            [None, "ok-id_1", "bad id", "a" * 65, 7], [None, 0, 3, -1, True, "missing"]):
        cell = {"cell_type": kind, "metadata": {}, "source": source, "outputs": []}
        if cell_id is not None:
            cell["id"] = cell_id
        if count != "missing":
            cell["execution_count"] = count
        path = tmp_path / "nb.ipynb"
        data = notebook._notebook_json(path, json.dumps(
            {"nbformat": 4, "nbformat_minor": minor, "metadata": {}, "cells": [cell]}))
        if notebook._plainly_valid(data):
            fast += 1
            nb = notebook._validated(path, copy.deepcopy(data))    # raises if nbformat refuses
            assert [(c.cell_type, c.source) for c in nb.cells] == \
                [(c["cell_type"], c["source"]) for c in data["cells"]]
    assert fast > 50


def test_a_cell_read_once_per_process_gets_each_notebooks_own_label_in_its_notes(tmp_path):
    broken = "x = {\nprint(x)\n"                 # the parser's message has a brace in it
    first = load_submission(write_notebook(tmp_path, "def dprobs(a, b):\n    return 1\n",
                                           broken, name="a.ipynb"))
    second = load_submission(write_notebook(tmp_path, broken, "%ls\n",
                                            "def dprobs(a, b):\n    return 1\n",
                                            name="b.ipynb"))
    left_out = "line 1: `x = {` is not complete Python ('{' was never closed) and was left out"
    assert any(n.startswith(f"cell 2, {left_out}") for n in first.notes), first.notes
    assert any(n.startswith(f"cell 1, {left_out}") for n in second.notes), second.notes


def test_a_plain_notebook_is_read_without_importing_nbformat(tmp_path):
    # nbformat (jsonschema, fastjsonschema) costs a tenth of a second of every start-up; a
    # notebook it would accept as it is needs none of it
    p = write_notebook(tmp_path, "def dprobs(dlogprobs, probs):\n    return 1\n")
    code = ("import sys\nfrom grader.submissions.loader import load_submission\n"
            f"load_submission({str(p)!r})\nprint('nbformat' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
