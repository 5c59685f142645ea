"""What moving torch's code into huge pages saves each sandboxed child, side by side in one run.

The sandbox's worker copies the torch code it ran into huge pages before it forks
(grader/_hugepages.py; ``SandboxRunner(huge_pages=...)``). This grades the reference solution N
times in a row with a worker that does and one that does not, alternating rounds so that a VM
drifting faster or slower affects both alike, and prints per child: CPU (user + system, from the
worker's reaped children) and page faults, and the grader process's own CPU, which should not
change. Linux only (it reads /proc). Run: ``python benchmarks/hugepages.py [--n 100]
[--rounds 2]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.api import GradeRequest, grade_submission, prepare_grading  # noqa: E402
from grader.sandbox import SandboxRunner  # noqa: E402

SOLUTION = ROOT / "solutions" / "backprop.py"


def _children_usage(pid: int) -> tuple[float, int]:
    """CPU seconds and minor page faults of the process's reaped children (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[13]) + int(fields[14])) / ticks, int(fields[8])


def measure(huge_pages: bool, n: int, request: GradeRequest) -> dict[str, float]:
    """Per child: CPU ms and page faults; the grader's CPU ms per grading; MB moved."""
    with SandboxRunner(huge_pages=huge_pages) as runner:
        runner.start()
        for _ in range(3):                              # the spare child and first costs
            grade_submission(SOLUTION, request=request, runner=runner)
        pid = runner.worker_pid
        assert pid is not None, "no worker process to measure"
        time.sleep(0.3)                                 # the last child reaped
        cpu0, faults0 = _children_usage(pid)
        grader0 = time.process_time()
        for _ in range(n):
            grade_submission(SOLUTION, request=request, runner=runner)
        grader = time.process_time() - grader0
        time.sleep(0.3)
        cpu1, faults1 = _children_usage(pid)
        moved = runner.worker_info.get("huge_text_bytes", 0)
    return {"child_ms": 1000 * (cpu1 - cpu0) / n, "faults": (faults1 - faults0) / n,
            "grader_ms": 1000 * grader / n, "moved_mb": moved / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="gradings per round (default 100)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each (default 2)")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        sys.exit("Linux only: the fork server and /proc")
    request = GradeRequest()
    prepare_grading(request)
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for r in range(args.rounds):
        for huge in ((True, False) if r % 2 == 0 else (False, True)):
            runs[huge].append(measure(huge, args.n, request))
            m = runs[huge][-1]
            print(f"round {r + 1}, huge pages {'on ' if huge else 'off'}: child {m['child_ms']:.1f} ms, "
                  f"{m['faults']:.0f} page faults; grader {m['grader_ms']:.1f} ms "
                  f"({m['moved_mb']:.0f} MB of code moved)", flush=True)
    on = {k: statistics.mean(m[k] for m in runs[True]) for k in runs[True][0]}
    off = {k: statistics.mean(m[k] for m in runs[False]) for k in runs[False][0]}
    print(f"per child, huge pages on vs off: CPU {on['child_ms']:.1f} vs {off['child_ms']:.1f} ms "
          f"({on['child_ms'] / off['child_ms']:.2f}x), page faults {on['faults']:.0f} vs "
          f"{off['faults']:.0f} ({on['faults'] / off['faults']:.2f}x); grader {on['grader_ms']:.1f} "
          f"vs {off['grader_ms']:.1f} ms per grading")


if __name__ == "__main__":
    main()
