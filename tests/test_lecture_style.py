"""Lecture-style code (dlogprobs = ... in sequence): only the exercise code runs, with the
grader's tensors; each gradient is graded as it was when assigned, in chained mode."""

import dataclasses
from pathlib import Path

import pytest
import torch

from grader.api import GradeRequest, grade_submission
from grader.judge.grading import GradingOptions
from grader.lecture.model import Config
from grader.sandbox.worker.lecture_code import LectureSession, run_lecture_code
from grader.submissions.loader import SubmissionError, load_submission
from grader.output.results import read_result, write_result
from grader.sandbox.limits import Limits

from conftest import SUBMISSIONS, expectation

LECTURE = SUBMISSIONS / "lecture"
QUICK = GradeRequest(options=GradingOptions(train_steps=2))
NO_EX4 = GradeRequest(options=GradingOptions(exercises=("ex1", "ex2", "ex3")))
CHILD_LIMITS = Limits().for_child()


def line_of(path: Path, text: str, nth: int = 1) -> int:
    """The line number of the nth line of ``path`` that starts with ``text``."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(text)]
    return hits[nth - 1]


def by_name(result):
    return {(ex.name, g.name): g for ex in result.exercises for g in ex.gradients}


def status(result, name, exercise="ex1"):
    return by_name(result)[(exercise, name)].status


@pytest.fixture(scope="module")
def correct():
    return grade_submission(LECTURE / "correct.py", request=QUICK)


@pytest.fixture(scope="module")
def mistakes():
    return grade_submission(LECTURE / "mistakes.py", request=QUICK)


# -- a correct file --------------------------------------------------------------------------------

def test_a_correct_lecture_style_file_scores_full_marks_in_chained_mode(correct):
    assert correct.status == "graded" and correct.mode == "chained"
    assert correct.score == correct.max_score == float(expectation(LECTURE / "correct.py", "score"))
    for ex in correct.exercises:
        for g in ex.gradients:
            assert g.passed, (g.name, g.status, g.message)
            # exercise 4 is checked on exact inputs, then trained: it has no chained form
            assert {m.mode for m in g.modes} == ({"isolated"} if ex.name == "ex4" else {"chained"})


def test_a_lecture_style_result_round_trips_through_json(correct, tmp_path):
    write_result(correct, tmp_path / "r.json")
    assert read_result(tmp_path / "r.json") == correct


def test_the_result_says_which_lines_ran_and_that_the_rest_did_not(correct):
    notes = "\n".join(correct.notes)
    first = line_of(LECTURE / "correct.py", "dlogprobs = ")
    assert "ran only the exercise code" in notes and f"lines {first}-" in notes
    assert "not run: the other" in notes and "data loading" in notes


def test_exercise_2_and_3_are_told_apart_from_exercise_1_by_position(correct):
    notes = "\n".join(correct.notes)
    path = LECTURE / "correct.py"
    assert (f"dlogits is assigned twice: exercise 1's at line {line_of(path, 'dlogits = ')}, "
            f"exercise 2's (one expression) at line {line_of(path, 'dlogits = ', 2)}") in notes
    assert "dhprebn is assigned twice" in notes
    assert status(correct, "dlogits_fused", "ex2") == "approx"     # about 5e-9, as the lecture says
    assert status(correct, "dlogits") == "exact"


def test_renamed_variables_are_mapped_from_the_forward_pass_and_the_cmp_calls(correct):
    notes = "\n".join(correct.notes)
    forward = line_of(LECTURE / "correct.py", "bn_mean = ")
    check = line_of(LECTURE / "correct.py", 'cmp("hpreact"')
    assert (f"dbn_mean as dbnmeani (from its name: d + your bn_mean, which is the lecture's "
            f"bnmeani (your forward pass, line {forward}))") in notes
    assert f"dh_preact as dhpreact (from your cmp('hpreact', dh_preact, hpreact) at line {check})" \
        in notes
    assert f"bn_mean = bnmeani (from your forward pass, line {forward})" in notes
    assert status(correct, "dbnmeani") == "approx" and status(correct, "dbnvar") == "approx"


def test_exercise_4_is_graded_from_the_training_loops_backward_lines(correct):
    ex4 = next(ex for ex in correct.exercises if ex.name == "ex4")
    assert ex4.score == ex4.max_score == 4
    note = next(n for n in correct.notes if n.startswith("exercise 4"))
    path = LECTURE / "correct.py"
    lines = f"lines {line_of(path, '        dlogits = ')}-{line_of(path, '        grads = ')}"
    assert f"{lines} (inside the training loop)" in note and "the loop itself was not run" in note


def test_data_loading_plots_and_the_training_loop_never_run(tmp_path):
    markers = [tmp_path / f"ran-{k}" for k in range(3)]
    code = (LECTURE / "correct.py").read_text()
    code = code.replace('words = open("names.txt", "r").read().splitlines()',
                        f'open({str(markers[0])!r}, "w").write("x")\n'
                        'words = open("names.txt", "r").read().splitlines()')
    code = code.replace("        lossi.append(loss.log10().item())",
                        f"        open({str(markers[1])!r}, 'w').write('x')\n"
                        "        lossi.append(loss.log10().item())")
    code = code.replace("plt.plot(lossi)", f"open({str(markers[2])!r}, 'w').write('x')")
    path = tmp_path / "lecture.py"
    path.write_text(code)
    r = grade_submission(path, request=QUICK)
    assert r.score == r.max_score
    assert not any(m.exists() for m in markers)


# -- mistakes ----------------------------------------------------------------------------------------

def test_mistakes_are_graded_where_they_are(mistakes):
    assert mistakes.score == float(expectation(LECTURE / "mistakes.py", "score"))
    assert status(mistakes, "dW2") == "shape" and "transposed" in by_name(mistakes)[("ex1", "dW2")].message
    dbnbias = by_name(mistakes)[("ex1", "dbnbias")]
    assert dbnbias.passed and dbnbias.message.startswith(
        "shape (64,), but bnbias.grad has shape (1, 64): graded on its values, which match; "
        "`.sum(0, keepdim=True)` keeps the shape")
    assert status(mistakes, "dC") == "wrong"
    assert status(mistakes, "dlogits_fused", "ex2") == "wrong"
    failing = {name for (ex, name), g in by_name(mistakes).items() if ex == "ex1" and not g.passed}
    assert failing == {"dW2", "dC"}


def test_an_in_place_change_through_an_alias_is_reported_and_the_gradient_graded_as_assigned(
        mistakes):
    dbndiff = by_name(mistakes)[("ex1", "dbndiff")]
    assert dbndiff.passed
    line = line_of(LECTURE / "mistakes.py", "dhprebn += ")
    assert f"dbndiff was modified after you computed it, by line {line}" in dbndiff.message
    assert ".clone()" in dbndiff.message
    assert any("dbndiff was modified after you computed it" in n for n in mistakes.notes)


def test_exercises_not_attempted_are_missing_and_exercise_4_says_it_was_not_graded(mistakes):
    assert status(mistakes, "dhprebn_fused", "ex3") == "missing"
    ex4 = next(ex for ex in mistakes.exercises if ex.name == "ex4")
    assert ex4.score == 0 and all(g.status == "missing" for g in ex4.gradients)
    assert "exercise 4 not graded: no training loop with manual backward lines" in \
        ex4.gradients[0].message


def test_an_exercise_statement_that_raises_costs_only_its_own_gradient():
    r = grade_submission(LECTURE / "raises.py", request=NO_EX4)
    g = by_name(r)
    assert r.score == float(expectation(LECTURE / "raises.py", "score"))
    assert g[("ex1", "dbnvar")].status == "error"
    line = line_of(LECTURE / "raises.py", "dbn_var = ")
    assert (f"line {line}: raised NameError: name 'dbnvar_invv' is not defined (dbnvar_invv is "
            "assigned nowhere in your code: a typo for dbnvar_inv?)") in g[("ex1", "dbnvar")].message
    assert "dbnvar_invv" in g[("ex1", "dbnvar")].traceback
    dbndiff2 = g[("ex1", "dbndiff2")]
    assert dbndiff2.passed
    assert "used autograd's dbnvar" in dbndiff2.modes[0].message
    assert [name for (ex, name), v in g.items() if ex == "ex1" and not v.passed] == ["dbnvar"]


def test_a_hard_coded_batch_size_fails_in_a_hidden_config(tmp_path):
    code = (LECTURE / "correct.py").read_text().replace(
        "dlogprobs[range(n), Yb] = -1.0 / n", "dlogprobs[range(32), Yb] = -1.0 / 32")
    path = tmp_path / "hard_coded.py"
    path.write_text(code)
    request = GradeRequest(hidden=(Config(n=20, name="hidden"),),
                           options=GradingOptions(exercises=("ex1",)))
    g = by_name(grade_submission(path, request=request))[("ex1", "dlogprobs")]
    assert g.status in ("error", "wrong", "shape") and not g.passed
    line = line_of(path, "dlogprobs[range(32)")
    assert ("correct in the lecture config, wrong in hidden (n=20): the literal 32 at line "
            f"{line} is the lecture's n (20 in hidden): use n (or logits.shape[0])") in g.message


def test_an_endless_exercise_statement_times_out_with_a_clear_message(tmp_path):
    path = tmp_path / "endless.py"
    path.write_text("dlogprobs = torch.zeros_like(logprobs)\nwhile True:\n    dlogprobs += 0\n"
                    "dprobs = dlogprobs / probs\n")
    r = grade_submission(path, request=GradeRequest(options=GradingOptions(exercises=("ex1",)),
                                                    limits=Limits(call_seconds=2)))
    g = by_name(r)[("ex1", "dlogprobs")]
    assert g.status == "error" and "took longer than" in g.message


def test_a_name_from_code_that_is_not_run_is_explained(tmp_path):
    path = tmp_path / "uses_data.py"
    path.write_text("words = open('names.txt').read().splitlines()\nscale = 1 / len(words)\n"
                    "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -scale\n"
                    "dprobs = (1.0 / probs) * dlogprobs\n")
    g = by_name(grade_submission(path, request=GradeRequest(
        options=GradingOptions(exercises=("ex1",)))))[("ex1", "dlogprobs")]
    assert g.status == "error"
    assert "name 'scale' is not defined (scale is computed at line 2, which is not run: it reads " \
           "words" in g.message


def test_helpers_the_exercise_code_needs_are_run(tmp_path):
    path = tmp_path / "helpers.py"
    path.write_text("import math\n\ndef one_hot_rows(n, Yb, value):\n"
                    "    out = torch.zeros((n, 27))\n    out[range(n), Yb] = value\n    return out\n\n"
                    "HALF = math.sqrt(0.25)\n"
                    "dlogprobs = one_hot_rows(n, Yb, -1.0 / n) * HALF * 2\n"
                    "dprobs = (1.0 / probs) * dlogprobs\n")
    r = grade_submission(path, request=GradeRequest(hidden=(), options=GradingOptions(exercises=("ex1",))))
    assert status(r, "dlogprobs") == "exact" and status(r, "dprobs") == "exact"


def test_code_with_gradients_but_no_exercise_statements_says_what_was_looked_for(tmp_path):
    path = tmp_path / "inside.py"
    path.write_text("def f():\n    dlogprobs = 1\n    dprobs = 2\n")
    r = grade_submission(path, request=QUICK)
    assert r.status == "error" and "found no exercise code to grade: looked for" in r.message
    assert "cmp('name', dvar, var)" in r.message


def test_an_unfilled_lecture_notebook_is_refused_by_the_loader(tmp_path):
    path = tmp_path / "todo.py"
    path.write_text("# dlogprobs = ... # TODO\n# cmp('logprobs', dlogprobs, logprobs)\nx = 1\n")
    with pytest.raises(SubmissionError, match="no lecture-style assignments"):
        load_submission(path)


def test_a_training_loop_that_uses_autograd_is_not_graded_as_exercise_4(tmp_path):
    code = (LECTURE / "correct.py").read_text()
    start = code.index("        # the backward pass, by hand")
    end = code.index("        lr = 0.1 if i")
    path = tmp_path / "autograd_loop.py"
    path.write_text(code[:start] + "        for p in parameters:\n            p.grad = None\n"
                    "        loss.backward()\n        grads = [p.grad for p in parameters]\n"
                    + code[end:])
    r = grade_submission(path, request=QUICK)
    ex4 = next(ex for ex in r.exercises if ex.name == "ex4")
    assert ex4.score == 0 and "exercise 4 not graded" in ex4.gradients[0].message


def test_a_forward_tensor_changed_in_place_is_reported(tmp_path):
    path = tmp_path / "changes_probs.py"
    path.write_text("dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / n\n"
                    "dprobs = probs\ndprobs **= -1\ndprobs *= dlogprobs\n")
    r = grade_submission(path, request=GradeRequest(options=GradingOptions(exercises=("ex1",))))
    assert status(r, "dprobs") == "exact"
    assert any("changed the forward tensor probs in place, at line 4 (`dprobs **= -1`)" in n
               for n in r.notes)


def test_a_gradient_only_passed_to_cmp_is_read_from_the_cmp_call(tmp_path):
    path = tmp_path / "cmp_only.py"
    path.write_text("dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / n\n"
                    "dprobs = (1.0 / probs) * dlogprobs\n"
                    "cmp('counts_sum_inv', (counts * dprobs).sum(1, keepdim=True), counts_sum_inv)\n")
    g = by_name(grade_submission(path, request=GradeRequest(
        options=GradingOptions(exercises=("ex1",)))))[("ex1", "dcounts_sum_inv")]
    assert g.status == "exact" and "read from your cmp() call at line 4" in g.message


def test_exercise_4_with_its_own_names_is_graded_through_the_grads_list(tmp_path):
    code = (LECTURE / "correct.py").read_text()
    start = code.index("        # the backward pass, by hand")
    end = code.index("        lr = 0.1 if i")
    loop = code[start:end]
    for name in ("dlogits", "dhpreact", "dhprebn", "dembcat", "demb", "dW1", "db1", "dW2", "db2",
                 "dbngain", "dbnbias", "dC", "dh"):
        loop = loop.replace(name, "g_" + name[1:])
    path = tmp_path / "own_names.py"
    path.write_text(code[:start] + loop + code[end:])
    r = grade_submission(path, request=QUICK)
    ex4 = next(ex for ex in r.exercises if ex.name == "ex4")
    assert ex4.score == ex4.max_score, [(g.name, g.status, g.message) for g in ex4.gradients]


# -- the child side, run directly ---------------------------------------------------------------------

def test_the_child_reads_each_gradient_after_its_statements_and_sees_later_aliasing():
    steps = ["da = x * 2", "db = da", "db += 1", "dc = db * 0"]
    meta = {"files": {}, "inputs": ["x"], "scalars": {"n": 3}, "aliases": {},
            "steps": [{"file": "s.py", "line": i + 1, "code": c} for i, c in enumerate(steps)],
            "records": [{"after": 0, "var": "da", "key": "r0"},
                        {"after": 2, "var": "db", "key": "r1"}],
            "substitute": []}
    reply, out = run_lecture_code(meta, {"x": torch.ones(2)}, "s.py", CHILD_LIMITS,
                                  LectureSession())
    assert reply["status"] == "ok" and not reply["errors"]
    assert torch.equal(out["r0"], torch.full((2,), 2.0))     # da as assigned, before db += 1
    assert torch.equal(out["r1"], torch.full((2,), 3.0))
    assert reply["modified"] == [{"key": "r0", "step": 2}]


def test_the_child_records_errors_by_step_and_keeps_going():
    meta = {"files": {"s.py": "da = y\ndb = x\n"}, "inputs": ["x"], "scalars": {}, "aliases": {},
            "steps": [{"file": "s.py", "line": 1, "code": "da = y"},
                      {"file": "s.py", "line": 2, "code": "db = x"}],
            "records": [{"after": 1, "var": "db", "key": "r0"}], "substitute": []}
    reply, out = run_lecture_code(meta, {"x": torch.ones(1)}, "s.py", CHILD_LIMITS,
                                  LectureSession())
    assert reply["errors"][0]["step"] == 0 and "NameError" in reply["errors"][0]["message"]
    assert 'File "s.py", line 1' in reply["errors"][0]["traceback"]
    assert "r0" in out


def test_steps_the_grader_compiled_run_as_the_child_s_own_compile_would():
    # the code a child gets from the grader (compiled once per process, for every student)
    # names the student's cell in tracebacks, nested code too, and a step that does not compile
    # still raises its SyntaxError in the child
    from grader.sandbox.worker.lecture_code import compile_step, compiled_steps
    text = "da = x * 2\ndb = (lambda: y)()\ndc = da +\ndd = [z for z in x][0]\n"
    codes = text.splitlines()
    steps = [{"file": "nb.ipynb [cell 4]", "line": i + 1, "code": c} for i, c in enumerate(codes)]

    def kept(line, code):
        try:
            return compile_step("<elsewhere>", line, code)
        except SyntaxError:
            return None
    blob = compiled_steps(((s["file"], s["line"], s["code"]) for s in steps), kept)
    meta = {"files": {"nb.ipynb [cell 4]": text}, "inputs": ["x"], "scalars": {},
            "aliases": {}, "steps": steps, "records": [{"after": 3, "var": "dd", "key": "r0"}],
            "substitute": []}
    replies = []
    padded = bytearray(blob) + bytes(-len(blob) % 4)
    for given in ({}, {"compiled": torch.frombuffer(padded, dtype=torch.int32)}):
        session = LectureSession()
        reply, out = run_lecture_code(meta, {"x": torch.ones(2), **given}, "nb.ipynb",
                                      CHILD_LIMITS, session)
        assert torch.equal(out["r0"], torch.tensor(1.0))
        replies.append(reply)
        assert session.took_compiled == bool(given)
    assert replies[0]["errors"] == replies[1]["errors"]
    errors = replies[1]["errors"]
    assert [e["step"] for e in errors] == [1, 2]
    assert 'File "nb.ipynb [cell 4]", line 2, in <lambda>' in errors[0]["traceback"]
    assert "SyntaxError" in errors[1]["message"]


def test_a_step_that_exits_interrupts_or_is_not_done_says_so_as_a_stub_would():
    codes = ["import sys; sys.exit(3)", "raise KeyboardInterrupt", "raise NotImplementedError"]
    meta = {"files": {}, "inputs": ["x"], "scalars": {}, "aliases": {},
            "steps": [{"file": "s.py", "line": i + 1, "code": c} for i, c in enumerate(codes)],
            "records": [], "substitute": []}
    reply, _ = run_lecture_code(meta, {"x": torch.ones(1)}, "s.py", CHILD_LIMITS,
                                  LectureSession())
    assert [(e["kind"], e["message"]) for e in reply["errors"]] == [
        ("error", "called sys.exit(3)"), ("error", "raised KeyboardInterrupt"),
        ("missing", "raises NotImplementedError (not done yet)")]


def test_a_step_that_runs_out_of_memory_names_the_limit():
    meta = {"files": {}, "inputs": ["x"], "scalars": {}, "aliases": {},
            "steps": [{"file": "s.py", "line": 1, "code": "raise MemoryError()"}],
            "records": [], "substitute": []}
    reply, _ = run_lecture_code(meta, {"x": torch.ones(1)}, "s.py", CHILD_LIMITS,
                                  LectureSession())
    error = reply["errors"][0]
    assert error["limit"] == "memory"
    assert f"ran out of memory: the limit is {Limits().memory_bytes // 2**20:,} MiB" in \
        error["message"]


def test_a_lecture_style_memory_bomb_is_reported_as_the_memory_limit(tmp_path):
    path = tmp_path / "hoards.py"
    path.write_text("dlogprobs = torch.stack([torch.ones(16 * 2**20) for _ in iter(int, 1)])\n"
                    "dprobs = dlogprobs / probs\n")       # 64 MiB a time, kept
    request = GradeRequest(hidden=(), options=GradingOptions(exercises=("ex1",)),
                           limits=Limits(memory_bytes=768 * 2**20))
    r = grade_submission(path, request=request)
    g = by_name(r)[("ex1", "dlogprobs")]
    assert g.status == "error" and "ran out of memory: the limit is 768 MiB" in g.message
    assert any(c.limit == "memory" for c in g.configs)
    from grader.output.report import render_report

    assert "Limits hit" in render_report(r)


def test_the_childs_cmp_records_instead_of_printing(capsys):
    meta = {"files": {}, "inputs": ["x"], "scalars": {}, "aliases": {},
            "steps": [{"file": "s.py", "line": 1, "code": "cmp('x', x * 3, x)", "capture": True}],
            "records": [], "substitute": []}
    reply, out = run_lecture_code(meta, {"x": torch.ones(1)}, "s.py", CHILD_LIMITS,
                                  LectureSession())
    call = reply["cmp"][0]
    assert call["label"] == "x" and call["input"] == "x" and torch.equal(out[call["key"]],
                                                                         torch.full((1,), 3.0))
    assert capsys.readouterr().out == ""


def test_a_checker_whose_result_is_used_gets_true_and_the_checks_still_count(tmp_path):
    """``ok &= cmp(...)``: the recording cmp answers True, so the line runs on."""
    meta = {"files": {}, "inputs": ["x"], "scalars": {}, "aliases": {},
            "steps": [{"file": "s.py", "line": 1, "code": "ok = True", "capture": False},
                      {"file": "s.py", "line": 2, "code": "ok &= cmp('x', x * 3, x)",
                       "capture": False}],
            "records": [], "substitute": []}
    reply, _ = run_lecture_code(meta, {"x": torch.ones(1)}, "s.py", CHILD_LIMITS,
                                  LectureSession())
    assert reply["errors"] == [] and reply["cmp"][0]["input"] == "x"


def test_an_exception_that_cannot_be_printed_costs_only_its_own_gradient(tmp_path):
    """A hostile __str__ must not take the child (and every other gradient) down with it."""
    code = (LECTURE / "raises.py").read_text().replace(
        "dbn_var = (-0.5 * (bn_var + 1e-5) ** -1.5) * dbnvar_invv  # a typo: NameError",
        "class Loud(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\n"
        "def _boom():\n    raise Loud()\n"
        "dbn_var = _boom()")
    path = tmp_path / "loud.py"
    path.write_text(code)
    r = grade_submission(path, request=NO_EX4)
    g = by_name(r)
    assert r.score == float(expectation(LECTURE / "raises.py", "score"))
    assert "raised Loud: <a Loud that cannot be printed>" in g[("ex1", "dbnvar")].message
    assert [name for (ex, name), v in g.items() if ex == "ex1" and not v.passed] == ["dbnvar"]


def test_code_without_exercise_statements_scores_out_of_the_exercises_that_count(tmp_path):
    from grader.lecture.catalog import EXERCISES

    path = tmp_path / "inside.py"
    path.write_text("def f():\n    dlogprobs = 1\n    dprobs = 2\n")
    ex1_only = dataclasses.replace(QUICK, options=dataclasses.replace(QUICK.options,
                                                                      exercises=("ex1",)))
    r = grade_submission(path, request=ex1_only)
    assert r.status == "error" and r.mode == "chained"
    assert r.max_score == sum(g.points for g in EXERCISES["ex1"])


@pytest.mark.parametrize("odd, said", [
    ("dlogprobs.to(torch.complex64)", "is a complex64 tensor: return a real float32 tensor"),
    ("torch.quantize_per_tensor(dlogprobs, 0.001, 128, torch.quint8)",
     "is a quantized tensor (torch.quint8)"),
    ("torch.empty(dlogprobs.shape, device='meta')", "is a meta tensor, which has no values"),
    ("torch.nested.nested_tensor(list(dlogprobs))", "is a nested tensor"),
    ("dlogprobs.to_sparse()", "is a sparse tensor (torch.sparse_coo): call .to_dense()"),
], ids=["complex", "quantized", "meta", "nested", "sparse"])
def test_a_gradient_of_a_dtype_or_layout_not_graded_is_its_own_error_and_the_next_is_graded(
        tmp_path, odd, said):
    path = tmp_path / "odd.py"
    path.write_text("dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / n\n"
                    f"dlogprobs = {odd}\n"
                    "dprobs = torch.zeros_like(probs)\n"
                    "dprobs[range(n), Yb] = -1.0 / (n * probs[range(n), Yb])\n")
    g = by_name(grade_submission(path, request=GradeRequest(
        options=GradingOptions(exercises=("ex1",)))))
    assert g[("ex1", "dlogprobs")].status == "error"
    assert f"after line 3, dlogprobs {said}" in g[("ex1", "dlogprobs")].message
    assert g[("ex1", "dprobs")].status == "exact"


def test_steps_that_cannot_change_a_tensor_are_told_from_those_that_can():
    import ast

    from grader.sandbox.worker.lecture_code import OPAQUE, PURE, WRITES, _step_kind

    def kind(code: str) -> int:
        return _step_kind(ast.parse(code))

    for code in ["dprobs = (1.0 / probs) * dlogprobs", "dh = dlogits @ W2.T",
                 "dlogits = F.softmax(logits, 1)", "dx = x.max(1, keepdim=True).values",
                 "cmp('x', dx, x)", "a = b = [t.sum() for t in range(n)]"]:
        assert kind(code) == PURE, code
    for code in ["dx += 1", "dx[range(n), Yb] = -1.0 / n", "del dx[0]", "x.T[0] = 1",
                 "for k in range(3):\n    dC[Xb[k]] += demb[k]"]:
        assert kind(code) == WRITES, code
    for code in ["x.data[0] = 1", "y = x.numpy()", "y = x.add_(1)", "y = F.relu(x, True)",
                 "y = x.sum(out=z)", "y = f(**k)", "setattr(torch, 'x', 1)", "import os",
                 "def f(): pass", "y = x.__class__", "y: int = 3", "torch.zeros = f",
                 "y = getattr(x, 'add_')(1)", "y = (lambda: 1)()", "y = open('f')"]:
        assert kind(code) == OPAQUE, code


def test_a_file_loaded_before_the_steps_is_inert_only_when_it_ran_nothing_of_the_students():
    from grader.sandbox.worker.lecture_code import _inert_load

    assert _inert_load([]) and _inert_load(["import torch\n", "import torch.nn as nn\n",
                                            "def backward(a, b):\n", "    return [a.sum()]\n"])
    for code in ["import os\n", "@d\ndef f(): pass\n", "def f(a=g()): pass\n",
                 "def f(a: g()): pass\n", "x = 1\n", "def f(", "class C: pass\n"]:
        assert not _inert_load([code]), code


def test_a_change_made_by_torch_that_an_earlier_step_altered_is_seen_at_the_step_that_made_it():
    original = torch.Tensor.__mul__
    steps = ["def f(a, b):\n    x.add_(1)\n    return original(a, b)",
             "torch.Tensor.__mul__ = f", "da = x * 2", "db = da * 1"]
    meta = {"files": {}, "inputs": ["x"], "scalars": {}, "aliases": {},
            "steps": [{"file": "s.py", "line": i + 1, "code": c} for i, c in enumerate(steps)],
            "records": [{"after": 2, "var": "da", "key": "r0"}], "substitute": []}
    try:
        # the statements run in a namespace of their own: `original` reaches it as a tensor name
        # would not, through the builtins the namespace falls back to
        import builtins
        builtins.original = original
        reply, _ = run_lecture_code(meta, {"x": torch.ones(2)}, "s.py", CHILD_LIMITS,
                                  LectureSession())
    finally:
        torch.Tensor.__mul__ = original
        del builtins.original
    assert not reply["errors"], reply["errors"]
    assert reply["changed_inputs"] == [{"input": "x", "step": 2}]


# -- what the grading process compiles for the child, and what it leaves to it -------------------

def _compiled_steps_of(code):
    import marshal

    from grader.judge.lecture_run import LecturePlan
    from grader.submissions.lecture_source import read_lecture_code
    program = read_lecture_code(code, name="s.py", cells=False)
    return {text for _, _, text in marshal.loads(LecturePlan.of(program).compiled)}, program


def test_steps_that_fold_to_large_constants_or_warn_are_left_to_the_child(tmp_path):
    # compile() folds constants and runs in the grading process without the child's limits;
    # and a SyntaxWarning belongs in the student's output, which only the child's compile gives
    folds = "dprobs = dlogprobs / probs + 0 * len(" + " + ".join(
        f"('a' * {4096 - k},)" for k in range(60)) + ")"
    long = "dcounts_sum_inv = (" + " + ".join(["dprobs.sum(1, keepdim=True)"] * 90) + ") * 0"
    warns = "dcounts = dprobs * counts_sum_inv if 1 is not None else None"
    code = (LECTURE / "correct.py").read_text().replace(
        "dlogprobs = torch.zeros_like(logprobs)",
        f"dlogprobs = torch.zeros_like(logprobs)\n{folds}\n{long}\n{warns}")
    compiled, program = _compiled_steps_of(code)
    assert not {folds, long, warns} & compiled
    assert "dlogprobs = torch.zeros_like(logprobs)" in compiled       # the usual steps are sent
    path = tmp_path / "folds.py"
    path.write_text(code)
    r = grade_submission(path, request=GradeRequest(options=GradingOptions(exercises=("ex1",))))
    assert "SyntaxWarning" in r.output and by_name(r)[("ex1", "dlogprobs")].passed


def test_asserts_in_steps_run_even_when_the_grader_runs_optimised():
    import subprocess
    import sys

    from conftest import ROOT
    code = ("import marshal\nfrom grader.sandbox.worker.lecture_code import compile_step\n"
            "code, _ = compile_step('s.py', 1, 'assert False, \"kept\"')\n"
            "try:\n    exec(code, {})\nexcept AssertionError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "kept"


def test_a_form_feed_or_line_separator_in_a_py_file_keeps_its_steps_whole(tmp_path):
    # Python does not end a line at U+2028 or a form feed; str.splitlines does
    for odd in ("# a note\u2028still the note\n", "\f\n", "# page\x0cbreak\n"):
        code = (LECTURE / "correct.py").read_text().replace(
            "dlogprobs = torch.zeros_like(logprobs)",
            f"{odd}dlogprobs = torch.zeros_like(logprobs)")
        path = tmp_path / "odd.py"
        path.write_text(code)
        r = grade_submission(path, request=GradeRequest(options=GradingOptions(exercises=("ex1",))))
        assert by_name(r)[("ex1", "dlogprobs")].status == "exact", repr(odd)


def test_a_hidden_config_equal_to_the_lecture_s_is_taught_as_the_lecture_s():
    # under another name it is the same config: its verdicts are the lecture config's modes
    lecture = Config()
    request = GradeRequest(hidden=(dataclasses.replace(lecture, name="copy"),),
                           options=GradingOptions(exercises=("ex1",)))
    r = grade_submission(LECTURE / "mistakes.py", request=request)
    wrong = [g for g in r.exercises[0].gradients if g.status == "wrong" and g.hint]
    assert wrong
    for g in wrong:
        assert [m.hint for m in g.modes] == [g.hint] * len(g.modes), g.name
