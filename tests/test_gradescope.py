"""Gradescope: the autograder zip, and its run_autograder grading a submission as Gradescope would."""

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import grader.gradescope
from grader.assignment import Assignment, AssignmentError, load_assignment
from grader.gradescope import build_autograder, default_torch_spec, run_gradescope

from conftest import ROOT, SOLUTION
from test_exports import assert_gradescope_schema

QUICK_TOML = """\
title = "HW 4"
exercises = ["ex1", "ex2", "ex3"]
modes = ["isolated"]
words = "data/words.txt"
[gradescope]
visibility = "after_published"
"""


@pytest.fixture
def assignment_file(tmp_path: Path) -> Path:
    (tmp_path / "course" / "data").mkdir(parents=True)
    (tmp_path / "course" / "data" / "words.txt").write_text(
        "\n".join(["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte"] * 30))
    path = tmp_path / "course" / "assignment.toml"
    path.write_text(QUICK_TOML)
    return path


def test_the_zip_has_setup_run_autograder_the_config_and_the_grader(tmp_path, assignment_file):
    zip_path = build_autograder(tmp_path / "autograder.zip", config=assignment_file)
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        mode = {i.filename: i.external_attr >> 16 for i in z.infolist()}
        setup = z.read("setup.sh").decode()
        run = z.read("run_autograder").decode()
        assert z.read("assignment.toml").decode() == QUICK_TOML
    assert {"setup.sh", "run_autograder", "assignment.toml", "data/words.txt", "pyproject.toml",
            "grader/__init__.py", "grader/cli.py", "grader/data/census_first_names.txt"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert mode["setup.sh"] & stat.S_IXUSR and mode["run_autograder"] & stat.S_IXUSR
    assert setup.startswith("#!/usr/bin/env bash") and run.startswith("#!/usr/bin/env bash")
    assert f"--index-url https://download.pytorch.org/whl/cpu {default_torch_spec()}" in setup
    assert "pip install -q /autograder/source" in setup
    assert "-m grader gradescope run" in run and "/autograder/results/results.json" in run


def test_the_same_inputs_build_the_same_zip(tmp_path, assignment_file):
    a = build_autograder(tmp_path / "a.zip", config=assignment_file, torch_spec="torch>=2.1")
    b = build_autograder(tmp_path / "b.zip", config=assignment_file, torch_spec="torch>=2.1")
    assert a.read_bytes() == b.read_bytes()
    assert "'torch>=2.1'" in zipfile.ZipFile(a).read("setup.sh").decode()


def test_a_bad_config_fails_at_build_time_not_at_the_first_submission(tmp_path):
    bad = tmp_path / "a.toml"
    bad.write_text("[limits]\ncall_second = 3\n")
    with pytest.raises(AssignmentError, match="'limits.call_second' is not a known key"):
        build_autograder(tmp_path / "x.zip", config=bad)
    assert not (tmp_path / "x.zip").exists()
    outside = tmp_path / "b.toml"
    outside.write_text('words = "../names.txt"\n')
    (tmp_path.parent / "names.txt").write_text("emma\nava\n" * 100)
    with pytest.raises(AssignmentError, match="put the word list beside the assignment file"):
        build_autograder(tmp_path / "x.zip", config=outside)


def _unpack_autograder(tmp_path: Path, zip_path: Path) -> tuple[Path, str]:
    """An /autograder folder as Gradescope lays it out, and run_autograder pointed at it."""
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(root / "source")
    (root / "results").mkdir()
    script = (root / "source" / "run_autograder").read_text()
    script = script.replace("/autograder/venv/bin/python", sys.executable)
    return root, script.replace("/autograder", str(root))


def test_run_autograder_grades_the_submission_from_the_zips_own_copy_of_the_grader(
        tmp_path, assignment_file):
    root, script = _unpack_autograder(tmp_path, build_autograder(tmp_path / "ag.zip",
                                                                 config=assignment_file))
    (root / "submission").mkdir()
    (root / "submission" / "backprop.py").write_text(SOLUTION.read_text())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                       cwd=root, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.loads((root / "results" / "results.json").read_text())
    assert_gradescope_schema(data)
    assert data["score"] == 30 and data["visibility"] == "after_published"
    assert len(data["tests"]) == 28 and all(t["status"] == "passed" for t in data["tests"])
    assert data["extra_data"]["status"] == "graded"
    where = subprocess.run([sys.executable, "-c", "import grader; print(grader.__file__)"],
                           capture_output=True, text=True, cwd=root / "source", env=env)
    assert where.stdout.strip() == str(root / "source" / "grader" / "__init__.py")


def test_a_submission_that_cannot_be_graded_gets_zero_and_the_reason(tmp_path):
    sub = tmp_path / "submission"
    sub.mkdir()
    (sub / "hw.py").write_text("def dprobs(:\n")
    results = tmp_path / "results" / "results.json"
    data = run_gradescope(submission_dir=sub, results_path=results)
    assert json.loads(results.read_text()) == data
    assert_gradescope_schema(data)
    assert data["score"] == 0 and "hw.py: syntax error at line 1" in data["output"]
    assert sum(t["max_score"] for t in data["tests"]) == 34


def test_an_empty_or_ambiguous_submission_folder_says_so(tmp_path):
    sub = tmp_path / "submission"
    sub.mkdir()
    data = run_gradescope(submission_dir=sub, results_path=tmp_path / "r.json")
    assert data["score"] == 0 and "no .py or .ipynb file" in data["output"]
    (sub / "a.py").write_text("")
    (sub / "b.py").write_text("")
    data = run_gradescope(submission_dir=sub, results_path=tmp_path / "r.json")
    assert "several files could be the submission" in data["output"] and "a.py, b.py" in data["output"]


def test_a_failure_of_the_grader_still_writes_results_and_tells_the_instructor(
        tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("grader bug")

    monkeypatch.setattr(grader.gradescope, "grade_submission", broken)
    sub = tmp_path / "submission"
    sub.mkdir()
    (sub / "backprop.py").write_text(SOLUTION.read_text())
    data = run_gradescope(submission_dir=sub, results_path=tmp_path / "r.json",
                          assignment=Assignment())
    assert_gradescope_schema(data)
    assert data["score"] == 0 and "autograder itself failed" in data["output"]
    assert "RuntimeError: grader bug" in capsys.readouterr().out     # stdout: instructors only


def test_the_cli_builds_the_zip_and_reports_a_bad_config_in_one_line(tmp_path, assignment_file):
    run = [sys.executable, "-m", "grader", "gradescope", "build"]
    p = subprocess.run([*run, "--out", str(tmp_path / "ag.zip"), "--config", str(assignment_file)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0 and "autograder written to" in p.stdout
    assert load_assignment(assignment_file).title == "HW 4"
    bad = tmp_path / "bad.toml"
    bad.write_text("[hidden]\nenabled = 1\n")
    p = subprocess.run([*run, "--out", str(tmp_path / "x.zip"), "--config", str(bad)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 2 and "'hidden.enabled' is a number (1), expected true or false" \
        in p.stderr and "Traceback" not in p.stderr
