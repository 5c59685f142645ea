"""Shared fixtures: the repository's files, small submissions, a quick grading request."""

from __future__ import annotations

import importlib.util
import os
import shutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from grader.api import GradeRequest, grade_submission
from grader.judge.grading import GradingOptions
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
