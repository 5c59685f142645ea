"""What hidden configs and random upstream probes cost per submission, side by side.

Times the grading work after the child has started (the part this feature adds to), on one warm
sandbox per submission, for: the lecture config only without probes (the core grader), lecture +
probes, and lecture + the default hidden configs (probes included), each for a correct
submission and for one with hard-coded sizes (whose failures are diagnosed with extra calls).
Prints milliseconds per submission and ratios to the core grader measured in the same run.

    python benchmarks/teaching_cost.py [--repeat 20] [--words names.txt]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from grader.api import GradeRequest, lecture_config  # noqa: E402
from grader.lecture.configs import HiddenConfigs  # noqa: E402
from grader.lecture.model import cached_lecture_state as _state  # noqa: E402
from grader.judge.exercise4 import grade_exercise4, grade_exercise4_hidden  # noqa: E402
from grader.judge.grading import GradingOptions  # noqa: E402
from grader.judge.hidden import grade_hidden_configs  # noqa: E402
from grader.judge.stubs import grade_stub_gradients  # noqa: E402
from grader.submissions.loader import load_submission  # noqa: E402
from grader.sandbox.limits import Limits
from grader.sandbox.session import SandboxSession  # noqa: E402

SOLUTION = ROOT / "solutions" / "backprop.py"
HARD_CODED = ROOT / "tests" / "submissions" / "hidden" / "hard_coded_sizes.py"


def _grade_once(session, functions, request: GradeRequest) -> None:
    options = request.options
    state = _state(request.config)
    hidden = request.hidden_configs()
    verdicts = grade_stub_gradients(session, functions, state, options)
    verdicts += grade_hidden_configs(session, functions, verdicts, state,
                                     tuple(_state(c) for c in hidden), options, state_for=_state)
    ex4_config = request.config.with_(n_hidden=200)
    ex4 = grade_exercise4(session, functions.get("backward"), ex4_config, options)
    if hidden:
        grade_exercise4_hidden(session, functions.get("backward"), ex4, ex4_config, hidden[0],
                               options)


def _open(path: Path) -> tuple[SandboxSession, dict]:
    submission = load_submission(path)
    session = SandboxSession(submission.code, submission.name, Limits())
    session.start()
    return session, submission.functions


def _measure(cells: dict, repeat: int) -> dict:
    """Round-robin over every (setup, subject) so that all of them see the same machine load."""
    times: dict = {key: [] for key in cells}
    for key, (session, functions, request) in cells.items():
        _grade_once(session, functions, request)                       # warm the caches
    for _ in range(repeat):
        for key, (session, functions, request) in cells.items():
            t = time.perf_counter()
            _grade_once(session, functions, request)
            times[key].append(time.perf_counter() - t)
    return {key: statistics.median(v) * 1000 for key, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--words", help="word list (default: the embedded one)")
    args = parser.parse_args()
    lecture = lecture_config(args.words)
    torch.set_num_threads(1)
    options = GradingOptions(train_steps=10)
    setups = {
        "lecture only, no probes": GradeRequest(config=lecture, hidden=HiddenConfigs.off(),
                                                options=GradingOptions(train_steps=10,
                                                                       probes=False)),
        "lecture + probes": GradeRequest(config=lecture, hidden=HiddenConfigs.off(),
                                         options=options),
        "lecture + hidden configs + probes": GradeRequest(config=lecture, options=options),
    }
    with tempfile.TemporaryDirectory() as tmp:
        hard = Path(tmp) / "hard_coded.py"
        hard.write_text(SOLUTION.read_text() + "\n\n" + HARD_CODED.read_text())
        subjects = {"correct": SOLUTION, "hard-coded sizes": hard}
        cells = {}
        try:
            for label, request in setups.items():
                for subject, path in subjects.items():
                    cells[label, subject] = (*_open(path), request)
            ms = _measure(cells, args.repeat)
        finally:
            for session, _, _ in cells.values():
                session.close()
    print(f"grading work per submission after the child started (median of {args.repeat}, ms, "
          "setups interleaved; one process, torch threads 1)")
    print(f"{'':<36}" + "".join(f"{s:>22}" for s in subjects))
    first = next(iter(setups))
    for label in setups:
        row = [f"{ms[label, s]:8.1f} ({ms[label, s] / ms[first, s]:4.2f}x)" for s in subjects]
        print(f"{label:<36}" + "".join(f"{c:>22}" for c in row))


if __name__ == "__main__":
    main()
