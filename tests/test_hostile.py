"""Hostile submissions: every attack ends as a result with a specific message, stops nothing,
changes no other submission's result and leaves no process behind.

Each file in tests/submissions/hostile/ redefines one stub of the reference solution and declares
what must come of it in '# expect-KEY: value' comments (gradient, status, message, limit,
integrity, output, note, needs).
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from grader.api import GradeRequest, grade_submission
from grader.judge.grading import GradingOptions
from grader.output.results import Result
from grader.sandbox.limits import Limits
from grader.sandbox.runner import SandboxRunner

from conftest import SOLUTION, SUBMISSIONS, expectation, require_bwrap, with_overrides

HOSTILE = sorted((SUBMISSIONS / "hostile").glob("*.py"))
# small limits: the heavy attacks stay quick and gentle on a shared 2-core machine. Which limit
# an attack hits must not depend on how much CPU the machine has to spare: no call is lowered
# to the least CPU priority (slow_seconds past the wall time), and the wall time is far beyond
# what an attack that ends by itself or at another limit needs, even on a busy machine.
LIMITS = Limits(call_seconds=60.0, slow_seconds=120.0, start_seconds=30.0, cpu_seconds=30,
                memory_bytes=768 * 2**20, max_processes=8, output_bytes=4096)
# attacks that run until their wall time ends them: a short one
ENDLESS = ("infinite_loop", "busy_c_call", "fork_bomb")
ENDLESS_LIMITS = replace(LIMITS, call_seconds=2.0)
OPTIONS = GradingOptions(modes=("isolated",), exercises=("ex1",))
REQUEST = GradeRequest(options=OPTIONS, limits=LIMITS)
# attacks that need no file-system or network isolation, run again without bubblewrap
WITHOUT_BWRAP = ("infinite_loop", "fork_bomb", "memory_bomb", "segfault", "calls_backward",
                 "deletes_files", "forks_grandchild", "spawns_subprocess", "forward_mode_jacfwd",
                 "autograd_functional", "replaces_recorder", "unwatched_original",
                 "derivative_kernel")


def request_for(attack: Path) -> GradeRequest:
    return GradeRequest(options=OPTIONS,
                        limits=ENDLESS_LIMITS if attack.stem in ENDLESS else LIMITS)


@pytest.fixture(scope="module")
def runner():
    with SandboxRunner() as r:
        r.start()
        yield r


@pytest.fixture(scope="module")
def process_runner():
    with SandboxRunner(isolation="process") as r:
        yield r


def processes_of(uids: set[int]) -> list[int]:
    """Processes on this machine (every pid namespace) whose real uid is one of ``uids``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            m = re.search(r"^Uid:\s+(\d+)", status, re.M)
            if m and int(m.group(1)) in uids:
                found.append(int(entry))
    return found


def assert_nothing_left_behind(runner: SandboxRunner) -> None:
    if not runner.can_drop_uid:
        return   # children share the grader's uid: nothing to tell them apart by
    uids = set(runner.uids)
    assert uids, "the children ran under no uid of their own"
    deadline = time.monotonic() + 10
    while processes_of(uids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(uids) == []


def substituted(code: str, *, other: Path, out: Path, port: int) -> str:
    return (code.replace("__SOLUTION_PATH__", repr(str(SOLUTION)))
                .replace("__OTHER_SUBMISSION__", repr(str(other)))
                .replace("__OUTPUT_DIR__", repr(str(out)))
                .replace("__PORT__", str(port)))


def grade_attack(attack: Path, runner: SandboxRunner, tmp_path: Path
                 ) -> tuple[Result, Path, socket.socket]:
    folder, out = tmp_path / "submissions", tmp_path / "out"
    folder.mkdir(parents=True)
    out.mkdir(parents=True)
    other = folder / "classmate.py"
    other.write_text(SOLUTION.read_text())
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    path = folder / f"{attack.stem}.py"
    path.write_text(substituted(with_overrides(attack), other=other, out=out,
                                port=listener.getsockname()[1]))
    return grade_submission(path, request=request_for(attack), runner=runner), out, listener


def check_expectations(attack: Path, result: Result) -> None:
    review = expectation(attack, "review")
    assert result.status == ("review" if review else "graded"), result.message
    if review:       # the score withheld, the reason naming the line (or seen at run time)
        assert result.score == 0 and result.withheld_score is not None
        assert any(review in r and (", line " in r or r.startswith("at run time"))
                   for r in result.review), result.review
    name = expectation(attack, "gradient")
    g = next(g for g in result.gradients() if g.name == name)
    status = expectation(attack, "status")     # none: it depends on the isolation
    if status:
        assert g.status == status, g.message
    if status not in ("exact", "approx", None):
        assert g.points == 0
    for key, text in (("message", g.message or ""), ("output", result.output),
                      ("note", " ".join(result.notes))):
        want = expectation(attack, key)
        if want:
            assert want in text, f"{want!r} not in {text[-500:]!r}"
    limit = expectation(attack, "limit")
    if limit:
        assert f"(limit: {limit})" in (g.message or "")
    kind = expectation(attack, "integrity")
    if kind:
        assert kind in {f.kind for f in result.integrity}
    # only the attacked stub is affected: every other gradient of the solution still passes
    others = [h.name for h in result.gradients() if h.name != name and not h.passed]
    assert others == []


def full_marks(runner: SandboxRunner) -> bool:
    clean = grade_submission(SOLUTION, request=REQUEST, runner=runner)
    return clean.status == "graded" and clean.score == clean.max_score


@pytest.mark.parametrize("attack", HOSTILE, ids=lambda p: p.stem)
def test_an_attack_ends_as_a_result_and_harms_nothing(attack, runner, tmp_path):
    if expectation(attack, "needs") == "bwrap":
        require_bwrap(runner)
    result, out, listener = grade_attack(attack, runner, tmp_path)
    with listener:
        check_expectations(attack, result)
        for leak in ("LEAKED", "WROTE", "CONNECTED"):
            assert leak not in result.output
        assert list(out.iterdir()) == []
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert not Path("/tmp/backprop-grader-pwned").exists()
    assert_nothing_left_behind(runner)
    assert full_marks(runner)


@pytest.mark.parametrize("name", WITHOUT_BWRAP)
def test_without_bubblewrap_the_process_attacks_are_still_contained(name, process_runner,
                                                                     tmp_path):
    attack = SUBMISSIONS / "hostile" / f"{name}.py"
    result, _, listener = grade_attack(attack, process_runner, tmp_path)
    listener.close()
    assert process_runner.isolation == "process"
    check_expectations(attack, result)
    assert_nothing_left_behind(process_runner)
    assert full_marks(process_runner)


def test_bombs_in_one_session_do_not_disturb_a_clean_one_running_beside_them(runner, tmp_path):
    scores: list[float] = []
    clean = threading.Thread(target=lambda: scores.append(
        grade_submission(SOLUTION, request=REQUEST, runner=runner).score))
    clean.start()
    for name in ("fork_bomb", "memory_bomb"):
        attack = SUBMISSIONS / "hostile" / f"{name}.py"
        result, _, listener = grade_attack(attack, runner, tmp_path / name)
        listener.close()
        check_expectations(attack, result)
    clean.join()
    assert scores == [26.0]
    assert_nothing_left_behind(runner)


def test_autograd_is_flagged_in_the_results_and_the_terminal(runner, tmp_path):
    from grader.output.terminal import render_text

    result, _, listener = grade_attack(SUBMISSIONS / "hostile" / "calls_backward.py", runner,
                                       tmp_path)
    listener.close()
    kinds = {f.kind for f in result.integrity}
    assert {"autograd", "requires_grad", "source"} <= kinds
    assert any("loss.backward()" in f.detail for f in result.integrity if f.kind == "autograd")
    text = render_text(result)
    assert "INTEGRITY autograd" in text and "computed with autograd" in text


def test_the_flag_policy_grades_an_autograd_gradient_but_still_flags_it(runner, tmp_path):
    request = GradeRequest(options=replace(OPTIONS, integrity_policy="flag"), limits=LIMITS)
    path = tmp_path / "s.py"
    path.write_text(with_overrides(SUBMISSIONS / "hostile" / "calls_backward.py"))
    result = grade_submission(path, request=request, runner=runner)
    g = next(g for g in result.gradients() if g.name == "dlogprobs")
    assert g.status == "exact" and g.points == 1
    assert "autograd" in {f.kind for f in result.integrity}
