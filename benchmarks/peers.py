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

Prints each tool's wall time and rate, ours with and without its start-up, and the ratio.
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
from realistic_class import ROOT, build, student_notebook_body  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nbgrader", default="/tmp/nbg-venv/bin/nbgrader")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bpg-peers-") as tmp:
        work = Path(tmp)
        course = work / "course"
        students = make_course(course, args.n, seed=7)
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
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        grade = [sys.executable, "-m", "grader", "grade", str(ours), "--jobs", str(args.jobs)]
        ours_s = run([*grade, "--out", str(work / "out1")], ROOT, env)
        nbgrader_s = run([*nbg[:1], "autograde", "ps1", "--force", *nbg[1:]], course, nbg_env)
        ours2_s = run([*grade, "--out", str(work / "out2")], ROOT, env)
        # start-up: the same command on one notebook
        one = work / "one"
        one.mkdir()
        shutil.copy(ours / "student000.ipynb", one)
        start_s = run([sys.executable, "-m", "grader", "grade", str(one), "--jobs",
                       str(args.jobs), "--out", str(work / "out-one")], ROOT, env)

        batch = json.loads((work / "out1" / "batch.json").read_text())
        scores = {s["student"]: s["score"] for s in batch["students"]}
        graded = sum(1 for sid in students if (course / "autograded" / sid / "ps1" /
                                               "backprop.ipynb").exists())
        if graded != len(students):
            raise SystemExit(f"nbgrader autograded {graded} of {len(students)} notebooks")
    n = args.n
    best = min(ours_s, ours2_s)
    steady = max(best - start_s, 1e-9) / max(n - 1, 1)
    print(f"{n} notebooks ({sum(1 for v in students.values() if v != 'right')} with wrong "
          f"gradients or partial work); nbgrader autograded {graded}")
    print(f"nbgrader autograde (one call)        {nbgrader_s:7.1f} s  {nbgrader_s / n:6.3f} s a "
          f"notebook  {n / nbgrader_s:6.2f}/s")
    print(f"grade --jobs {args.jobs}, with start-up         {best:7.1f} s  {best / n:6.3f} s a "
          f"notebook  {n / best:6.2f}/s  ({ours_s:.1f} s and {ours2_s:.1f} s, before and after)")
    print(f"grade --jobs {args.jobs}, one notebook (start-up) {start_s:7.1f} s")
    print(f"grade --jobs {args.jobs}, without start-up       {steady:18.3f} s a notebook  "
          f"{1 / steady:6.2f}/s")
    print(f"ours vs nbgrader: {nbgrader_s / best:.1f}x with start-up, "
          f"{(nbgrader_s / n) / steady:.1f}x per notebook without it")
    print("scores (ours): " + " ".join(f"{v:g}" for v in scores.values()))


if __name__ == "__main__":
    main()
