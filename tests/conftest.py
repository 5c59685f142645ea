"""Shared fixtures: the repository's files, small submissions, a quick grading request."""

from __future__ import annotations

import importlib.util
import os
import shutil
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest

from grader.api import GradeRequest, grade_submission
from grader.judge.grading import GradingOptions
from grader.judge.probes import Probe, probe_book
from grader.lecture.catalog import GRADIENTS, Gradient
from grader.lecture.model import Config
from grader.output.results import Result
from grader.sandbox.limits import Limits

ROOT = Path(__file__).resolve().parent.parent
SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
SOLUTION = ROOT / "solutions" / "backprop.py"
EXERCISE = ROOT / "exercises" / "backprop.py"
NAMES = ROOT.parent / "shared" / "data" / "names.txt"

requires_names = pytest.mark.skipif(
    not NAMES.exists(), reason=f"the lecture's names.txt is not at {NAMES}")


def short_wall_time(seconds: float, **limits: Any) -> Limits:
    """Limits for a test where a stub hangs: ``seconds`` of wall time per call, and no call
    lowered to the least CPU priority (slow_seconds past the wall time). A lowered child gets
    about 1% of a CPU on a busy machine: the calls that must pass would race the wall time."""
    return Limits(call_seconds=seconds, slow_seconds=2 * seconds, **limits)


def reference_solution_module() -> ModuleType:
    """solutions/backprop.py imported in the test process: our own reference answers, never
    student code (which only ever runs in the sandbox)."""
    spec = importlib.util.spec_from_file_location("reference_solution", SOLUTION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_overrides(*override_files: Path) -> str:
    """The reference solution with some functions redefined (the last definition wins)."""
    parts = [SOLUTION.read_text()]
    parts += [f.read_text() for f in override_files]
    return "\n\n".join(parts)


def expectation(path: Path, key: str) -> str | None:
    """A submission's declared expectation: a comment line '# expect-KEY: value'."""
    m = re.search(rf"^# expect-{key}: *(.+)$", path.read_text(), re.M)
    return m.group(1).strip() if m else None


def gradient_by_name(name: str) -> Gradient:
    """The exercise 1-3 gradient called ``name``."""
    return next(g for g in GRADIENTS if g.name == name)


def probe_for(config: Config, gradient: Gradient, params: tuple[str, ...]) -> Probe | None:
    """The probe for a stub with these parameters in ``config``; None if it cannot be probed."""
    return probe_book(config).probe(gradient, params)


@pytest.fixture(scope="session")
def quick_request() -> GradeRequest:
    """The lecture config on the embedded words, few training steps."""
    return GradeRequest(config=Config(), options=GradingOptions(train_steps=3))


@pytest.fixture(scope="session")
def solution_result(quick_request: GradeRequest) -> Result:
    return grade_submission(SOLUTION, request=quick_request)


@pytest.fixture
def write_submission(tmp_path: Path):
    def write(code: str, name: str = "submission.py") -> Path:
        p = tmp_path / name
        p.write_text(code)
        return p
    return write


def require_bwrap(runner) -> None:
    """Skip where bubblewrap is not installed; where it is and we run as root (CI), it must
    work: a sandbox that silently falls back would hide a broken isolation."""
    runner.start()
    if runner.isolation == "bwrap":
        return
    if shutil.which("bwrap") and os.geteuid() == 0:
        pytest.fail(f"bubblewrap is installed but the sandbox did not use it: {runner.bwrap_problem}")
    pytest.skip(f"needs bubblewrap (bwrap) for file and network isolation: "
                f"{runner.bwrap_problem or 'not installed'}")


def descendants(root: int) -> Iterator[tuple[int, list[bytes]]]:
    """``root`` and the processes under it, nearest first, with their command lines (Linux
    /proc; a process gone meanwhile is left out)."""
    queue = [root]
    while queue:
        pid = queue.pop(0)
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            for task in os.listdir(f"/proc/{pid}/task"):
                queue += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
        except OSError:
            continue
        yield pid, argv


def is_fork_server(argv: list[bytes]) -> bool:
    """Whether a command line is a sandbox worker's (grader.sandbox.worker.entry's main)."""
    return argv[0] == sys.executable.encode() and any(
        b"from grader.sandbox.worker.entry import main" in a for a in argv)


def worker_pid(runner) -> int | None:
    """The pid of ``runner``'s worker as this machine sees it (inside bwrap it is a grandchild);
    its /proc/PID/root shows the sandbox's file system, children's working folders included."""
    if runner._worker is None or runner._worker.proc is None:
        return None
    return next((pid for pid, argv in descendants(runner._worker.proc.pid)
                 if is_fork_server(argv)), None)
