"""Batch throughput: `backprop-grader grade --jobs 2` vs one fresh python process per submission.

Generates N submissions (correct, wrong, erroring and hostile ones), grades them all with the
batch command, and grades a sample of them the naive way: one new `python` process per
submission running the same grading and writing the same files (results.json, gradescope.json,
report.html when grader.output.report exists), one at a time and two at a time. Prints submissions per
second side by side, measured in this one run, and checks that both ways give the same scores.

    python benchmarks/batch.py                 # 1,000 submissions, baseline on 20
    python benchmarks/batch.py --n 200 --sample 10
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = (ROOT / "solutions" / "backprop.py").read_text()

# the grading config both ways use: the defaults, with a short time limit so that the few
# submissions that loop forever cost seconds, not minutes
LOOP_SECONDS = 2
CONFIG = f"""\
[limits]
call_seconds = {LOOP_SECONDS}
"""

WRONG = {
    "wrong_sign": "def dbnmeani(dbndiff):\n    return dbndiff.sum(0, keepdim=True)\n",
    "missing_keepdim": "def dcounts_sum_inv(dprobs, counts):\n    return (counts * dprobs).sum(1)\n",
    "bessel": "def dbndiff2(dbnvar, bndiff2, n):\n    return 1.0/n * torch.ones_like(bndiff2) * dbnvar\n",
    "transpose": "def dW1(dhprebn, embcat):\n    return (dhprebn.T @ embcat).T\n",
}
ERRORING = {
    "raises": "def dprobs(dlogprobs, probs):\n    return undefined_name * dlogprobs\n",
    "returns_list": "def dh(dlogits, W2):\n    return (dlogits @ W2.T).tolist()\n",
}
HOSTILE = {
    "exit_in_stub": "import os\ndef dcounts(dprobs, counts_sum_inv, dcounts_sum):\n    os._exit(3)\n",
    "print_flood": "print('x' * 1_000_000)\n",
    "sys_exit_at_top": "import sys\nsys.exit('bye')\n",
    "ctrl_c_in_stub": "def dh(dlogits, W2):\n    raise KeyboardInterrupt\n",
}
KINDS = ("correct", "wrong", "erroring", "hostile")
LOOP = "def dprobs(dlogprobs, probs):\n    while True:\n        pass\n"


def generate(folder: Path, n: int, seed: int = 0) -> dict[str, int]:
    """N submissions: 60% correct, 20% wrong, 10% erroring, 10% hostile (1% loop forever)."""
    rng = random.Random(seed)
    counts = {"correct": 0, "wrong": 0, "erroring": 0, "hostile": 0, "loop": 0}
    folder.mkdir(parents=True)
    for i in range(n):
        r = rng.random()
        if r < 0.60:
            kind, code = "correct", SOLUTION
        elif r < 0.80:
            kind, code = "wrong", SOLUTION + "\n\n" + rng.choice(list(WRONG.values()))
        elif r < 0.85:
            kind, code = "erroring", SOLUTION + "\n\n" + rng.choice(list(ERRORING.values()))
        elif r < 0.90:
            kind, code = "erroring", "def dprobs(:\n"
        elif r < 0.91:
            kind, code = "hostile", SOLUTION + "\n\n" + LOOP
            counts["loop"] += 1
        else:
            kind, code = "hostile", SOLUTION + "\n\n" + rng.choice(list(HOSTILE.values()))
        counts[kind] += 1
        # each student's own file, as in a real class: no two submissions are the same bytes
        (folder / f"student{i:05d}.py").write_text(f"# student{i:05d}\n" + code)
    return counts


def grade_one(file: Path, config: Path, out: Path) -> None:
    """The naive way, inside a fresh process: the same grading and files as the batch writes."""
    sys.path.insert(0, str(ROOT))
    from grader.api import grade_submission
    from grader.assignment import load_assignment
    from grader.judge.scoring import points_table
    from grader.output.exports import gradescope_results
    from grader.output.results import write_atomic, write_result

    assignment = load_assignment(config)
    result = grade_submission(file, request=assignment.request)
    folder = out / file.stem
    write_result(result, folder / "results.json")
    write_atomic(folder / "gradescope.json", json.dumps(gradescope_results(
        result, points=points_table(assignment.request.options), settings=assignment.gradescope),
        indent=2))
    try:
        from grader.output.report import render_report
    except ImportError:
        return
    write_atomic(folder / "report.html", render_report(result))


def _busy_cpu() -> float:
    """CPU seconds the whole machine has been busy (Linux /proc/stat; 0 elsewhere): the
    sandbox's processes are not the batch's waited-for children, so rusage misses them."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _isolation() -> str:
    """What the sandbox runs in on this machine: "bwrap" or "process" (a worker started once)."""
    import warnings

    from grader.sandbox.runner import SandboxRunner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # the fallback's warning: the figures say it
        with SandboxRunner() as runner:
            return runner.start().isolation or "process"


def _naive(files: list[Path], config: Path, out: Path, parallel: int) -> float:
    def run(f: Path) -> None:
        subprocess.run([sys.executable, __file__, "--one", str(f), "--config", str(config),
                        "--out", str(out)], check=True, cwd=ROOT)

    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(run, files))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="submissions to generate")
    parser.add_argument("--sample", type=int, default=20, help="of them, graded the naive way")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        grade_one(Path(args.one), Path(args.config), Path(args.out))
        return

    with tempfile.TemporaryDirectory(prefix="bpg-bench-") as tmp:
        work = Path(tmp)
        counts = generate(work / "in", args.n)
        config = work / "assignment.toml"
        config.write_text(CONFIG)
        print(f"{args.n} submissions ({', '.join(f'{counts[k]} {k}' for k in KINDS)}; "
              f"{counts['loop']} of the hostile loop forever); {os.cpu_count()} CPU cores")

        cpu_before = _busy_cpu()
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "grader", "grade", str(work / "in"),
                                 "--out", str(work / "batch"), "--jobs", str(args.jobs),
                                 "--config", str(config)], cwd=ROOT, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        batch_s = time.perf_counter() - start
        batch_cpu = _busy_cpu() - cpu_before
        if proc.returncode:
            raise SystemExit(f"grade exited with {proc.returncode}")
        # the grading processes (the command and its workers) are waited for; in bubblewrap,
        # the sandbox's worker and children are not (they live in its namespace), so they are
        # the rest. Under process isolation the grader waits for them: no split.
        grader_cpu = usage.ru_utime + usage.ru_stime
        isolation = _isolation()
        with open(work / "batch" / "gradebook.csv") as f:
            rows = {r["student"]: r for r in csv.DictReader(f)}
        reports = sum(1 for _ in (work / "batch").glob("students/*/report.html"))

        files = sorted((work / "in").iterdir())
        sample = random.Random(1).sample(files, min(args.sample, len(files)))
        naive1_s = _naive(sample, config, work / "naive1", 1)
        naive2_s = _naive(sample, config, work / "naive2", 2)
        naive_scores = {f.stem: json.loads((work / "naive1" / f.stem / "results.json")
                                           .read_text())["score"] for f in sample}
        differ = [f"{k}: batch {rows[k]['score']}, naive {v:g}" for k, v in naive_scores.items()
                  if v != float(rows[k]["score"])]
        agree = len(sample) - len(differ)

    batch_rate = args.n / batch_s
    naive1_rate, naive2_rate = len(sample) / naive1_s, len(sample) / naive2_s
    width = 44
    print(f"{'grade --jobs %d (batch)' % args.jobs:<{width}} {args.n:>5} in {batch_s:7.1f} s  "
          f"{batch_rate:7.2f} submissions/s")
    print(f"{'naive: one fresh python per submission':<{width}} {len(sample):>5} in "
          f"{naive1_s:7.1f} s  {naive1_rate:7.2f} submissions/s")
    print(f"{'naive, two processes at a time':<{width}} {len(sample):>5} in {naive2_s:7.1f} s  "
          f"{naive2_rate:7.2f} submissions/s")
    print(f"batch vs naive: {batch_rate / naive1_rate:.1f}x "
          f"({batch_rate / naive2_rate:.1f}x vs naive two at a time)")
    cores = os.cpu_count() or 1
    if batch_cpu > 0:
        print(f"machine CPU busy during the batch: {batch_cpu / args.n * 1000:.0f} ms per "
              f"submission ({batch_cpu / batch_s / cores:.0%} of {cores} cores; anything else "
              f"running counts too): at most {cores / (batch_cpu / args.n):.1f} submissions/s")
        from grader.sandbox.limits import Limits

        slow = Limits().slow_seconds
        split = (f"grader processes {grader_cpu / args.n * 1000:.0f} ms, sandbox (worker and "
                 f"children, in bubblewrap) {max(batch_cpu - grader_cpu, 0) / args.n * 1000:.0f} "
                 "ms per submission" if isolation == "bwrap" else
                 "no split between grader and sandbox (process isolation: the grader's rusage "
                 "counts the sandbox's processes too)")
        print(f"  {split}; the {counts['loop']} that loop forever each wait out {LOOP_SECONDS} "
              f"s, at the least CPU priority after the first {slow:g} s (Limits.slow_seconds), "
              "while other gradings take the cores")
    print(f"gradebook rows: {len(rows)} of {args.n}; report.html written: {reports} "
          f"({'full reports' if reports == args.n else 'grader.output.report not available'}); "
          f"scores agree on {agree} of {len(sample)} sampled submissions"
          + (f" (differ: {'; '.join(differ)})" if differ else ""))


if __name__ == "__main__":
    main()
