"""How long rendering reports from saved results JSON takes, side by side in one run.

Grades a few real submissions once (right, wrong in several ways, unfinished, broken), then makes
N varied results from them (renamed, some gradients knocked out, so scores and the summary vary),
saves them as JSON and measures, on the same files:

  json       json.loads of every file (the floor: reading the data at all)
  read       read_result: JSON -> Result dataclasses
  render     render_report(result) per result (already in memory)
  write      write_reports(paths, out): read + render + write every page + the class summary
  summary    render_summary(all results) once

Usage: python benchmarks/report.py [--n 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.api import GradeRequest, grade_submission  # noqa: E402
from grader.judge.grading import GradingOptions  # noqa: E402
from grader.output.report import render_report, render_summary, write_reports  # noqa: E402
from grader.output.results import Result, read_result, write_result  # noqa: E402

SUBMISSIONS = ROOT / "tests" / "submissions"
SOLUTION = ROOT / "solutions" / "backprop.py"


def grade_bases(tmp: Path) -> list[Result]:
    """A handful of real results: every picture and message comes from actual grading."""
    request = GradeRequest(options=GradingOptions(train_steps=2))
    sources = {"solution.py": SOLUTION.read_text(),
               "stubs.py": (ROOT / "exercises" / "backprop.py").read_text(),
               "syntax.py": "def dprobs(:\n"}
    for p in sorted((SUBMISSIONS / "wrong").glob("*.py")) + sorted((SUBMISSIONS / "broken").glob("*.py")):
        sources[p.name] = SOLUTION.read_text() + "\n\n" + p.read_text()
    bases = []
    for name, code in sources.items():
        path = tmp / name
        path.write_text(code + "\nprint('step done')\n")
        bases.append(grade_submission(path, request=request))
    return bases


def vary(base: Result, i: int, rng: random.Random) -> Result:
    """Rename; knock out 0-4 passing gradients (missing, 0 points) so scores spread."""
    if base.status != "graded":
        return dataclasses.replace(base, submission=f"student{i:04d}.py")
    knock = rng.randint(0, 4)
    exercises = []
    for ex in base.exercises:
        grads = []
        for g in ex.gradients:
            if knock and g.passed and rng.random() < 0.15:
                knock -= 1
                g = dataclasses.replace(g, status="missing", exact=False, approx=False,
                                        points=0.0, message="raises NotImplementedError")
            grads.append(g)
        exercises.append(dataclasses.replace(ex, gradients=tuple(grads),
                                             score=sum(g.points for g in grads)))
    return dataclasses.replace(base, submission=f"student{i:04d}.py", exercises=tuple(exercises),
                               score=sum(e.score for e in exercises))


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="number of reports (default 500)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; best is shown")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = time.perf_counter()
        bases = grade_bases(tmp)
        print(f"graded {len(bases)} submissions once in {time.perf_counter() - t:.1f} s")
        rng = random.Random(0)
        results = [vary(bases[i % len(bases)], i, rng) for i in range(args.n)]
        paths = []
        for r in results:
            paths.append(tmp / "results" / f"{r.submission}.json")
            write_result(r, paths[-1])
        mb = sum(p.stat().st_size for p in paths) / 1e6
        failing = sum(1 for r in results for g in r.gradients() if g.views)
        print(f"{args.n} results JSON, {mb:.1f} MB, {failing} failing gradients with heatmaps")
        texts = [p.read_text("utf-8") for p in paths]
        loaded = [read_result(p) for p in paths]

        t_json = best(lambda: [json.loads(s) for s in texts], args.repeat)
        t_read = best(lambda: [read_result(p) for p in paths], args.repeat)
        render_report(loaded[0])                       # template compilation, once per process
        t_render = best(lambda: [render_report(r) for r in loaded], args.repeat)
        t_write = best(lambda: write_reports(paths, tmp / "site"), args.repeat)
        t_summary = best(lambda: render_summary(loaded), args.repeat)
        html_mb = sum(p.stat().st_size for p in (tmp / "site").glob("*.html")) / 1e6

    n = args.n
    print(f"\n{'step':<34}{'total':>10}{'per report':>14}{'vs json':>10}")
    for label, secs in (("json.loads", t_json),
                        ("read_result (JSON -> Result)", t_read),
                        ("render_report (in memory)", t_render),
                        ("write_reports (read+render+write)", t_write)):
        print(f"{label:<34}{secs:>9.3f}s{secs / n * 1e3:>11.2f} ms{secs / t_json:>9.1f}x")
    print(f"{'render_summary (all ' + str(n) + ')':<34}{t_summary:>9.3f}s")
    print(f"\nwrote {html_mb:.1f} MB of HTML; best of {args.repeat} runs each, one process, "
          f"same files")


if __name__ == "__main__":
    main()
