"""Shapes that differ only by size-1 dimensions in front (grader.lecture.shapes): the rule, and
what it decides end to end, with `check` and `grade`, in both formats and every output."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import pytest

from grader.api import GradeRequest, grade_submission
from grader.judge.compare import Tolerance
from grader.judge.grading import GradingOptions
from grader.lecture.shapes import differs_by_leading_ones
from grader.output.results import read_result
from grader.sandbox.session import SandboxSession

from conftest import ROOT, SUBMISSIONS, expectation, with_overrides


@pytest.mark.parametrize("shape,target", [
    ((64,), (1, 64)), ((1, 64), (64,)), ((1, 27), (27,)), ((1, 1, 64), (64,)),
    ((64,), (1, 1, 64)), ((1, 1, 64), (1, 64)), ((1,), ()), ((1, 32, 1), (32, 1)),
])
def test_size_1_dimensions_in_front_are_the_only_difference(shape, target):
    assert differs_by_leading_ones(shape, target)


@pytest.mark.parametrize("shape,target", [
    ((64,), (64,)),                # no difference at all
    ((32,), (32, 1)),              # dlogit_maxes without keepdim: the other axis
    ((32, 1), (32,)),
    ((64, 1), (64,)),
    ((1, 64), (32, 64)),           # another element count
    ((64, 1), (1, 64)),            # transposed
    ((1, 64, 1), (64,)),
    ((2, 64), (64,)),
])
def test_any_other_difference_is_not(shape, target):
    assert not differs_by_leading_ones(shape, target)


# -- what the rule decides, end to end: check and grade, both formats, every output ---------------

SHAPES = SUBMISSIONS / "shapes"
LECTURE_PY = SHAPES / "lecture_leading_ones.py"
LECTURE_IPYNB = SHAPES / "lecture_leading_ones.ipynb"
NOTE = {"dbnmeani": "shape (64,), but bnmeani.grad has shape (1, 64): graded on its values, "
                    "which match; `.sum(0, keepdim=True)` keeps the shape",
        "db1": "shape (1, 64), but b1.grad has shape (64,): graded on its values, which match; "
               "`.sum(0)` without keepdim=True, or `.squeeze(0)`, gives the shape of b1"}
EX4_NOTE = {"db1": "shape (1, 200), but b1.grad has shape (200,): graded on its values, which "
                   "match",
            "dbngain": "shape (200,), but bngain.grad has shape (1, 200): graded on its values, "
                       "which match"}
STRICT_TOML = "[tolerance]\nstrict_shapes = true\n[training]\nsteps = 2\n"


def run(*args):
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def by_name(result):
    return {(ex.name, g.name): g for ex in result.exercises for g in ex.gradients}


@pytest.fixture(scope="module")
def stub_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("stubs") / "leading_ones.py"
    path.write_text(with_overrides(SHAPES / "leading_ones.py"))
    return path


@pytest.fixture(scope="module")
def checked(stub_file, tmp_path_factory):
    """`check` on the stub file: both modes, hidden configs and probes on (the defaults)."""
    out = tmp_path_factory.mktemp("checked") / "r.json"
    p = run("check", str(stub_file), "--steps", "2", "--json", str(out))
    return p, read_result(out)


def test_check_gives_full_marks_to_the_right_values_in_leading_size_1_shapes(checked):
    p, result = checked
    assert p.returncode == 0, p.stdout + p.stderr
    assert "total: 34 / 34  (all passed)" in p.stdout
    for name, note in NOTE.items():
        assert note in p.stdout, name
    for name, note in EX4_NOTE.items():
        assert note in p.stdout, name
    assert "keepdim=True?" not in p.stdout and "hint:" not in p.stdout
    assert result.score == result.max_score == float(expectation(SHAPES / "leading_ones.py",
                                                                 "score"))


def test_each_of_them_passes_in_both_modes_every_hidden_config_and_every_probe(checked):
    _, result = checked
    graded = by_name(result)
    for exercise, name in [("ex1", n) for n in ("db2", "dbngain", "dbnbias", "dbnmeani", "db1")] \
            + [("ex4", n) for n in ("db1", "db2", "dbngain", "dbnbias")]:
        g = graded[(exercise, name)]
        assert g.passed and g.points == g.max_points and g.hint is None, name
        assert g.actual_shape != g.expected_shape and g.shape_differs
        assert "graded on its values, which match" in g.message, name
        assert all(m.status in ("exact", "approx") for m in g.modes), name
        assert all(c.status in ("exact", "approx") for c in g.configs), (name, g.configs)
        assert exercise == "ex4" or len({c.config for c in g.configs}) == len(result.configs) == 3
        assert exercise == "ex4" or any(c.probe for c in g.configs), name
    assert graded[("ex4", "training")].passed


def test_chained_mode_feeds_the_students_own_leading_size_1_gradient_downstream(
        stub_file, monkeypatch):
    calls: list = []
    original = SandboxSession.call_many

    def call_many(self, batch, **kwargs):
        calls.extend(batch)
        return original(self, batch, **kwargs)

    monkeypatch.setattr(SandboxSession, "call_many", call_many)
    result = grade_submission(stub_file, request=GradeRequest(hidden=(), options=GradingOptions(
        exercises=("ex1",), probes=False)))
    assert result.score == result.max_score
    fed = [tuple(c.inputs["dbnmeani"].shape) for c in calls if c.name == "dhprebn"]
    assert sorted(fed) == [(1, 64), (64,)]          # isolated: autograd's; chained: the student's
    chained = next(m for m in by_name(result)[("ex1", "dhprebn")].modes if m.mode == "chained")
    assert chained.status in ("exact", "approx") and not chained.message


def test_a_size_1_dimension_elsewhere_and_another_element_count_stay_wrong(tmp_path):
    path = tmp_path / "other_size_one.py"
    path.write_text(with_overrides(SHAPES / "other_size_one.py"))
    p = run("check", str(path), "--steps", "1", "--json", str(tmp_path / "r.json"))
    assert p.returncode == 1 and "total: 32 / 34" in p.stdout, p.stdout
    graded = by_name(read_result(tmp_path / "r.json"))
    maxes, diff2 = graded[("ex1", "dlogit_maxes")], graded[("ex1", "dbndiff2")]
    assert maxes.status == diff2.status == "shape" and maxes.points == diff2.points == 0
    assert all(m.status == "shape" for g in (maxes, diff2) for m in g.modes)
    assert maxes.message == "shape (32,) but expected (32, 1): did you forget keepdim=True?"
    assert diff2.message.startswith("shape (1, 64) but expected (32, 64)")
    assert "graded on its values" not in p.stdout


@pytest.mark.parametrize("path", [LECTURE_PY, LECTURE_IPYNB], ids=["py", "ipynb"])
def test_check_gives_full_marks_to_the_lecture_s_own_sum_0_in_lecture_style(path, tmp_path):
    p = run("check", str(path), "--steps", "2", "--json", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "total: 34 / 34  (all passed)" in p.stdout
    for note in (*NOTE.values(), *EX4_NOTE.values()):
        assert note in p.stdout
    graded = by_name(read_result(tmp_path / "r.json"))
    assert graded[("ex1", "dbnmeani")].actual_shape == (64,)
    assert graded[("ex1", "dbnmeani")].expected_shape == (1, 64)
    # the student's (64,) dbnmeani flowed into dhprebn as they computed it
    assert "dbnmeani" not in " ".join(m.message or "" for m in graded[("ex1", "dhprebn")].modes)


def test_strict_shapes_make_each_of_them_a_shape_verdict(stub_file):
    strict = GradingOptions(tolerance=Tolerance(strict_shapes=True), train_steps=2)
    for path in (stub_file, LECTURE_PY, LECTURE_IPYNB):
        graded = by_name(grade_submission(path, request=GradeRequest(options=strict)))
        for key in (("ex1", "dbnmeani"), ("ex1", "db1"), ("ex4", "db1"), ("ex4", "dbngain")):
            g = graded[key]
            assert g.status == "shape" and g.points == 0, (path.name, key, g.status)
            assert "graded on its values" not in (g.message or "")
        assert graded[("ex1", "dbnmeani")].message == (
            "shape (64,) but expected (1, 64): did you forget keepdim=True?")
        assert graded[("ex4", "training")].status == "error"
        assert "the gradient for b1 is not a tensor of shape (200,)" in \
            graded[("ex4", "training")].message


def _grade_class(tmp_path, stub_file, name, config=None):
    students = tmp_path / f"class-{name}"
    students.mkdir()
    shutil.copy(stub_file, students / "stubs.py")
    shutil.copy(LECTURE_PY, students / "lecture.py")
    shutil.copy(LECTURE_IPYNB, students / "notebook.ipynb")
    out = tmp_path / f"out-{name}"
    args = ["grade", str(students), "--out", str(out)]
    if config:
        (tmp_path / f"{name}.toml").write_text(config)
        args += ["--config", str(tmp_path / f"{name}.toml")]
    p = run(*args)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    rows = list(csv.DictReader(io.StringIO((out / "gradebook.csv").read_text())))
    return out, {r["student"]: r for r in rows}


def test_grade_scores_them_in_the_gradebook_and_shows_the_note_in_every_output(
        tmp_path, stub_file):
    out, rows = _grade_class(tmp_path, stub_file, "default",
                             "[training]\nsteps = 2\n")
    assert {s: r["score"] for s, r in rows.items()} == {"stubs": "34", "lecture": "34",
                                                         "notebook": "34"}
    for student, row in rows.items():
        assert row["ex1.dbnmeani"] == "1" and row["ex1.db1"] == "1"
        assert row["problems"] == "" and row["first_wrong"] == "", student
        folder = out / "students" / student
        result = read_result(folder / "results.json")
        assert NOTE["dbnmeani"] in by_name(result)[("ex1", "dbnmeani")].message
        report = (folder / "report.html").read_text()
        assert "<strong>Note:</strong> " + NOTE["dbnmeani"] in report
        assert "yours <code>(64,)</code>" in report
        gradescope = json.loads((folder / "gradescope.json").read_text())
        test = next(t for t in gradescope["tests"] if t["name"].endswith(": dbnmeani"))
        assert test["status"] == "passed" and NOTE["dbnmeani"] in test["output"]


def test_grade_with_strict_shapes_takes_their_points(tmp_path, stub_file):
    _, rows = _grade_class(tmp_path, stub_file, "strict", STRICT_TOML)
    for student, row in rows.items():
        assert row["ex1.dbnmeani"] == "0" and row["ex1.db1"] == "0", student
        assert float(row["score"]) < 34, student
