"""Against the tool instructors would otherwise use: nbgrader's ``autograde`` and
``backprop-grader grade --jobs 2`` on the same notebooks, in the same run.

The notebooks are the realistic class's lecture-style notebooks (benchmarks/realistic_class.py:
scratch cells, partial work, wrong gradients, exercise 4's loop left in for a few steps), with
the instructor's names (nbgrader's tests read them), in nbgrader's format: the course folder's
``source/ps1/backprop.ipynb`` (the lecture's notebook: the exercise cells are solution cells,
after exercise 1 come autograder test cells, one per gradient, asserting it against autograd's
``.grad`` as the lecture's ``cmp`` does), ``release/`` from ``nbgrader generate_assignment`` and
``submitted/<student>/ps1/backprop.ipynb``. Each notebook reads a word list of 2,000 names (no
plots: matplotlib is not needed), so the cells outside the exercise take well under a second:
nbgrader runs every cell, and a long training run left in would buy any ratio.

nbgrader comes from its own virtual environment (the registry's nbgrader, torch from this one)::

    python -m venv --system-site-packages /tmp/nbg-venv && /tmp/nbg-venv/bin/pip install nbgrader
    python benchmarks/peers.py --nbgrader /tmp/nbg-venv/bin/nbgrader --n 20
    python benchmarks/peers.py --n 60 --trees /work/before /work/after --rounds 3

Prints each tool's wall time and rate, ours with and without its start-up (``grade`` on one
notebook), and the ratios; with ``--trees``, each tree's grader in turn, alternating, against
the same nbgrader run of each round.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realistic_class import ROOT, build, compile_bytecode, student_notebook_body  # noqa: E402

WORDS = ROOT / "grader" / "data" / "census_first_names.txt"
EX1_GRADIENTS = re.findall(r"cmp\('(\w+)', d\w+, (\w+)\)", build._body().split("# Exercise 2")[0])


def _cells(body: str) -> list[str]:
    """A student's cells, as nbgrader's kernel can run them: no %matplotlib, no plots."""
    out = []
    for cell in (c.strip("\n") for c in body.split("# %%\n") if c.strip()):
        if "plt." in cell and "import" not in cell:
            continue
        out.append(cell.replace("import matplotlib.pyplot as plt # for making figures\n", ""))
    return out


def _meta(cell: nbformat.NotebookNode, grade_id: str, *, solution: bool, points: int = 0
          ) -> nbformat.NotebookNode:
    cell.metadata["nbgrader"] = {"grade": points > 0, "grade_id": grade_id, "locked": not solution,
                                 "schema_version": 3, "solution": solution, "task": False,
                                 **({"points": points} if points else {})}
    return cell


def nbgrader_notebook(cells: list[str]) -> nbformat.NotebookNode:
    """The cells in nbgrader's format: exercise cells are solution cells (graded by the test
    cells after exercise 1's, one per gradient)."""
    nb = new_notebook(cells=[new_markdown_cell("Backprop ninja (makemore part 4)")])
    exercise = 0
    for source in cells:
        cell = new_code_cell(source)
        if "# Exercise " in source or "# backward pass" in source:
            exercise += 1
            _meta(cell, f"exercise-{exercise}", solution=True)
        nb.cells.append(cell)
        if "# Exercise 1:" in source:
            for name, tensor in EX1_GRADIENTS:
                nb.cells.append(_meta(new_code_cell(
                    f"assert torch.allclose(d{name}, {tensor}.grad), 'd{name} is wrong'"),
                    f"test-d{name}", solution=False, points=1))
    for k, cell in enumerate(nb.cells):
        cell.id = f"cell-{k}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


def make_course(course: Path, n: int, seed: int) -> dict[str, str]:
    """The course folder; returns student -> what their notebook holds."""
    rng = random.Random(seed)
    words = "\n".join(WORDS.read_text().split()[:2000]) + "\n"
    source = course / "source" / "ps1"
    source.mkdir(parents=True)
    (source / "names.txt").write_text(words)
    nbformat.write(nbgrader_notebook(_cells(build._body().replace(
        "max_steps = 200000", "max_steps = 50"))), source / "backprop.ipynb")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'bench'\n"
        "c.ExecutePreprocessor.timeout = 120\n")
    students = {}
    for i in range(n):
        body, done = student_notebook_body(rng, wrong=rng.random() < 0.25, renames=False)
        sid = f"student{i:03d}"
        folder = course / "submitted" / sid / "ps1"
        folder.mkdir(parents=True)
        nbformat.write(nbgrader_notebook(_cells(body)), folder / "backprop.ipynb")
        (folder / "names.txt").write_text(words)
        (folder / "timestamp.txt").write_text("2026-12-07 12:00:00.000000 UTC")
        students[sid] = "; ".join(done) or "right"
    return students


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} exited with {proc.returncode}:\n"
                         f"{proc.stderr[-3000:]}")
    return seconds


def _ours(tree: Path, folder: Path, out: Path, jobs: int) -> float:
    """``grade --jobs N`` of ``folder`` with the grader of source tree ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return run([sys.executable, "-m", "grader", "grade", str(folder), "--jobs", str(jobs),
                "--out", str(out)], tree, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nbgrader", default="/tmp/nbg-venv/bin/nbgrader")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--trees", nargs="+", type=Path, default=[ROOT],
                        help="source trees whose graders are measured, alternating (default: "
                             "this one)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds, each with one nbgrader run")
    args = parser.parse_args()
    n = args.n
    for tree in args.trees:
        compile_bytecode(tree)
    with tempfile.TemporaryDirectory(prefix="bpg-peers-") as tmp:
        work = Path(tmp)
        course = work / "course"
        students = make_course(course, n, seed=7)
        nbg = [args.nbgrader, "--Application.log_level=WARN"]
        # nbgrader runs its venv's alembic (the gradebook's migrations) from PATH
        nbg_env = {**os.environ, "PATH": f"{Path(args.nbgrader).parent}:{os.environ['PATH']}"}
        run([*nbg[:1], "generate_assignment", "ps1", "--force", *nbg[1:]], course, nbg_env)

        # ours: the same notebooks, one per student, in one class folder
        ours = work / "class"
        ours.mkdir()
        for sid in students:
            shutil.copy(course / "submitted" / sid / "ps1" / "backprop.ipynb",
                        ours / f"{sid}.ipynb")
        one = work / "one"          # the start-up: the same command on one notebook
        one.mkdir()
        shutil.copy(ours / "student000.ipynb", one)
        print(f"{n} notebooks ({sum(1 for v in students.values() if v != 'right')} with wrong "
              f"gradients or partial work); grade --jobs {args.jobs}; each grader's class run "
              "before and after nbgrader's, the faster one counted")
        scores: dict[Path, list[float]] = {}
        for r in range(1, args.rounds + 1):
            runs = work / f"round{r}"
            before = {tree: _ours(tree, ours, runs / f"{k}-before", args.jobs)
                      for k, tree in enumerate(args.trees)}
            shutil.rmtree(course / "autograded", ignore_errors=True)
            nbgrader_s = run([*nbg[:1], "autograde", "ps1", "--force", *nbg[1:]], course,
                             nbg_env)
            graded = sum(1 for sid in students if (course / "autograded" / sid / "ps1" /
                                                   "backprop.ipynb").exists())
            if graded != n:
                raise SystemExit(f"nbgrader autograded {graded} of {n} notebooks")
            after = {tree: _ours(tree, ours, runs / f"{k}-after", args.jobs)
                     for k, tree in enumerate(args.trees)}
            start = {tree: _ours(tree, one, runs / f"{k}-one", args.jobs)
                     for k, tree in enumerate(args.trees)}
            print(f"round {r}: nbgrader autograde (one call) {nbgrader_s:6.1f} s, "
                  f"{nbgrader_s / n:.3f} s a notebook")
            for k, tree in enumerate(args.trees):
                best = min(before[tree], after[tree])
                steady = max(best - start[tree], 1e-9) / max(n - 1, 1)
                print(f"  {tree}: class {best:5.2f} s ({before[tree]:.2f} / {after[tree]:.2f}), "
                      f"{n / best:5.2f}/s, {nbgrader_s / best:5.1f}x nbgrader with start-up; "
                      f"start-up (one notebook) {start[tree]:.2f} s; without it "
                      f"{steady * 1000:.1f} ms a notebook, "
                      f"{(nbgrader_s / n) / steady:5.1f}x")
                batch = json.loads((runs / f"{k}-before" / "batch.json").read_text())
                scores[tree] = [s["score"] for s in batch["students"]]
    for tree, marks in scores.items():
        print(f"scores ({tree}): " + " ".join(f"{v:g}" for v in marks))
    if len({tuple(v) for v in scores.values()}) > 1:
        raise SystemExit("the trees gave different scores")


if __name__ == "__main__":
    main()
