"""check(): the self-check inside Jupyter grades the running notebook's code in the sandbox and
shows an HTML table; in a plain shell it is the text table."""

import importlib.util

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from grader import CheckReport, check
from grader.api import GradeRequest
from grader.judge.grading import GradingOptions
from grader.output.results import Result
from grader.selfcheck import render_check_html
from grader.output.terminal import render_text

from conftest import ROOT, SOLUTION, SUBMISSIONS

EX1 = GradeRequest(options=GradingOptions(exercises=("ex1",)))
HAS_KERNEL = all(importlib.util.find_spec(m) for m in ("nbclient", "ipykernel"))
needs_kernel = pytest.mark.skipif(not HAS_KERNEL,
                                  reason="nbclient and ipykernel (the test extras) are not installed")


def test_check_on_a_file_returns_a_report_with_html_and_text():
    report = check(SUBMISSIONS / "notebooks" / "stubs.ipynb", request=EX1)
    assert isinstance(report, CheckReport) and report.score == 25 and not report.passed
    html = report._repr_html_()
    assert '<div class="bpg-check">' in html and "<script" not in html
    assert '<span class="bpg-status bpg-wrong">wrong</span>' in html        # dcounts
    assert html.count('<span class="bpg-status bpg-exact">exact</span>') >= 20
    assert "(25 / 26)" in html and '<td class="bpg-num">0 / 1</td>' in html   # no "25.0"
    assert "<td>yes</td>" in html and "<td>no</td>" in html
    # statuses in words, as the report writes them: "approximate", not "approx"
    assert '<span class="bpg-status bpg-approx">approximate</span>' in html
    assert "<td>approximate</td>" in html and "<td>approx</td>" not in html
    assert str(report) == repr(report) == render_text(report.result)
    assert "dcounts" in str(report) and "total: 25 / 26" in str(report)


def test_a_passing_answer_in_another_leading_shape_shows_its_note_in_html_and_text():
    """dbnmeani = (-dbndiff).sum(0), approximate in chained mode: the table shows why it is
    approximate and that it was graded on its values, though its shape is not bnmeani's."""
    report = check(SUBMISSIONS / "shapes" / "lecture_leading_ones.py", request=GradeRequest(
        hidden=(), options=GradingOptions(exercises=("ex1",))))
    g = next(g for g in report.result.gradients() if g.name == "dbnmeani")
    assert g.status == "approx" and g.explanation
    note = ("shape (64,), but bnmeani.grad has shape (1, 64): graded on its values, which "
            "match; `.sum(0, keepdim=True)` keeps the shape")
    assert note in report._repr_html_() and note in str(report)
    dbngain = next(g for g in report.result.gradients() if g.name == "dbngain")
    assert dbngain.status == "approx" and not dbngain.message   # nothing more to say of it


def test_the_html_escapes_whatever_the_submission_put_in_messages():
    result = Result(submission="<img src=x onerror=alert(1)>.py", status="error",
                    message="<script>alert('boom')</script>", score=0, max_score=34,
                    mode="isolated", loss=None, notes=("<b>note</b>",))
    html = render_check_html(result)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "<b>note</b>" not in html and "cannot grade" in html


def test_outside_a_notebook_without_a_file_check_says_what_to_pass():
    report = check(request=EX1)
    assert report.result.status == "error" and "check('backprop.py')" in report.result.message


def test_inside_the_graders_own_process_check_does_nothing(monkeypatch):
    from grader.sandbox.worker.child import SANDBOX_ENV

    monkeypatch.setenv(SANDBOX_ENV, "1")
    report = check(SOLUTION)
    assert report.result.status == "error" and "does nothing while the grader runs" in \
        report.result.message


def test_check_still_grades_in_a_process_that_imported_the_child_module():
    import grader.sandbox.worker.child  # noqa: F401  (lecture-style grading can import it in the grader)

    report = check(SOLUTION)
    assert report.result.status == "graded" and report.result.score == report.result.max_score


def test_a_missing_words_file_is_a_clear_message():
    report = check(SOLUTION, words="no/such/names.txt")
    assert report.result.status == "error" and "no such file" in report.result.message


# -- a real Jupyter kernel ---------------------------------------------------------------------------

def run_notebook(tmp_path, *sources):
    from nbclient import NotebookClient

    cells = [new_code_cell(f"import sys\nsys.path.insert(0, {str(ROOT)!r})"),
             *(new_code_cell(s) for s in sources)]
    nb = new_notebook(cells=cells)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def html_output(cell):
    results = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert results, cell.outputs
    return results[0].data["text/html"], results[0].data["text/plain"]


@needs_kernel
def test_check_in_a_kernel_grades_the_functions_it_ran_and_never_calls_them_there(tmp_path):
    solution = SOLUTION.read_text().split("# Exercise 2")[0]
    nb = run_notebook(
        tmp_path,
        "%time x = 1\n" + solution,
        "calls = []\n\ndef dprobs(dlogprobs, probs):\n    calls.append('called in the kernel')\n"
        "    return dlogprobs * probs  # wrong on purpose",
        "from grader import check\ncheck(steps=1)",
        "print(len(calls))")
    html, text = html_output(nb.cells[3])
    assert '<div class="bpg-check">' in html and "this notebook" in html
    assert '<code>dprobs</code></td>\n    <td><span class="bpg-status bpg-wrong">wrong</span>' in html
    assert '<code>dlogprobs</code></td>\n    <td><span class="bpg-status bpg-exact">exact</span>' in html
    assert "25 / 34" in html and "%time x = 1" in html          # the magic, in the notes
    assert "total: 25 / 34" in text
    assert nb.cells[4].outputs[0].text.strip() == "0"            # dprobs ran in the sandbox only


@needs_kernel
def test_check_in_a_kernel_grades_lecture_style_cells(tmp_path):
    correct = (SUBMISSIONS / "lecture" / "correct.py").read_text()
    exercise = correct[correct.index("# Exercise 1"):correct.index("# %%\n# Exercise 2")]
    setup = ("import torch\nimport torch.nn.functional as F\n"
             "from grader.lecture.model import Config, build_lecture_state\n"
             "state = build_lecture_state(Config())\n"
             "globals().update(state.forward)\nglobals().update(state.params)\n"
             "Xb, Yb, n = state.Xb, state.Yb, 32\nbn_mean, bn_var = bnmeani, bnvar\n"
             "def cmp(s, dt, t):\n    print(s, 'checked')")
    nb = run_notebook(tmp_path, setup, exercise, "from grader import check\ncheck(steps=1)")
    html, text = html_output(nb.cells[3])
    assert "26 / 34" in html and "points from chained mode" in html
    assert html.count('<span class="bpg-status bpg-exact">exact</span>') >= 10
    assert "dbn_mean as dbnmeani" in html and "In [3]" in html      # mapping and cell named
    assert "exercise 4 not graded" in html
    assert "total: 26 / 34" in text
