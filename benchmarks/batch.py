"""Batch throughput on a class that looks like a real one (benchmarks/realistic_class.py).

Two measurements, side by side in one run:

1. Per kind (notebooks in student shapes, exercise-function notebooks, stub files, ungradable,
   hostile, and the real-notebooks fixtures): the CPU milliseconds one submission costs in the
   grading process (grading it and writing its results.json, gradescope.json and report.html, as
   a batch's grading process does) and in the sandbox (the sandbox's worker and the child it
   forked for the submission: the worker's own CPU plus what it reaped, read from /proc after
   the child is gone), median over ``--per-kind`` submissions graded one after another in one
   process, kinds interleaved. With ``--trees A B`` the same files are measured with each
   source tree in turn, ``--rounds`` times, alternating: the A/B of a change.
2. The class: ``backprop-grader grade --jobs 2`` on all N, against one fresh ``python`` per
   submission (the same grading and files) on a sample, one and two at a time; both ways must
   give the same scores. With ``--trees A B`` (no ``--split-only``): the class graded by each
   tree in turn, ``--rounds`` times, alternating (wall time and busy CPU per submission).

    python benchmarks/batch.py                           # 600 submissions, 12 per kind
    python benchmarks/batch.py --n 200 --sample 10
    python benchmarks/batch.py --split-only --trees /work/before /work/after --rounds 3
    python benchmarks/batch.py --n 200 --per-kind 0 --trees /work/before /work/after --rounds 3
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# the grading config both ways use: the defaults, with a short time limit so that the few
# submissions that loop forever cost seconds, not minutes
LOOP_SECONDS = 2
CONFIG = f"""\
[limits]
call_seconds = {LOOP_SECONDS}
"""
LOOP_MARK = "while True:\n        pass"      # realistic_class.LOOP_STUB: never in the split
SPLIT_KINDS = ("notebook", "notebook-functions", "stub", "ungradable", "hostile", "fixtures")


def grade_and_write(file: Path, assignment: object, out: Path) -> None:
    """One submission graded and its files written, as a batch's grading process does."""
    from grader.api import grade_submission
    from grader.judge.scoring import points_table
    from grader.output.exports import gradescope_results
    from grader.output.report import render_report
    from grader.output.results import write_atomic, write_result

    request = assignment.request  # type: ignore[attr-defined]
    result = grade_submission(file, request=request, runner=_RUNNER)
    folder = out / file.stem
    write_result(result, folder / "results.json")
    write_atomic(folder / "gradescope.json", json.dumps(gradescope_results(
        result, points=points_table(request.options),
        settings=assignment.gradescope), indent=2))  # type: ignore[attr-defined]
    write_atomic(folder / "report.html", render_report(result))


_RUNNER = None      # the split's shared SandboxRunner; None: a runner per submission (naive)


def grade_one(file: Path, config: Path, out: Path) -> None:
    """The naive way, inside a fresh process: the same grading and files as the batch writes."""
    sys.path.insert(0, str(ROOT))
    from grader.assignment import load_assignment

    grade_and_write(file, load_assignment(config), out)


# -- 1. per kind: CPU in the grading process and in the sandbox -----------------------------------

def _descendants(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(p) for p in f.read().split()]
    except OSError:
        return []
    return [d for k in kids for d in (k, *_descendants(k))]


def _worker_pid() -> int:
    """The sandbox's worker (the fork server), found among this process's descendants: in
    bubblewrap it lives in a pid namespace of its own, whose children the grader never waits
    for, so their CPU is read from the worker's /proc entry."""
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        # its entry: grader.sandbox.worker.entry's main (forkserver's, in older trees)
        if not argv[0].endswith(b"bwrap") and any(b"worker.entry import main" in a or
                                                  b"worker.forkserver import main" in a
                                                  for a in argv):
            return pid
    raise SystemExit("no sandbox worker found")


def _worker_cpu(pid: int) -> float:
    """The worker's CPU seconds, its own and those of the children it reaped."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


_CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def _cpu_group(worker: int) -> Path | None:
    """A cgroup v1 cpuacct group holding the sandbox's worker and all it forks from now on:
    their CPU to the nanosecond, exited children included. None where this process may not make
    one (not root, no cpuacct hierarchy): the worker's /proc entry then, in clock ticks."""
    if not (_CPUACCT / "cpuacct.usage").exists() or not os.access(_CPUACCT, os.W_OK):
        return None
    group = _CPUACCT / f"backprop-grader-benchmark-{os.getpid()}"
    try:
        group.mkdir()
        for pid in (worker, *_descendants(worker)):
            (group / "cgroup.procs").write_text(str(pid))
    except OSError:
        _remove_cpu_group(group)
        return None
    return group


def _remove_cpu_group(group: Path) -> None:
    """Once the worker is gone (or to give up): the group, anything left moved out first."""
    try:
        for pid in (group / "cgroup.procs").read_text().split():
            (_CPUACCT / "cgroup.procs").write_text(pid)
        group.rmdir()
    except OSError:
        pass


def _reaped(pid: int) -> None:
    """Wait until the worker has reaped the last session's child (only its spare is left)."""
    deadline = time.monotonic() + 3
    while len(_descendants(pid)) > 1 and time.monotonic() < deadline:
        time.sleep(0.002)


def split(files: list[Path], config: Path, out: Path) -> dict[str, Any]:
    """In a process of its own (PYTHONPATH: the tree measured): {"files": file -> [grader s,
    sandbox s], "clock": how the sandbox's CPU was read, "ns" or "ticks"}."""
    global _RUNNER
    import warnings

    from grader.api import prepare_grading
    from grader.assignment import load_assignment
    from grader.sandbox.runner import SandboxRunner

    assignment = load_assignment(config)
    prepare_grading(assignment.request)
    # the collector as a batch's grading process has it (grader.batch.processes._collect_rarely):
    # what is loaded by now frozen out of its way, a high threshold. With the defaults, the
    # collections a grading triggers walk torch's objects and the references again and again:
    # some 15-20 ms more a notebook (it makes tens of thousands of objects), a few a stub file
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    figures: dict[str, list[float]] = {}
    group: Path | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # process isolation's warning: the figures say it
        with SandboxRunner() as runner:
            _RUNNER = runner.start()
            worker = _worker_pid()
            group = _cpu_group(worker)

            def sandbox_cpu() -> float:
                if group is not None:
                    return int((group / "cpuacct.usage").read_text()) / 1e9
                return _worker_cpu(worker)
            for file in files[:2]:          # warm: the first gradings fill caches
                grade_and_write(file, assignment, out / "warm")
            for file in files:
                _reaped(worker)
                sandbox0, grader0 = sandbox_cpu(), time.process_time()
                grade_and_write(file, assignment, out)
                grader1 = time.process_time()
                _reaped(worker)
                figures[str(file)] = [grader1 - grader0, sandbox_cpu() - sandbox0]
    if group is not None:
        _remove_cpu_group(group)
    return {"files": figures, "clock": "ns" if group is not None else "ticks"}


def _split_files(folder: Path, kinds: dict[str, str], per_kind: int) -> list[tuple[str, Path]]:
    """Up to ``per_kind`` of each kind, interleaved, and the real-notebooks fixtures."""
    from realistic_class import fixtures

    by_kind: dict[str, list[Path]] = {k: [] for k in SPLIT_KINDS}
    for file in sorted(folder.iterdir()):
        if LOOP_MARK not in file.read_text(errors="replace"):
            by_kind[kinds[file.stem]].append(file)
    by_kind["fixtures"] = fixtures()
    picked = {k: random.Random(2).sample(v, min(per_kind, len(v))) for k, v in by_kind.items()}
    order = []
    for i in range(max(map(len, picked.values()))):
        order += [(k, v[i]) for k, v in picked.items() if i < len(v)]
    return order


def run_split(tree: Path, order: list[tuple[str, Path]], config: Path, work: Path
              ) -> tuple[dict[str, tuple[float, float, float]], str]:
    """kind -> (median grader ms, median sandbox ms, mean sandbox ms) with ``tree``'s grader,
    and how the sandbox's CPU was read: "ns" (a cpuacct cgroup, as root) or "ticks" (the
    worker's /proc entry, in clock ticks of 10 ms here: a median then moves in steps of 10 ms,
    and the mean over the kind's files shows what is between)."""
    listing = work / "split-files.json"
    listing.write_text(json.dumps([str(f) for _, f in order]))
    out = Path(tempfile.mkdtemp(dir=work))
    proc = subprocess.run([sys.executable, __file__, "--split", str(listing), "--config",
                           str(config), "--out", str(out)], cwd=tree, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    if proc.returncode:
        raise SystemExit(f"the split failed with {tree}:\n{proc.stderr[-3000:]}")
    reply = json.loads(proc.stdout.strip().splitlines()[-1])
    figures = reply["files"]
    medians = {}
    for kind in SPLIT_KINDS:
        rows = [figures[str(f)] for k, f in order if k == kind]
        if rows:
            medians[kind] = (statistics.median(r[0] for r in rows) * 1000,
                             statistics.median(r[1] for r in rows) * 1000,
                             statistics.mean(r[1] for r in rows) * 1000)
    return medians, str(reply["clock"])


def print_split(label: str, medians: dict[str, tuple[float, float, float]],
                counts: dict[str, int]) -> None:
    print(f"{label}")
    print(f"  {'kind':<20} {'n':>3} {'grader ms':>10} {'sandbox ms':>11} {'total ms':>9} "
          f"{'vs stub':>8} {'sandbox mean':>13} {'total, mean':>12} {'vs stub':>8}")
    stub = sum(medians["stub"][:2]) if "stub" in medians else 0.0
    stub_mean = medians["stub"][0] + medians["stub"][2] if "stub" in medians else 0.0
    for kind, (g, s, m) in medians.items():
        ratio = f"{(g + s) / stub:7.2f}x" if stub else ""
        ratio_mean = f"{(g + m) / stub_mean:7.2f}x" if stub_mean else ""
        print(f"  {kind:<20} {counts[kind]:>3} {g:10.1f} {s:11.1f} {g + s:9.1f} {ratio:>8} "
              f"{m:13.1f} {g + m:12.1f} {ratio_mean:>8}")


# -- 2. the class: grade --jobs 2 vs one fresh python per submission -----------------------------

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


def _grade_class(work: Path, config: Path, jobs: int, tree: Path, out: Path
                 ) -> tuple[float, float, Any]:
    """``grade --jobs`` on the class with ``tree``'s grader, into ``out`` (fresh): wall seconds,
    the machine's busy CPU seconds meanwhile, and the grading processes' rusage."""
    shutil.rmtree(out, ignore_errors=True)
    cpu_before = _busy_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "grader", "grade", str(work / "in"),
                             "--out", str(out), "--jobs", str(jobs), "--config", str(config)],
                            cwd=tree, stdout=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(tree)})
    _, status, usage = os.wait4(proc.pid, 0)
    seconds, cpu = time.perf_counter() - start, _busy_cpu() - cpu_before
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"grade ({tree}) exited with {os.waitstatus_to_exitcode(status)}")
    return seconds, cpu, usage


def class_ab(work: Path, n: int, config: Path, args: argparse.Namespace) -> None:
    """The class graded by each of ``args.trees`` in turn, ``args.rounds`` times: the A/B of a
    change on the whole batch (wall time and the machine's busy CPU per submission)."""
    print(f"grade --jobs {args.jobs}, {n} submissions, trees alternating")
    totals: dict[Path, list[tuple[float, float]]] = {t: [] for t in args.trees}
    for r in range(args.rounds):
        for tree in args.trees:
            seconds, cpu, _ = _grade_class(work, config, args.jobs, tree, work / "batch")
            totals[tree].append((seconds, cpu))
            print(f"  round {r + 1}, {tree}: {seconds:6.1f} s, {n / seconds:6.2f} submissions/s, "
                  f"busy CPU {cpu / n * 1000:6.1f} ms per submission")
    first = args.trees[0]
    for tree in args.trees[1:]:
        wall = [b[0] / a[0] for a, b in zip(totals[first], totals[tree])]
        cpu = [b[1] / a[1] for a, b in zip(totals[first], totals[tree])]
        extra = [(b[1] - a[1]) / n * 1000 for a, b in zip(totals[first], totals[tree])]
        print(f"  {tree} vs {first}: wall x{', x'.join(f'{w:.2f}' for w in wall)}; CPU "
              f"x{', x'.join(f'{c:.2f}' for c in cpu)} "
              f"({', '.join(f'{e:+.1f}' for e in extra)} ms per submission)")


def class_rate(work: Path, n: int, kinds: dict[str, str], loops: int, config: Path,
               args: argparse.Namespace) -> None:
    batch_s, batch_cpu, usage = _grade_class(work, config, args.jobs, ROOT, work / "batch")
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

    batch_rate = n / batch_s
    naive1_rate, naive2_rate = len(sample) / naive1_s, len(sample) / naive2_s
    width = 44
    print(f"{'grade --jobs %d (batch)' % args.jobs:<{width}} {n:>5} in {batch_s:7.1f} s  "
          f"{batch_rate:7.2f} submissions/s")
    print(f"{'naive: one fresh python per submission':<{width}} {len(sample):>5} in "
          f"{naive1_s:7.1f} s  {naive1_rate:7.2f} submissions/s")
    print(f"{'naive, two processes at a time':<{width}} {len(sample):>5} in {naive2_s:7.1f} s  "
          f"{naive2_rate:7.2f} submissions/s")
    print(f"batch vs naive: {batch_rate / naive1_rate:.1f}x "
          f"({batch_rate / naive2_rate:.1f}x vs naive two at a time)")
    cores = os.cpu_count() or 1
    if batch_cpu > 0:
        print(f"machine CPU busy during the batch: {batch_cpu / n * 1000:.0f} ms per "
              f"submission ({batch_cpu / batch_s / cores:.0%} of {cores} cores; anything else "
              f"running counts too): at most {cores / (batch_cpu / n):.1f} submissions/s")
        from grader.sandbox.limits import Limits

        slow = Limits().slow_seconds
        split_text = (f"grader processes {grader_cpu / n * 1000:.0f} ms, sandbox (worker and "
                      f"children, in bubblewrap) {max(batch_cpu - grader_cpu, 0) / n * 1000:.0f} "
                      "ms per submission" if isolation == "bwrap" else
                      "no split between grader and sandbox (process isolation: the grader's "
                      "rusage counts the sandbox's processes too)")
        print(f"  {split_text}; the {loops} that loop forever each wait out {LOOP_SECONDS} "
              f"s, at the least CPU priority after the first {slow:g} s (Limits.slow_seconds), "
              "while other gradings take the cores")
    print(f"gradebook rows: {len(rows)} of {n}; report.html written: {reports} "
          f"({'full reports' if reports == n else 'grader.output.report not available'}); "
          f"scores agree on {agree} of {len(sample)} sampled submissions"
          + (f" (differ: {'; '.join(differ)})" if differ else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=600, help="submissions to generate")
    parser.add_argument("--sample", type=int, default=20, help="of them, graded the naive way")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--per-kind", type=int, default=12,
                        help="submissions of each kind in the CPU split (0: no split)")
    parser.add_argument("--trees", nargs="+", type=Path, default=[ROOT],
                        help="source trees whose graders the split measures, alternating")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the split")
    parser.add_argument("--split-only", action="store_true", help="no class run")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--split", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        grade_one(Path(args.one), Path(args.config), Path(args.out))
        return
    if args.split:
        files = [Path(f) for f in json.loads(Path(args.split).read_text())]
        print(json.dumps(split(files, Path(args.config), Path(args.out))))
        return

    from realistic_class import KINDS, compile_bytecode, generate

    for tree in args.trees:
        compile_bytecode(tree)
    with tempfile.TemporaryDirectory(prefix="bpg-bench-") as tmp:
        work = Path(tmp)
        kinds = generate(work / "in", args.n)
        loops = sum(1 for f in (work / "in").iterdir() if LOOP_MARK in f.read_text("utf-8", "replace"))
        config = work / "assignment.toml"
        config.write_text(CONFIG)
        counts = {k: sum(1 for v in kinds.values() if v == k) for k in KINDS}
        print(f"{args.n} submissions ({', '.join(f'{counts[k]} {k}' for k in KINDS)}; "
              f"{loops} of the hostile loop forever); {os.cpu_count()} CPU cores")
        if args.per_kind:
            order = _split_files(work / "in", kinds, args.per_kind)
            per = {k: sum(1 for kk, _ in order if kk == k) for k in SPLIT_KINDS}
            print(f"\nCPU per submission, median (grader: the grading process, grading and "
                  f"writing the files; sandbox: its worker and the child)")
            for r in range(args.rounds):
                for tree in args.trees:
                    medians, clock = run_split(tree, order, config, work)
                    print_split(f"round {r + 1}, {tree} (sandbox CPU in {clock})", medians, per)
            print()
        if args.split_only:
            return
        if len(args.trees) > 1:
            class_ab(work, args.n, config, args)
        else:
            class_rate(work, args.n, kinds, loops, config, args)


if __name__ == "__main__":
    main()
