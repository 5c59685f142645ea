"""`backprop-grader check` on one file: wall time against `python -c "import torch"`.

A student's `check` starts a Python, imports torch (in the grader and in the sandbox's worker,
side by side), grades one file and exits: the floor under it is one Python importing torch. The
three commands run in turn, alternating, ``--rounds`` times; the medians and the ratios are
printed (the issue's target: a notebook within 1.5x of the floor).

    python benchmarks/check_time.py                          # the lecture-style notebook
    python benchmarks/check_time.py --rounds 15 --notebook my.ipynb
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):       # 1: some gradient fails; 2 and up: not graded
        raise SystemExit(f"{' '.join(command)} exited with {proc.returncode}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--notebook", type=Path,
                        default=ROOT / "tests" / "submissions" / "real" / "renamed_data.ipynb")
    parser.add_argument("--stub", type=Path, default=ROOT / "solutions" / "backprop.py")
    args = parser.parse_args()
    commands = {
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        f"check {args.stub.name}": [sys.executable, "-m", "grader", "check", str(args.stub)],
        f"check {args.notebook.name}": [sys.executable, "-m", "grader", "check",
                                        str(args.notebook)],
    }
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from realistic_class import compile_bytecode

    compile_bytecode(ROOT)
    for command in commands.values():       # warm the page cache: every run starts alike
        wall(command)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():
            times[name].append(wall(command))
    floor = statistics.median(times["python -c 'import torch'"])
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{name:<40} median {median:6.3f} s (min {min(seconds):.3f}, max "
              f"{max(seconds):.3f})  {median / floor:5.2f}x import torch")
    per_round = [n / f for n, f in zip(times[f"check {args.notebook.name}"],
                                       times["python -c 'import torch'"])]
    print(f"notebook / import torch, round by round: "
          + " ".join(f"{r:.2f}" for r in per_round))


if __name__ == "__main__":
    main()
