"""Per-submission cost of the sandbox, measured side by side in one run.

For one submission (the reference solution: run the file, call one stub with the lecture's
inputs) it times, interleaved so that a busy machine slows every variant alike:

* in-process: exec the file in a fresh module and call the stub (no isolation at all);
* the sandboxed runner (a warm SandboxRunner: fork a child, load, call, stop), with bubblewrap
  when it works here and with process isolation only;
* a plain ``python student.py`` subprocess (a fresh interpreter importing torch), the cost the
  runner exists to avoid.

It prints medians and the ratios: the sandbox's overhead (sandboxed minus in-process) must stay
under 10% of the subprocess. Then it grades the whole reference solution with a shared runner,
to show what batch grading can expect. Run: ``python benchmarks/sandbox.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from grader.api import GradeRequest, grade_submission  # noqa: E402
from grader.lecture.model import Config, build_lecture_state  # noqa: E402
from grader.sandbox.limits import Limits
from grader.sandbox.runner import SandboxRunner
from grader.sandbox.session import run_in_sandbox  # noqa: E402

SOLUTION = ROOT / "solutions" / "backprop.py"


def in_process(code: str, inputs: dict[str, Any]) -> None:
    module = ModuleType("student")
    exec(compile(code, "student.py", "exec"), module.__dict__)  # noqa: S102
    module.__dict__["dlogprobs"](**inputs)


def sandboxed(runner: SandboxRunner, code: str, inputs: dict[str, Any]) -> None:
    outcome = run_in_sandbox(code, inputs, Limits(), function="dlogprobs", runner=runner)
    assert outcome.status == "ok", outcome.message


def fresh_interpreter() -> None:
    subprocess.run([sys.executable, str(SOLUTION)], check=True)


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="sandbox and in-process runs")
    parser.add_argument("--subprocess-repeat", type=int, default=5,
                        help="fresh-interpreter runs (each costs a torch import)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    code = SOLUTION.read_text()
    state = build_lecture_state(Config())
    inputs = {"logprobs": state.forward["logprobs"], "Yb": state.Yb, "n": state.config.n}

    runners: dict[str, SandboxRunner] = {}
    startup: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for isolation in ("bwrap", "process"):
            runner = SandboxRunner(isolation=isolation)
            try:
                startup[isolation] = timed(runner.start)
            except RuntimeError as e:
                print(f"({isolation}: not available here: {e})")
                continue
            runners[isolation] = runner

    times: dict[str, list[float]] = {"in-process": [], "subprocess": []}
    times.update({f"sandbox ({k})": [] for k in runners})
    for name, runner in runners.items():          # warm up: the first child of each
        sandboxed(runner, code, inputs)
    for i in range(args.repeat):
        times["in-process"].append(timed(lambda: in_process(code, inputs)))
        for name, runner in runners.items():
            times[f"sandbox ({name})"].append(timed(lambda: sandboxed(runner, code, inputs)))
        if i < args.subprocess_repeat:
            times["subprocess"].append(timed(fresh_interpreter))

    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"one submission (run the file, call dlogprobs), median of {args.repeat} "
          f"({args.subprocess_repeat} for the subprocess), interleaved:")
    for name, value in median.items():
        print(f"  {name:<20} {value * 1000:9.1f} ms")
    print("ratios:")
    for name in runners:
        s = median[f"sandbox ({name})"]
        overhead = s - median["in-process"]
        print(f"  sandbox ({name}) overhead / subprocess: {overhead / median['subprocess']:7.2%}"
              f"   (target < 10%)")
        print(f"  sandbox ({name}) / subprocess:          {s / median['subprocess']:7.3f}")
        print(f"  sandbox ({name}) / in-process:          {s / median['in-process']:7.1f}")
    print("one-time worker start-up (python, torch import, bubblewrap):")
    for name, value in startup.items():
        print(f"  {name:<20} {value * 1000:9.1f} ms")

    request = GradeRequest()
    for name, runner in runners.items():
        grade_submission(SOLUTION, request=request, runner=runner)     # warm
        spent = [timed(lambda: grade_submission(SOLUTION, request=request, runner=runner))
                 for _ in range(5)]
        m = statistics.median(spent)
        print(f"whole grading of the reference solution ({name}, shared runner, default "
              f"request): {m * 1000:.0f} ms median, {1 / m:.1f} submissions/s on one thread")
    for runner in runners.values():
        runner.close()


if __name__ == "__main__":
    main()
