"""Batch grading: discovery, every student exactly once, resume, interruption, atomic files."""

from __future__ import annotations

import _thread
import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from grader.api import GradeRequest, error_result
from grader.batch.run import BatchError, grade_many
from grader.judge.grading import GradingOptions
from grader.lecture.catalog import EXERCISE1
from grader.output.results import ExerciseResult, GradientResult, Result, read_result
from grader.sandbox.limits import Limits
from grader.submissions.discovery import discover_submissions

from conftest import EXERCISE, ROOT, SOLUTION, SUBMISSIONS, expectation, with_overrides
from test_exports import assert_gradescope_schema

# A stub that loops times out in 2 s. No call is lowered to the least CPU priority
# (slow_seconds past the wall time): lowered, on a busy machine, a right answer's call gets
# about 1% of a CPU and could time out too.
QUICK_TOML = """\
[training]
steps = 1
[limits]
call_seconds = 2
slow_seconds = 4
start_seconds = 30
"""
QUICK = GradeRequest(options=GradingOptions(train_steps=1),
                     limits=Limits(call_seconds=2.0, slow_seconds=4.0, start_seconds=30.0))
WRONG = sorted((SUBMISSIONS / "wrong").glob("*.py")) + sorted((SUBMISSIONS / "broken").glob("*.py"))
SOLUTION_CODE = SOLUTION.read_text()


def gradebook(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((out / "gradebook.csv").read_text())))


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def zip_of(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def fake_grade(path: Path, request: GradeRequest) -> Result:
    """A stand-in for grade_submission: the first k exercise-1 gradients pass, k = lines."""
    k = min(len(path.read_text().splitlines()), len(EXERCISE1))
    gradients = tuple(GradientResult(g.name, g.variable, "exact" if i < k else "wrong",
                                     i < k, i < k, 0.0, 1.0 if i < k else 0.0, 1.0)
                      for i, g in enumerate(EXERCISE1))
    return Result(path.name, "graded", None, float(k), float(len(EXERCISE1)), "isolated", 3.3,
                  exercises=(ExerciseResult("ex1", float(k), float(len(EXERCISE1)), gradients),))


# -- discovery ------------------------------------------------------------------------------

def test_a_zip_of_the_whole_class_is_graded_like_its_folder(tmp_path):
    zip_of(tmp_path / "class.zip", {
        "hw4/Ann Lee_1_assignsubmission_file_/backprop.py": "x = 1\n",
        "hw4/Bo Chan_2_assignsubmission_file_/backprop.py": "x = 1\nx = 2\n",
        "hw4/cy.zip": "not a zip", "../escape.py": "x = 1\n", "/abs.py": "x = 1\n"})
    s = grade_many(tmp_path / "class.zip", tmp_path / "out", request=QUICK, grade=fake_grade)
    rows = gradebook(tmp_path / "out")
    assert [(r["student"], r["status"], r["score"]) for r in rows] == [
        ("Ann_Lee_1_assignsubmission_file", "graded", "1"),
        ("Bo_Chan_2_assignsubmission_file", "graded", "2"), ("cy", "error", "0")]
    assert rows[0]["submission"] == "Ann Lee_1_assignsubmission_file_/backprop.py"
    assert not (tmp_path / "escape.py").exists() and s.students == 3
    again = grade_many(tmp_path / "class.zip", tmp_path / "out", request=QUICK, grade=fake_grade)
    assert again.unchanged == 3
    (tmp_path / "bad.zip").write_bytes(b"PK nothing")
    with pytest.raises(BatchError, match="bad.zip: not a readable zip file"):
        grade_many(tmp_path / "bad.zip", tmp_path / "out2", grade=fake_grade)


def test_a_missing_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(BatchError, match="no such folder"):
        grade_many(tmp_path / "nope", tmp_path / "out", grade=fake_grade)


# -- the batch with a stand-in grader (fast) --------------------------------------------------

def small_class(tmp_path: Path, n: int = 6) -> Path:
    d = tmp_path / "in"
    for i in range(n):
        write(d / f"s{i:02d}.py", "x = 1\n" * (i + 1))
    return d


def test_every_student_gets_files_and_one_gradebook_row(tmp_path):
    d = small_class(tmp_path)
    write(d / "notes.txt", "not a submission")
    s = grade_many(d, tmp_path / "out", request=QUICK, grade=fake_grade, jobs=3)
    rows = gradebook(tmp_path / "out")
    assert [r["student"] for r in rows] == [f"s{i:02d}" for i in range(6)]
    assert [r["score"] for r in rows] == [str(i + 1) for i in range(6)]
    assert s.graded == 6 and s.unchanged == 0 and not s.interrupted
    assert [k.path for k in s.skipped] == ["notes.txt"]
    for i in range(6):
        folder = tmp_path / "out" / "students" / f"s{i:02d}"
        assert read_result(folder / "results.json").score == i + 1
        assert_gradescope_schema(json.loads((folder / "gradescope.json").read_text()))
        record = json.loads((folder / "record.json").read_text())
        assert record["status"] == "graded" and len(record["submission_sha256"]) == 64
        assert (folder / "report.html").is_file()
    manifest = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert len(manifest["students"]) == 6 and manifest["skipped"][0]["path"] == "notes.txt"
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_a_second_run_skips_unchanged_students_and_regrades_changed_ones(tmp_path):
    d, out = small_class(tmp_path), tmp_path / "out"
    calls: list[str] = []

    def counting(path, request):
        calls.append(path.name)
        return fake_grade(path, request)

    grade_many(d, out, request=QUICK, grade=counting)
    assert len(calls) == 6
    calls.clear()
    s = grade_many(d, out, request=QUICK, grade=counting)
    assert calls == [] and s.unchanged == 6 and s.graded == 0
    assert len(gradebook(out)) == 6
    write(d / "s03.py", "changed\n")
    s = grade_many(d, out, request=QUICK, grade=counting)
    assert calls == ["s03.py"] and s.unchanged == 5
    assert next(r for r in gradebook(out) if r["student"] == "s03")["score"] == "1"
    calls.clear()
    other = replace(QUICK, options=replace(QUICK.options, train_steps=2))
    grade_many(d, out, request=other, grade=counting)
    assert len(calls) == 6, "a new grading config regrades everyone"
    calls.clear()
    grade_many(d, out, request=other, grade=counting, resume=False)
    assert len(calls) == 6


def test_a_lost_or_half_written_file_makes_the_student_graded_again(tmp_path):
    d, out = small_class(tmp_path, 3), tmp_path / "out"
    grade_many(d, out, request=QUICK, grade=fake_grade)
    (out / "students" / "s01" / "gradescope.json").unlink()
    (out / "students" / "s02" / "results.json").write_text("{ half")
    write(out / "students" / "s00" / ".results.json.abc.tmp", "{ half")
    s = grade_many(d, out, request=QUICK, grade=fake_grade)
    assert s.unchanged == 1 and s.graded == 2
    assert not list(out.rglob("*.tmp"))


def test_a_grader_failure_on_one_student_is_that_students_row_only(tmp_path):
    d, out = small_class(tmp_path, 4), tmp_path / "out"

    def flaky(path, request):
        if path.name == "s02.py":
            raise RuntimeError("boom")
        return fake_grade(path, request)

    s = grade_many(d, out, request=QUICK, grade=flaky)
    rows = {r["student"]: r for r in gradebook(out)}
    assert s.graded == 4 and rows["s01"]["status"] == "graded"
    assert rows["s02"]["status"] == "error"
    assert "the grader failed on this submission (RuntimeError: boom)" in rows["s02"]["problems"]
    record = json.loads((out / "students" / "s02" / "record.json").read_text())
    assert "RuntimeError: boom" in record["grader_traceback"]


class _Heard(io.StringIO):
    """A progress stream that tells when the batch has said ``words``."""

    def __init__(self, words: str) -> None:
        super().__init__()
        self.words, self.said = words, threading.Event()

    def write(self, text: str) -> int:
        if self.words in text:
            self.said.set()
        return super().write(text)


def test_ctrl_c_keeps_what_finished_and_lists_the_rest_as_pending(tmp_path):
    """Ctrl-C lands while two students are being graded: they finish and are kept."""
    d, out = small_class(tmp_path, 12), tmp_path / "out"
    started = threading.Semaphore(0)
    progress = _Heard("interrupted: finishing")

    def held(path, request):          # until the batch has heard the Ctrl-C
        started.release()
        progress.said.wait(60)
        return fake_grade(path, request)

    def press_ctrl_c():
        for _ in range(2):
            started.acquire(timeout=60)
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    s = grade_many(d, out, request=QUICK, grade=held, jobs=2, progress=progress)
    rows = gradebook(out)
    assert progress.said.is_set()
    assert s.interrupted and s.graded == 2 and s.pending == 10
    assert len(rows) == 12 and len({r["student"] for r in rows}) == 12
    assert sum(r["status"] == "pending" for r in rows) == s.pending
    assert sum(r["status"] == "graded" for r in rows) == s.graded
    again = grade_many(d, out, request=QUICK, grade=fake_grade)
    assert again.unchanged == s.graded and again.graded == 12 - s.graded
    assert all(r["status"] == "graded" for r in gradebook(out))


def test_a_second_ctrl_c_stops_now_and_writes_nothing_for_unfinished_students(tmp_path):
    d, out = small_class(tmp_path, 4), tmp_path / "out"
    started, stopped = threading.Event(), threading.Event()
    before = set(threading.enumerate())

    def held(path, request):          # until both presses have landed
        started.set()
        stopped.wait(60)
        return fake_grade(path, request)

    def press_ctrl_c_twice():
        started.wait(60)
        presses = signal.getsignal(signal.SIGINT).__self__   # the batch's Interrupts, which
        # grade_many installs before the first grading starts
        for count in (1, 2):        # one at a time: two pending presses would count as one
            _thread.interrupt_main()
            deadline = time.monotonic() + 60
            while presses.count < count and time.monotonic() < deadline:
                time.sleep(0.01)

    threading.Thread(target=press_ctrl_c_twice, daemon=True).start()
    s = grade_many(d, out, request=QUICK, grade=held, jobs=2)
    stopped.set()                         # the abandoned gradings finish, and are dropped
    for thread in set(threading.enumerate()) - before:
        thread.join(60)
    assert s.interrupted and s.graded == 0 and s.pending == 4
    assert [r["status"] for r in gradebook(out)] == ["pending"] * 4
    assert not list(out.glob("students/*/record.json"))


def _pool_job(tmp_path: Path):
    from grader.batch.student import Job

    (tmp_path / "scratch").mkdir()
    return Job(tmp_path / "out", QUICK, "digest", None, tmp_path / "scratch")


def test_a_second_ctrl_c_keeps_the_students_whose_grading_had_finished_on_threads(tmp_path):
    """What finished before the second Ctrl-C, files written, is in that run's gradebook; the
    grading still running is dropped unwritten."""
    from grader.batch.threads import ThreadPool

    entries = discover_submissions(small_class(tmp_path, 2)).entries
    gate = threading.Event()

    def s01_waits(path, request):
        if path.stem == "s01":
            gate.wait(10)
        return fake_grade(path, request)

    job = _pool_job(tmp_path)
    pool = ThreadPool(2, job, s01_waits)
    for entry in entries:
        pool.submit(entry)
    deadline = time.monotonic() + 10
    while pool.done.qsize() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    finished = pool.abandon()
    gate.set()
    pool.close()
    for t in pool.threads:
        t.join(10)
    assert [d.entry.student for d in finished] == ["s00"]
    assert finished[0].result.status == "graded"
    assert (job.out / "students" / "s00" / "record.json").exists()
    assert not (job.out / "students" / "s01" / "record.json").exists()


def _gated_pool(tmp_path: Path, jobs: int):
    """A thread pool whose gradings wait for ``gate``; ``started`` once one waits."""
    from grader.batch.threads import ThreadPool

    started, gate = threading.Event(), threading.Event()

    def waits(path, request):
        started.set()
        gate.wait(10)
        return fake_grade(path, request)

    return ThreadPool(jobs, _pool_job(tmp_path), waits), started, gate


def test_a_thread_pool_counts_the_students_it_grades_not_its_idle_threads(tmp_path):
    entries = discover_submissions(small_class(tmp_path, 1)).entries
    pool, started, gate = _gated_pool(tmp_path, jobs=3)
    pool.submit(entries[0])
    assert started.wait(10) and pool.busy() == 1
    gate.set()
    assert pool.next_done(10) is not None and pool.busy() == 0
    pool.close()


def test_after_ctrl_c_a_thread_pool_waits_only_for_the_students_being_graded(tmp_path):
    """"finishing the 1 submission(s) being graded": those no thread had started are left
    pending, not graded after all."""
    entries = discover_submissions(small_class(tmp_path, 4)).entries
    pool, started, gate = _gated_pool(tmp_path, jobs=1)
    for entry in entries:
        pool.submit(entry)
    assert started.wait(10) and pool.busy() == 4
    pool.stop_taking()
    assert pool.busy() == 1
    gate.set()
    done = pool.next_done(10)
    assert done is not None and done.entry.student == "s00" and pool.busy() == 0
    for t in pool.threads:
        t.join(10)
    assert not any(t.is_alive() for t in pool.threads)
    assert not (pool.job.out / "students" / "s01").exists()


def test_a_second_ctrl_c_keeps_the_answers_worker_processes_had_sent(tmp_path, monkeypatch):
    """s00's answer was taken in but not handed to the batch yet, s01's is still in its pipe,
    s02 is being graded: abandon() returns the first two."""
    import grader.batch.processes
    from grader.batch.processes import ProcessPool

    entries = discover_submissions(small_class(tmp_path, 3)).entries
    release = tmp_path / "release"

    def s02_waits(path, *, request, runner):
        while path.stem == "s02" and not release.exists():
            time.sleep(0.02)
        return fake_grade(path, request)

    monkeypatch.setattr(grader.batch.processes, "grade_submission", s02_waits)
    job = _pool_job(tmp_path)
    pool = ProcessPool(3, job, entries, None)
    try:
        for entry in entries:
            pool.submit(entry)
        pipes = {entries[index].student: conn for conn, (_, index) in pool.workers.items()
                 if index is not None}
        assert pipes["s00"].poll(60) and pipes["s01"].poll(60)    # answered, not taken yet
        pool.ready.append(pool._done(*pool._take_message(pipes["s00"])))
        finished = pool.abandon()
    finally:
        release.touch()
        pool.close()
    assert sorted(d.entry.student for d in finished) == ["s00", "s01"]
    assert all(d.result.status == "graded" for d in finished)
    assert (job.out / "students" / "s01" / "record.json").exists()
    assert not (job.out / "students" / "s02" / "record.json").exists()


def test_the_batch_takes_what_abandon_kept(tmp_path):
    from grader.batch.progress import Progress
    from grader.batch.run import Interrupts, drive
    from grader.batch.student import Done

    entry = discover_submissions(small_class(tmp_path, 1)).entries[0]
    kept = Done(entry, fake_grade(entry.path, QUICK), 0.1)

    class TwiceInterrupted:
        def submit(self, entry):
            pass

        def next_done(self, timeout):
            return None

        def busy(self):
            return 1

        def stop_taking(self):
            pass

        def abandon(self):
            return [kept]

    interrupts = Interrupts()
    interrupts.count = 2
    taken = []
    assert drive(TwiceInterrupted(), [entry], taken.append, interrupts, Progress(1, None))
    assert taken == [kept]


def test_two_batches_cannot_write_the_same_output_at_once(tmp_path):
    d, out = small_class(tmp_path, 2), tmp_path / "out"
    inside = threading.Event()
    release = threading.Event()

    def blocking(path, request):
        inside.set()
        release.wait(10)
        return fake_grade(path, request)

    t = threading.Thread(target=grade_many, args=(d, out),
                         kwargs={"request": QUICK, "grade": blocking, "jobs": 1})
    t.start()
    try:
        assert inside.wait(10)
        with pytest.raises(BatchError, match="another grading run is writing there"):
            grade_many(d, out, request=QUICK, grade=fake_grade)
    finally:
        release.set()
        t.join()


def test_the_output_folder_inside_the_submissions_folder_is_not_a_submission(tmp_path):
    d = small_class(tmp_path, 2)
    s = grade_many(d, d / "graded", request=QUICK, grade=fake_grade)
    s = grade_many(d, d / "graded", request=QUICK, grade=fake_grade)
    assert s.students == 2 and ("graded", "the output folder") in [(k.path, k.reason)
                                                                   for k in s.skipped]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_messages_show_escape_sequences_instead_of_obeying_them():
    from grader.batch.progress import Progress

    tty = _Terminal()
    bar = Progress(2, tty)
    bar.update(failed=False)
    bar.message("skipped eve\x1b]0;pwned\x07\x1b[2J.py")
    bar.close()
    assert "\x1b" not in tty.getvalue() and "\x07" not in tty.getvalue()
    assert "skipped eve\\x1b]0;pwned\\x07\\x1b[2J.py" in tty.getvalue()


def test_progress_shows_count_rate_eta_and_failures_on_a_terminal_only(tmp_path):
    d = small_class(tmp_path, 3)
    write(d / "zz.py", "boom")

    def failing_one(path, request):
        if path.name == "zz.py":
            return error_result(path.name, "no exercise functions", request=request)
        return fake_grade(path, request)

    tty = _Terminal()
    grade_many(d, tmp_path / "o1", request=QUICK, grade=failing_one, progress=tty)
    line = tty.getvalue().rsplit("\r", 1)[-1]
    assert "4/4" in line and "/s" in line and "ETA 0:00" in line and "failed 1" in line
    plain = io.StringIO()
    grade_many(d, tmp_path / "o2", request=QUICK, grade=failing_one, progress=plain)
    assert plain.getvalue() == ""


# -- real grading: 40 mixed submissions -------------------------------------------------------

def _mixed_class(d: Path) -> dict[str, tuple[str, str | None]]:
    """Writes 40 students; returns id -> (expected status, expected text in problems)."""
    expect: dict[str, tuple[str, str | None]] = {}
    for i in range(5):
        write(d / f"correct{i}.py", SOLUTION_CODE)
        expect[f"correct{i}"] = ("graded", None)
    # what students actually hand in: the lecture's notebook and code, our stubs in a notebook
    write(d / "nb_lecture.ipynb", (SUBMISSIONS / "notebooks" / "correct.ipynb").read_text())
    write(d / "nb_stubs.ipynb", (SUBMISSIONS / "notebooks" / "stubs.ipynb").read_text())
    write(d / "lecture_style.py", (SUBMISSIONS / "lecture" / "correct.py").read_text())
    for sid in ("nb_lecture", "nb_stubs", "lecture_style"):
        expect[sid] = ("graded", None)
    write(d / "folder1" / "backprop.py", SOLUTION_CODE)
    write(d / "folder2" / "hw4" / "backprop.py", SOLUTION_CODE)
    write(d / "folder2" / "README.txt", "my submission")
    zip_of(d / "zipped1.zip", {"backprop.py": SOLUTION_CODE})
    zip_of(d / "zipped2.zip", {"zipped2/backprop.py": SOLUTION_CODE})
    for sid in ("folder1", "folder2", "zipped1", "zipped2"):
        expect[sid] = ("graded", None)
    for path in WRONG:
        write(d / f"wrong_{path.stem}.py", with_overrides(path))
        expect[f"wrong_{path.stem}"] = ("graded", None)
    for i in range(2):
        write(d / f"stubs{i}.py", EXERCISE.read_text())
        expect[f"stubs{i}"] = ("graded", None)
    erroring = {
        "syntax": ("def dprobs(:\n", "syntax error at line 1"),
        "empty": ("", "the file is empty"),
        "binary": (b"\xff\xfe\x00import torch", "not UTF-8"),
        "unrelated": ("print('hello world')\n", "found none of the exercise functions"),
    }
    for name, (code, text) in erroring.items():
        write(d / f"err_{name}.py", code)
        expect[f"err_{name}"] = ("error", text)
    hostile = {
        "loop_in_stub": ("def dprobs(dlogprobs, probs):\n    while True:\n        pass\n",
                         "graded", "dprobs() took longer than 2 s"),
        "exit_in_stub": ("import os\ndef dcounts(dprobs, counts_sum_inv, dcounts_sum):\n"
                         "    os._exit(3)\n", "graded", "ex1 dcounts: the process running your code"),
        "exit_at_top": ("import os\nos._exit(1)\n", "error", "exited with code 1"),
        "sys_exit_at_top": ("import sys\nsys.exit('bye')\n", "error", "sys.exit"),
        "ctrl_c_in_stub": ("def dh(dlogits, W2):\n    raise KeyboardInterrupt\n", "graded",
                           "ex1 dh: raised KeyboardInterrupt"),
        "print_flood": ("print('x' * 10_000_000)\n", "graded", None),
        "memory_bomb": ("def db2(dlogits):\n    return bytearray(10**12)\n", "graded", "ex1 db2:"),
    }
    for name, (code, status, text) in hostile.items():
        write(d / f"hostile_{name}.py", SOLUTION_CODE + "\n\n" + code)
        expect[f"hostile_{name}"] = (status, text)
    write(d / "notebook_broken.ipynb", '{"cells": [ {"cell_type": "code", "source": ')
    expect["notebook_broken"] = ("error", "notebook_broken.ipynb")
    write(d / "folder_two" / "a.py", SOLUTION_CODE)
    write(d / "folder_two" / "b.py", SOLUTION_CODE)
    expect["folder_two"] = ("error", "several files could be the submission")
    write(d / "loop_at_top.py", SOLUTION_CODE + "\nwhile True:\n    pass\n")
    expect["loop_at_top"] = ("timeout", "took longer than 30 s")
    (d / "folder_empty").mkdir()
    expect["folder_empty"] = ("error", "no .py or .ipynb file in folder_empty/ (it is empty)")
    write(d / "zip_broken.zip", b"PK\x03\x04 not really")
    expect["zip_broken"] = ("error", "zip_broken.zip: not a readable zip file")
    write(d / "twice.py", SOLUTION_CODE)
    write(d / "twice.ipynb", "{}")
    expect["twice"] = ("error", "several submissions for twice")
    write(d / "README.md", "instructions, not a submission")
    return expect


def test_forty_mixed_submissions_each_appear_once_with_the_right_status(tmp_path):
    d, out = tmp_path / "in", tmp_path / "out"
    expect = _mixed_class(d)
    assert len(expect) == 40
    config = write(tmp_path / "quick.toml", QUICK_TOML)
    p = subprocess.run([sys.executable, "-m", "grader", "grade", str(d), "--out", str(out),
                        "--jobs", "2", "--config", str(config)],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    assert "skipped README.md: not a .py, .ipynb or .zip file" in p.stdout
    rows = gradebook(out)
    assert sorted(r["student"] for r in rows) == sorted(expect), "every student exactly once"
    for row in rows:
        status, text = expect[row["student"]]
        assert row["status"] == status, (row["student"], row["problems"])
        if text:
            assert text in row["problems"], (row["student"], row["problems"])
        folder = out / "students" / row["student"]
        result = read_result(folder / "results.json")
        assert result.status == status and str(result.score) .rstrip("0").rstrip(".") == \
            row["score"].rstrip("0").rstrip(".") or float(row["score"]) == result.score
        assert_gradescope_schema(json.loads((folder / "gradescope.json").read_text()))
    by_id = {r["student"]: r for r in rows}
    full = ("correct", "folder1", "folder2", "zipped")
    for sid in [s for s in expect if s.startswith(full)]:
        assert by_id[sid]["score"] == by_id[sid]["max_score"] == "34", sid
    for sid in ("nb_lecture", "lecture_style", "nb_stubs"):   # graded; their scores: test_notebook
        assert float(by_id[sid]["score"]) > 0 and by_id[sid]["ex1.dlogprobs"] == "1", sid
    for path in WRONG:
        row = by_id[f"wrong_{path.stem}"]
        assert row["first_wrong"] == expectation(path, "first-wrong")
        assert float(row["score"]) < 34 and row[f"ex1.{row['first_wrong']}"] == "0"
    assert by_id["hostile_loop_in_stub"]["ex1.dprobs"] == "0"
    assert by_id["hostile_loop_in_stub"]["ex1.dlogprobs"] == "1", "the rest is still graded"
    assert by_id["hostile_print_flood"]["score"] == "34"
    assert (out / "summary.html").is_file()


# -- kill -9 and Ctrl-C on the real command -------------------------------------------------

def _small_real_class(d: Path) -> int:
    for i in range(3):
        write(d / f"correct{i}.py", SOLUTION_CODE)
    for path in WRONG[:3]:
        write(d / f"wrong_{path.stem}.py", with_overrides(path))
    write(d / "stubs.py", EXERCISE.read_text())
    write(d / "syntax.py", "def dprobs(:\n")
    return len(list(d.iterdir()))


def _grade_command(d: Path, out: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "grader", "grade", str(d), "--out", str(out), "--jobs", "2",
            "--config", str(config)]


def _records(out: Path) -> set[str]:
    return {p.parent.name for p in out.glob("students/*/record.json")}


def _outputs(out: Path) -> dict[str, str]:
    """Every output file's content, without what legitimately differs between runs."""
    files = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file() or p.name == ".lock":
            continue
        text = p.read_text()
        if p.name == "record.json":
            record = json.loads(text)
            record.pop("seconds")
            text = json.dumps(record)
        files[p.relative_to(out).as_posix()] = text
    return files


def test_a_batch_killed_with_sigkill_resumes_with_nothing_lost_or_duplicated(tmp_path):
    d = tmp_path / "in"
    total = _small_real_class(d)
    config = write(tmp_path / "quick.toml", QUICK_TOML)
    full, killed = tmp_path / "full", tmp_path / "killed"
    p = subprocess.run(_grade_command(d, full, config), capture_output=True, text=True, cwd=ROOT,
                       timeout=600)
    assert p.returncode == 0, p.stderr

    proc = subprocess.Popen(_grade_command(d, killed, config), cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(_records(killed)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _records(killed)
    assert 2 <= len(done_before) < total, "killed mid-batch"
    for name in done_before:                    # what was recorded is complete and readable
        read_result(killed / "students" / name / "results.json")

    p = subprocess.run(_grade_command(d, killed, config), capture_output=True, text=True,
                       cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr
    assert f"graded now {total - len(done_before)} " in p.stdout
    assert f"unchanged {len(done_before)}" in p.stdout
    assert _outputs(killed) == _outputs(full)
    rows = gradebook(killed)
    assert len(rows) == total and len({r["student"] for r in rows}) == total


def test_ctrl_c_on_the_command_stops_cleanly_and_the_next_run_finishes(tmp_path):
    d, out = tmp_path / "in", tmp_path / "out"
    total = _small_real_class(d)
    config = write(tmp_path / "quick.toml", QUICK_TOML)
    proc = subprocess.Popen(_grade_command(d, out, config), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not _records(out) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    rows = gradebook(out)
    assert len(rows) == total and any(r["status"] == "pending" for r in rows)
    finished = {r["student"] for r in rows if r["status"] != "pending"}
    assert finished == _records(out)
    p = subprocess.run(_grade_command(d, out, config), capture_output=True, text=True, cwd=ROOT,
                       timeout=600)
    assert p.returncode == 0 and f"unchanged {len(finished)}" in p.stdout
    assert not any(r["status"] == "pending" for r in gradebook(out))


def test_the_grade_command_reports_a_wrong_folder_or_config_in_one_line(tmp_path):
    def grade(*args):
        return subprocess.run([sys.executable, "-m", "grader", "grade", *args], capture_output=True,
                              text=True, cwd=ROOT, timeout=120)

    p = grade(str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert p.returncode == 2 and "nowhere: no such folder" in p.stderr and "Traceback" not in p.stderr
    bad = write(tmp_path / "a.toml", "[training]\nstep = 3\n")
    p = grade(str(tmp_path), "--out", str(tmp_path / "out"), "--config", str(bad))
    assert p.returncode == 2 and "a.toml: 'training.step' is not a known key: did you mean 'steps'?" \
        in p.stderr
    p = grade(str(tmp_path), "--out", str(tmp_path / "out"), "--resume", "--regrade")
    assert p.returncode == 2 and "not allowed with argument" in p.stderr


# -- worker processes -------------------------------------------------------------------------

def test_without_a_grade_function_each_job_is_a_process_of_its_own(tmp_path, monkeypatch):
    """The default: gradings run in worker processes (the grading work is Python and would
    share one core on threads); results come back as JSON, the same as on threads."""
    import grader.batch.processes

    d = small_class(tmp_path, 4)
    pids = tmp_path / "pids"
    pids.mkdir()

    def grade_in_worker(path, *, request, runner):
        (pids / str(os.getpid())).touch()
        return fake_grade(path, request)

    monkeypatch.setattr(grader.batch.processes, "grade_submission", grade_in_worker)
    s = grade_many(d, tmp_path / "processes", request=QUICK, jobs=2)
    grade_many(d, tmp_path / "threads", request=QUICK, grade=fake_grade, jobs=2)
    assert s.graded == 4 and str(os.getpid()) not in {p.name for p in pids.iterdir()}
    assert 1 <= len(list(pids.iterdir())) <= 2
    for student in ("s00", "s01", "s02", "s03"):
        by_process = (tmp_path / "processes" / "students" / student / "results.json").read_text()
        by_thread = (tmp_path / "threads" / "students" / student / "results.json").read_text()
        assert by_process == by_thread
    assert gradebook(tmp_path / "processes") == gradebook(tmp_path / "threads")


@pytest.mark.parametrize("enabled", [True, False])
def test_gradings_run_with_the_garbage_collector_on_and_the_batch_leaves_it_as_it_was(
        tmp_path, monkeypatch, enabled):
    """The batch process pauses the collector while it waits for the grading processes
    (collector_paused); they must collect their cycles, and the caller's setting must come
    back."""
    import gc

    import grader.batch.processes

    d = small_class(tmp_path, 2)
    seen = tmp_path / "seen"
    seen.mkdir()

    def grade_in_worker(path, *, request, runner):
        (seen / f"{path.stem}-{gc.isenabled()}").touch()
        return fake_grade(path, request)

    monkeypatch.setattr(grader.batch.processes, "grade_submission", grade_in_worker)
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        s = grade_many(d, tmp_path / "out", request=QUICK, jobs=2)
        after = gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert s.graded == 2 and after is enabled
    assert sorted(p.name for p in seen.iterdir()) == ["s00-True", "s01-True"]


def _slow_students_wait_for_the_others(tmp_path: Path, monkeypatch, slow: set[str],
                                       seconds: float) -> tuple[dict[str, int], set[str]]:
    """A class of six graded with jobs=1, where the ``slow`` students' code runs long (their
    grading says so through the runner, as a session does when it lowers a child) and their
    grading then waits for all the others to be graded, for ``seconds`` at most from when the
    first slow one began (one moment for all). Returns how many others each slow student saw
    graded (by then, or half a second before), and the grading processes' pids."""
    import grader.batch.processes

    d = small_class(tmp_path, 6)
    done, pids = tmp_path / "done", tmp_path / "pids"
    done.mkdir()
    pids.mkdir()
    others = 6 - len(slow)
    clock = tmp_path / "until"

    def until() -> float:
        """The first slow student sets the moment, on the system's clock (one for all)."""
        mine = tmp_path / f"until-{os.getpid()}"
        mine.write_text(str(time.monotonic() + seconds))
        try:
            os.link(mine, clock)
        except FileExistsError:
            pass
        return float(clock.read_text())

    def grade_in_worker(path, *, request, runner):
        (pids / str(os.getpid())).touch()
        if path.stem in slow:
            runner.on_slow_call()
            end = until()
            saw = 0             # as seen a while before the end: not once another has ended
            while time.monotonic() < end:
                graded = len(list(done.iterdir()))
                if time.monotonic() < end - 0.5 or graded == others:
                    saw = graded
                if graded == others:
                    break
                time.sleep(0.02)
            (tmp_path / f"{path.stem}.saw").write_text(str(saw))
        else:
            (done / path.stem).touch()
        return fake_grade(path, request)

    monkeypatch.setattr(grader.batch.processes, "grade_submission", grade_in_worker)
    s = grade_many(d, tmp_path / "out", request=QUICK, jobs=1)
    assert s.graded == 6 and {r["status"] for r in gradebook(tmp_path / "out")} == {"graded"}
    return ({k: int((tmp_path / f"{k}.saw").read_text()) for k in slow},
            {p.name for p in pids.iterdir()})


def test_a_student_whose_code_runs_long_does_not_hold_up_the_others(tmp_path, monkeypatch):
    """A loop waiting out its wall time holds no job: with jobs=1, the five students after
    it are graded (by a second grading process) while it waits."""
    saw, pids = _slow_students_wait_for_the_others(tmp_path, monkeypatch, {"s00"}, 60.0)
    assert saw == {"s00": 5} and len(pids) == 2


def test_slow_students_take_at_most_as_many_extra_processes_as_jobs(tmp_path, monkeypatch):
    saw, pids = _slow_students_wait_for_the_others(tmp_path, monkeypatch, {"s00", "s01"}, 2.0)
    assert saw == {"s00": 0, "s01": 0} and len(pids) == 2     # jobs=1: two processes at most


def test_a_worker_gets_its_next_student_before_its_answer_is_read(tmp_path, monkeypatch):
    """Reading an answer (JSON, dataclasses) takes the batch process a while: the worker that
    sent it is not left idle meanwhile."""
    import grader.batch.processes
    from grader.batch.processes import ProcessPool

    monkeypatch.setattr(grader.batch.processes, "grade_submission",
                        lambda path, *, request, runner: fake_grade(path, request))
    busy_with_while_read: dict[str, list[str]] = {}
    done = ProcessPool._done

    def reading(self, index, message):
        busy_with_while_read[self.entries[index].student] = sorted(
            self.entries[i].student for _, i in self.workers.values() if i is not None)
        return done(self, index, message)

    monkeypatch.setattr(ProcessPool, "_done", reading)
    s = grade_many(small_class(tmp_path, 3), tmp_path / "out", request=QUICK, jobs=1)
    assert s.graded == 3
    assert busy_with_while_read == {"s00": ["s01"], "s01": ["s02"], "s02": []}


def test_an_answer_that_cannot_be_read_is_that_students_error_row(tmp_path, monkeypatch):
    import grader.batch.processes
    from grader.batch.processes import ProcessPool

    monkeypatch.setattr(grader.batch.processes, "grade_submission",
                        lambda path, *, request, runner: fake_grade(path, request))
    done = ProcessPool._done
    monkeypatch.setattr(ProcessPool, "_done", lambda self, index, message: done(
        self, index, b"{not json" if self.entries[index].student == "s01" else message))
    grade_many(small_class(tmp_path, 3), tmp_path / "out", request=QUICK, jobs=1)
    rows = {r["student"]: r for r in gradebook(tmp_path / "out")}
    assert rows["s01"]["status"] == "error" and "could not be read" in rows["s01"]["problems"]
    assert rows["s00"]["status"] == rows["s02"]["status"] == "graded"


def test_a_worker_process_that_dies_costs_its_student_a_row_and_the_batch_goes_on(tmp_path,
                                                                                  monkeypatch):
    import grader.batch.processes

    d = small_class(tmp_path, 4)

    def dies_on_s1(path, *, request, runner):
        if path.stem == "s01":
            os._exit(9)
        return fake_grade(path, request)

    monkeypatch.setattr(grader.batch.processes, "grade_submission", dies_on_s1)
    s = grade_many(d, tmp_path / "out", request=QUICK, jobs=2)
    rows = {r["student"]: r for r in gradebook(tmp_path / "out")}
    assert sorted(rows) == ["s00", "s01", "s02", "s03"]
    assert rows["s01"]["status"] == "error" and "worker process died" in rows["s01"]["problems"]
    assert all(rows[k]["status"] == "graded" for k in ("s00", "s02", "s03"))
    assert s.graded == 4 and s.failed == 1


def test_the_class_files_are_the_same_whether_jobs_are_processes_or_threads(tmp_path):
    """Worker processes send the batch only what the gradebook and the summary show; the
    students' own files hold everything."""
    from grader.api import grade_submission

    d = tmp_path / "in"
    write(d / "correct.py", SOLUTION_CODE)
    write(d / "wrong.py", with_overrides(WRONG[0]))
    write(d / "raises.py", SOLUTION_CODE + "\n\ndef dprobs(dlogprobs, probs):\n    return 1 / 0\n")
    write(d / "prints.py", "print('hello ' * 100)\n" + SOLUTION_CODE)
    by_process = grade_many(d, tmp_path / "p", request=QUICK, jobs=2)
    by_thread = grade_many(d, tmp_path / "t", request=QUICK, jobs=2,
                           grade=lambda path, request: grade_submission(path, request=request))
    assert by_process.statuses == by_thread.statuses
    for name in ("gradebook.csv", "summary.html"):
        assert (tmp_path / "p" / name).read_text() == (tmp_path / "t" / name).read_text(), name
    for student in ("correct", "wrong", "raises", "prints"):
        full = read_result(tmp_path / "p" / "students" / student / "results.json")
        assert full == read_result(tmp_path / "t" / "students" / student / "results.json")
    assert "hello" in read_result(tmp_path / "p" / "students" / "prints" / "results.json").output


def test_a_batch_with_nothing_left_to_grade_starts_no_worker(tmp_path, monkeypatch):
    import grader.batch.run

    d, out = small_class(tmp_path, 2), tmp_path / "out"
    grade_many(d, out, request=QUICK, grade=fake_grade)

    def no_pool(*args, **kwargs):
        raise AssertionError("a worker was started")

    monkeypatch.setattr(grader.batch.run, "ProcessPool", no_pool)
    s = grade_many(d, out, request=QUICK)
    assert s.unchanged == 2 and s.graded == 0 and len(gradebook(out)) == 2


class _FakeRunner:
    def __init__(self, can_drop_uid: bool, *, starts: bool = True) -> None:
        self.can_drop_uid, self.starts = can_drop_uid, starts
        self.launched = self.started = False

    def launch(self) -> "_FakeRunner":
        self.launched = True
        return self

    def start(self) -> "_FakeRunner":
        if not self.starts:
            raise RuntimeError("the sandbox worker did not start")
        self.started = True
        return self


def test_workers_share_the_sandbox_worker_only_where_children_get_uids_of_their_own():
    """Without a uid per child, a shared worker could not tell one student's stray processes
    from another's: each grading process then gets a worker of its own."""
    from grader.batch.processes import _ready_to_share

    sharing = _FakeRunner(can_drop_uid=True)
    assert _ready_to_share(sharing) is sharing and sharing.started
    assert _ready_to_share(_FakeRunner(can_drop_uid=False)) is None
    assert _ready_to_share(_FakeRunner(can_drop_uid=True, starts=False)) is None
    assert _ready_to_share(None) is None


def test_the_callers_sandbox_worker_is_launched_only_where_it_can_be_shared(monkeypatch):
    import contextlib

    import grader.batch.processes
    from grader.batch.processes import launch_shared_runner

    given = _FakeRunner(can_drop_uid=True)
    monkeypatch.setattr(grader.batch.processes, "can_share_worker", lambda: False)
    with contextlib.ExitStack() as stack:
        assert launch_shared_runner(given, stack) is None and not given.launched
    monkeypatch.setattr(grader.batch.processes, "can_share_worker", lambda: True)
    with contextlib.ExitStack() as stack:
        assert launch_shared_runner(given, stack) is given and given.launched


def test_without_a_callers_sandbox_worker_the_batch_launches_its_own_and_closes_it(monkeypatch):
    import contextlib

    import grader.batch.processes
    from grader.batch.processes import launch_shared_runner

    made: list[_FakeRunner] = []

    class Own(_FakeRunner, contextlib.AbstractContextManager):
        def __init__(self) -> None:
            super().__init__(can_drop_uid=True)
            self.closed = False
            made.append(self)

        def __exit__(self, *exc: object) -> None:
            self.closed = True

    monkeypatch.setattr(grader.batch.processes, "SandboxRunner", Own)
    monkeypatch.setattr(grader.batch.processes, "can_share_worker", lambda: True)
    with contextlib.ExitStack() as stack:
        own = launch_shared_runner(None, stack)
        assert own is made[0] and own.launched and not own.closed
    assert own.closed


def test_broken_cells_lambdas_grad_reads_and_run_time_functions_in_the_gradebook(tmp_path):
    d = tmp_path / "class"
    files = {"unfinished": SUBMISSIONS / "unparsable" / "unfinished_line.ipynb",
             "lambdas": SUBMISSIONS / "run_time" / "lambdas.py",
             "reads_grad": SUBMISSIONS / "lecture" / "reads_grad.py",
             "globals_loop": SUBMISSIONS / "run_time" / "globals_loop.py",
             "raises": SUBMISSIONS / "run_time" / "raises_after_backward.py"}
    for sid, path in files.items():
        write(d / f"{sid}{path.suffix}", path.read_text())
    grade_many(d, tmp_path / "out", request=QUICK, jobs=1)
    rows = {r["student"]: r for r in gradebook(tmp_path / "out")}
    assert {sid: (rows[sid]["status"], float(rows[sid]["score"])) for sid in files} == {
        "unfinished": ("graded", 34.0), "lambdas": ("graded", 34.0),
        "reads_grad": ("graded", 29.0), "globals_loop": ("error", 0.0), "raises": ("error", 0.0)}
    assert "made at run time" in rows["globals_loop"]["problems"]
    assert "integrity" in rows["reads_grad"]["problems"]
    assert ".backward()" in rows["raises"]["problems"]


# -- class input: one bad member is that member's line, never the class's end ------------------

def test_a_class_zip_with_bad_members_grades_the_rest_and_lists_each_bad_one(tmp_path):
    path = tmp_path / "class.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hw4/alice.py", "x = 1\n")
        z.writestr("hw4/" + "n" * 300 + ".py", "x = 1\n")         # over-long name
        z.writestr("hw4/bob.py", "x = 1\nx = 2\n")
        z.writestr("hw4/bob.py/backprop.py", "x = 1\n")           # a file and a folder
        z.writestr("hw4/../../evil.py", "x = 1\n")
    s = grade_many(path, tmp_path / "out", request=QUICK, grade=fake_grade, jobs=1)
    assert [r["student"] for r in gradebook(tmp_path / "out")] == ["alice", "bob"]
    assert {k.path for k in s.skipped} == {"hw4/" + "n" * 300 + ".py", "hw4/bob.py/backprop.py",
                                           "hw4/../../evil.py"}
    manifest = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert len(manifest["skipped"]) == 3


def test_a_students_corrupt_zip_member_could_not_be_read_not_the_graders_failure(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    with zipfile.ZipFile(d / "dave.zip", "w") as z:
        z.writestr("backprop.py", "x = 1\n" * 20)
    data = bytearray((d / "dave.zip").read_bytes())
    at = data.index(b"PK\x01\x02")
    data[at + 24:at + 28] = (5).to_bytes(4, "little")        # it lies about its size
    (d / "dave.zip").write_bytes(bytes(data))
    grade_many(d, tmp_path / "out", request=QUICK, grade=fake_grade, jobs=1)
    (row,) = gradebook(tmp_path / "out")
    assert row["status"] == "error" and "dave.zip/backprop.py: could not be read" in row["problems"]
    assert "please report" not in row["problems"]
    record = json.loads((tmp_path / "out" / "students" / "dave" / "record.json").read_text())
    assert "grader_traceback" not in record


def test_colliding_ids_are_two_rows_and_a_note_in_the_manifest(tmp_path):
    d = tmp_path / "in"
    write(d / "alice.py", "x = 1\n")
    write(d / "alice!.py", "x = 1\nx = 2\n")
    s = grade_many(d, tmp_path / "out", request=QUICK, grade=fake_grade, jobs=1)
    assert [(r["student"], r["score"]) for r in gradebook(tmp_path / "out")] == [
        ("alice", "1"), ("alice-2", "2")]
    manifest = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert manifest["notes"] == list(s.notes) == [
        "alice.py (graded as alice) and alice!.py (graded as alice-2) make the same id: each is "
        "graded under its own"]
