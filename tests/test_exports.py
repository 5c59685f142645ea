"""Exports: the gradebook CSV and Gradescope's results.json, checked against the published spec."""

import csv
import io
import json
from dataclasses import replace

from grader.api import GradeRequest, error_result
from grader.assignment import GradescopeSettings
from grader.lecture.catalog import EXERCISES
from grader.output.exports import GradebookRow, gradebook_columns, gradescope_results, render_gradebook
from grader.judge.grading import GradingOptions
from grader.judge.scoring import points_table
from grader.output.results import ExerciseResult, GradientResult, IntegrityFlag, Result

# Gradescope "Autograder Specifications", Output format
# (https://gradescope-autograders.readthedocs.io/en/latest/specs/#output-format and
# github.com/gradescope/autograder_samples docs/specs.md): the fields, their types and values.
_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
_FORMATS = {"text", "html", "simple_format", "md", "ansi"}
_TOP = {"score": (int, float), "execution_time": (int, float), "output": str,
        "output_format": str, "test_output_format": str, "test_name_format": str,
        "visibility": str, "stdout_visibility": str, "extra_data": dict, "tests": list,
        "leaderboard": list}
_TEST = {"score": (int, float), "max_score": (int, float), "status": str, "name": str,
         "name_format": str, "number": str, "output": str, "output_format": str, "tags": list,
         "visibility": str, "extra_data": dict}


def assert_gradescope_schema(data: dict) -> None:
    """Only fields of the spec, with the spec's types and values; scores add up."""
    json.dumps(data, allow_nan=False)            # strict JSON: no NaN / Infinity
    assert set(data) <= set(_TOP), set(data) - set(_TOP)
    for key, kind in _TOP.items():
        if key in data:
            assert isinstance(data[key], kind) and not isinstance(data[key], bool), key
    # "score": optional, but required if not on each test case
    assert "score" in data or all("score" in t for t in data.get("tests", []))
    for key in ("visibility", "stdout_visibility"):
        assert data.get(key, "visible") in _VISIBILITY, key
    for key in ("output_format", "test_output_format", "test_name_format"):
        assert data.get(key, "text") in _FORMATS, key
    for test in data.get("tests", []):
        assert set(test) <= set(_TEST), set(test) - set(_TEST)
        for key, kind in _TEST.items():
            if key in test:
                assert isinstance(test[key], kind) and not isinstance(test[key], bool), key
        assert test.get("status", "passed") in ("passed", "failed")
        assert test.get("visibility", "visible") in _VISIBILITY
        assert test.get("output_format", "text") in _FORMATS
        assert 0 <= test["score"] <= test.get("max_score", test["score"])
        assert all(isinstance(t, str) for t in test.get("tags", []))
    if data.get("tests"):
        assert abs(sum(t["score"] for t in data["tests"]) - data["score"]) < 1e-9


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_gradebook_has_a_column_per_exercise_and_per_gradient():
    columns = gradebook_columns(points_table(GradingOptions()))
    assert columns[:4] == ["student", "status", "score", "max_score"]
    assert {"ex1", "ex2", "ex3", "ex4", "ex1.dlogprobs", "ex1.dC", "ex4.dC", "ex4.training",
            "ex2.dlogits_fused", "ex3.dhprebn_fused"} <= set(columns)
    assert len([c for c in columns if "." in c]) == sum(len(g) for g in EXERCISES.values())
    only = gradebook_columns(points_table(GradingOptions(exercises=("ex2",))))
    assert "ex2.dlogits_fused" in only and "ex1.dlogprobs" not in only and "ex1" not in only


def test_gradebook_rows_for_graded_failed_and_pending_students(solution_result):
    options = GradingOptions()
    failed = error_result("carol.py", "carol.py: syntax error at line 1")
    text = render_gradebook([
        GradebookRow("alice", "alice.py", solution_result, "students/alice/report.html"),
        GradebookRow("carol", "carol.py", failed),
        GradebookRow("dave", "dave/backprop.py", None),
    ], points=points_table(options))
    alice, carol, dave = rows_of(text)
    assert (alice["status"], alice["score"], alice["max_score"]) == ("graded", "34", "34")
    assert alice["ex1"] == "26" and alice["ex1.dlogprobs"] == "1" and alice["ex4.training"] == "0.5"
    assert alice["report"] == "students/alice/report.html"
    assert carol["status"] == "error" and carol["score"] == "0" and carol["ex1.dlogprobs"] == ""
    assert "syntax error at line 1" in carol["problems"]
    assert dave["status"] == "pending" and dave["score"] == "" and dave["max_score"] == "34"
    assert "interrupted" in dave["problems"]


def test_gradebook_names_errors_and_time_limits_inside_a_graded_submission(solution_result):
    ex1 = solution_result.exercises[0]
    timed_out = replace(ex1.gradients[1], status="error", points=0.0,
                        message="dprobs() took longer than 2 s (time limit)")
    result = replace(solution_result, exercises=(
        replace(ex1, gradients=(ex1.gradients[0], timed_out, *ex1.gradients[2:])),
        *solution_result.exercises[1:]),
        integrity=(IntegrityFlag("autograd", "calls loss.backward()"),))
    (row,) = rows_of(render_gradebook([GradebookRow("a", "a.py", result)],
                                      points=points_table(GradingOptions())))
    assert "ex1 dprobs: dprobs() took longer than 2 s (time limit)" in row["problems"]
    assert "autograd: calls loss.backward()" in row["problems"]


def test_student_text_cannot_become_a_spreadsheet_formula():
    hostile = error_result("=HYPERLINK(\"http://x\")", "=cmd|' /C calc'!A0\nsecond line")
    (row,) = rows_of(render_gradebook([GradebookRow("=1+1", "@SUM(A1)", hostile)],
                                      points=points_table(GradingOptions())))
    assert row["student"] == "'=1+1" and row["submission"] == "'@SUM(A1)"
    assert row["problems"].startswith("'=cmd") and "\n" not in row["problems"]


def test_student_text_in_the_gradebook_shows_its_escape_sequences_to_cat(tmp_path):
    forged = "\x1b[2J\x1b]0;pwned\x07\x9b2J\u202e"
    hostile = error_result(f"eve{forged}.py", f"raised ValueError: {forged}")
    text = render_gradebook([GradebookRow(f"eve{forged}", f"eve{forged}.py", hostile)],
                            points=points_table(GradingOptions()))
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in text
    (row,) = rows_of(text)
    assert row["problems"] == "raised ValueError: \\x1b[2J\\x1b]0;pwned\\x07\\x9b2J\\u202e"


def test_gradescope_results_follow_the_spec_with_a_test_per_gradient(solution_result):
    data = gradescope_results(solution_result, points=points_table(GradingOptions()),
                              settings=GradescopeSettings("after_due_date", "visible"),
                              execution_time=12.6)
    assert_gradescope_schema(data)
    assert data["score"] == 34 and data["execution_time"] == 13
    assert data["visibility"] == "after_due_date" and data["stdout_visibility"] == "visible"
    assert len(data["tests"]) == sum(len(g) for g in EXERCISES.values())
    first = data["tests"][0]
    assert first["name"] == "Exercise 1: dlogprobs" and first["number"] == "1.1"
    assert first["status"] == "passed" and first["score"] == first["max_score"] == 1
    assert "loss = -logprobs[range(n), Yb].mean()" in first["output"]
    dhpreact = next(t for t in data["tests"] if t["name"].endswith("dhpreact"))
    assert "tanh" in dhpreact["output"]             # why approximate, not wrong


def test_a_failing_gradient_shows_its_message_and_hint():
    g = GradientResult("dprobs", "probs", "wrong", False, False, 0.5, 0.0, 1.0,
                       message="12 of 864 elements differ", hint="probs feeds log: 1/probs")
    result = Result("a.py", "graded", None, 0.0, 1.0, "isolated", 3.3,
                    exercises=(ExerciseResult("ex1", 0.0, 1.0, (g,)),))
    data = gradescope_results(result, points=points_table(GradingOptions(exercises=("ex1",))))
    assert_gradescope_schema(data)
    test = next(t for t in data["tests"] if t["name"].endswith("dprobs"))
    assert test["status"] == "failed" and test["score"] == 0
    assert "12 of 864 elements differ" in test["output"] and "hint: probs feeds log" in test["output"]


def test_an_ungradable_submission_still_lists_every_gradient_at_zero():
    request = GradeRequest(options=GradingOptions(exercises=("ex2", "ex4")))
    data = gradescope_results(error_result("x.ipynb", "x.ipynb: not valid JSON", request=request),
                              points=points_table(request.options))
    assert_gradescope_schema(data)
    assert data["score"] == 0 and len(data["tests"]) == 1 + len(EXERCISES["ex4"])
    assert sum(t["max_score"] for t in data["tests"]) == 6
    assert all(t["output"] == "not graded: x.ipynb: not valid JSON" for t in data["tests"])
    assert "x.ipynb: not valid JSON" in data["output"]


def test_the_schema_check_rejects_what_gradescope_would():
    good = {"score": 1.0, "tests": [{"score": 1.0, "max_score": 1.0, "name": "t"}]}
    assert_gradescope_schema(good)
    for bad in ({**good, "visibility": "public"}, {**good, "scores": 1},
                {**good, "tests": [{"score": 2.0, "max_score": 1.0}]},
                {**good, "tests": [{"score": 1.0, "status": "ok"}]},
                {**good, "score": float("nan")}):
        try:
            assert_gradescope_schema(bad)
        except (AssertionError, ValueError):
            continue
        raise AssertionError(f"accepted {bad}")
