"""Lecture-style code that reads autograd's answer: status "integrity" for that gradient, at the
statement's own cell and line, the same line in the flag, and the gradients after it graded on
autograd's value in its place."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from grader.api import GradeRequest, grade_submission
from grader.judge.grading import GradingOptions
from grader.judge.lecture_integrity import autograd_read
from grader.submissions.lecture_source import read_lecture_code
from grader.submissions.statements import read_statements

from conftest import SUBMISSIONS, expectation

READS_GRAD = SUBMISSIONS / "lecture" / "reads_grad.py"
NO_EX4 = GradeRequest(options=GradingOptions(exercises=("ex1", "ex2", "ex3")))
MESSAGE = ("`dhpreact = hpreact.grad` reads autograd's answer (hpreact.grad) instead of computing "
           "it: the exercise is to derive this gradient by hand. Scored 0 (integrity policy "
           "'zero').")


def read(code):
    statements, files, _ = read_statements(code, name="s.py", cells=False)
    found = autograd_read(statements, files)
    return found and (found.where, found.code, found.what)


@pytest.mark.parametrize("code, what", [
    ("dhpreact = hpreact.grad", "hpreact.grad"),
    ("dhpreact = hpreact.grad.clone()", "hpreact.grad"),
    ("dhpreact = 1.0 * hpreact.grad", "hpreact.grad"),
    ("dhpreact = torch.autograd.grad(loss, hpreact)[0]", "torch.autograd.grad(...)"),
    ("dhpreact = getattr(hpreact, 'grad')", "getattr(..., 'grad')"),
    ("loss.backward()", "loss.backward()"),
])
def test_grad_reads_and_autograd_calls_are_found_at_their_line(code, what):
    assert read("x = 1\n" + code + "\n") == ("line 2", code, what)


def test_computing_a_gradient_or_clearing_grad_is_not_reading_autograds_answer():
    assert read("dhpreact = (1.0 - h**2) * dh\nhpreact.grad = None\n"
                "grad = torch.zeros(3)\ny = grad + 1\n") is None


def line(text):
    return next(i for i, ln in enumerate(READS_GRAD.read_text().splitlines(), 1) if ln == text)


def gradients(result):
    return {g.name: g for ex in result.exercises if ex.name != "ex4" for g in ex.gradients}


def test_a_grad_read_scores_0_with_one_line_reference_and_costs_no_other_gradient():
    result = grade_submission(READS_GRAD, request=NO_EX4)
    at = line("dhpreact = hpreact.grad")
    dhpreact = gradients(result)[expectation(READS_GRAD, "gradient")]
    assert dhpreact.status == expectation(READS_GRAD, "status") and dhpreact.points == 0
    assert dhpreact.message == f"line {at}: {MESSAGE}"
    assert [g.name for g in gradients(result).values() if not g.passed] == ["dhpreact"]
    assert result.score == int(expectation(READS_GRAD, "score"))
    sources = [f.detail for f in result.integrity if f.kind == "source"]
    assert sources == [f"reads_grad.py, line {at}: reads or sets .grad: dhpreact = hpreact.grad"]
    assert all(f"line {at}" in f.detail for f in result.integrity)


def test_in_a_notebook_the_message_and_the_flag_name_the_same_cell_and_line(tmp_path):
    _, *cells = READS_GRAD.read_text().split("# %%\n")
    path = tmp_path / "reads_grad.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(c.strip("\n")) for c in cells]), path)
    result = grade_submission(path, request=NO_EX4)
    at = cells[1].strip("\n").splitlines().index("dhpreact = hpreact.grad") + 1
    assert gradients(result)["dhpreact"].message == f"cell 2, line {at}: {MESSAGE}"
    assert [f.detail for f in result.integrity] == [
        f"reads_grad.ipynb, cell 2, line {at}: reads or sets .grad: dhpreact = hpreact.grad"]
    assert result.score == 29


def test_under_the_flag_policy_the_gradient_keeps_its_own_verdict_with_the_same_words():
    request = GradeRequest(options=GradingOptions(exercises=("ex1",), integrity_policy="flag"))
    result = grade_submission(READS_GRAD, request=request)
    dhpreact = gradients(result)["dhpreact"]
    at = line("dhpreact = hpreact.grad")
    assert dhpreact.status == "error"          # hpreact.grad is None in the grader's tensors
    assert dhpreact.message.startswith(f"line {at}: `dhpreact = hpreact.grad` reads autograd's "
                                       "answer (hpreact.grad) instead of computing it; ")
    assert any(f"line {at}" in f.detail for f in result.integrity)
    assert result.score == 25


def test_backward_among_the_exercise_statements_is_flagged_but_not_in_the_forward_cell(tmp_path):
    text = READS_GRAD.read_text()
    text = text.replace("# Exercise 1\n", "loss = -logprobs[range(n), Yb].mean()\nloss.backward()\n"
                                          "\n# %%\n# Exercise 1\n")
    text = text.replace("dhpreact = hpreact.grad\n", "loss.backward()\ndhpreact = hpreact.grad\n")
    path = tmp_path / "backward.py"
    path.write_text(text)
    lines = text.splitlines()
    forward, inside = [i for i, ln in enumerate(lines, 1) if ln == "loss.backward()"]
    result = grade_submission(path, request=NO_EX4)
    details = [f.detail for f in result.integrity if f.kind == "source"]
    assert details == [f"backward.py, line {inside}: calls .backward(): loss.backward()",
                       f"backward.py, line {inside + 1}: reads or sets .grad: dhpreact = "
                       "hpreact.grad"]
    assert not any(f"line {forward}:" in d for d in details)
    assert gradients(result)["dhpreact"].status == "integrity"


def test_the_exercise_statements_a_gradient_reads_are_the_ones_searched():
    program = read_lecture_code(READS_GRAD.read_text(), name="reads_grad.py", cells=False)
    by_name = {s.gradient.name: s for s in program.sources}
    for name, expected in (("dhpreact", True), ("dbngain", False), ("dhprebn_fused", False)):
        statements = [program.statement(i) for i in by_name[name].steps]
        assert (autograd_read(statements, program.files) is not None) is expected


def test_a_grad_read_among_exercise_4s_backward_lines_is_flagged_at_the_loops_line(tmp_path):
    code = (SUBMISSIONS / "lecture" / "correct.py").read_text()
    assert code.count("        db1 = dhprebn.sum(0)\n") == 1
    path = tmp_path / "loop.py"
    path.write_text(code.replace("        db1 = dhprebn.sum(0)\n", "        db1 = b1.grad\n"))
    at = path.read_text().splitlines().index("        db1 = b1.grad") + 1
    result = grade_submission(path, request=GradeRequest(options=GradingOptions(train_steps=2)))
    assert f"loop.py, line {at}: reads or sets .grad: db1 = b1.grad" in \
        [f.detail for f in result.integrity]
    db1 = next(g for ex in result.exercises if ex.name == "ex4" for g in ex.gradients
               if g.name == "db1")
    assert db1.points == 0 and "reads autograd's answer (.grad)" in db1.message


def test_a_helper_line_that_reads_grad_for_a_gradient_costs_that_gradient(tmp_path):
    text = READS_GRAD.read_text().replace("dhpreact = hpreact.grad\n",
                                          "g = hpreact.grad\ndhpreact = g.clone()\n")
    path = tmp_path / "helper.py"
    path.write_text(text)
    at = text.splitlines().index("g = hpreact.grad") + 1
    result = grade_submission(path, request=NO_EX4)
    dhpreact = gradients(result)["dhpreact"]
    assert dhpreact.status == "integrity"
    assert dhpreact.message.startswith(f"line {at}: `g = hpreact.grad` reads autograd's answer "
                                       "(hpreact.grad)")
    assert [g.name for g in gradients(result).values() if not g.passed] == ["dhpreact"]
