"""Builds the notebooks with cells that do not parse as a whole, from the lecture-style solution
(../lecture/correct.py, cells marked ``# %%``); run from anywhere:

    python tests/submissions/unparsable/build.py

The notebooks are committed; this script says how they were made. Each is the correct solution
with lines a student leaves behind, so each must still score full marks, with a note naming
every line left out:

* unfinished_line.ipynb  <- ``dC =`` at the end of the exercise-1 cell (typed after it last ran)
* lost_indent.ipynb      <- a ``for`` whose body lost its indentation, mid exercise-1 cell
                            (an IndentationError), and a scratch cell above with another
* bad_lines.ipynb        <- an unfinished ``dbnraw =`` and a stray ``>>>`` line in the
                            exercise-1 cell, and a bracket never closed at the end of exercise
                            2's cell
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

HERE = Path(__file__).resolve().parent
CORRECT = HERE.parent / "lecture" / "correct.py"


def cells() -> list[str]:
    _, *sources = CORRECT.read_text().split("# %%\n")
    return [s.strip("\n") for s in sources]


def changed(sources: list[str], starts: str, old: str, new: str) -> list[str]:
    """``sources`` with ``old`` replaced by ``new`` in the one cell that starts with ``starts``."""
    index = next(i for i, s in enumerate(sources) if s.startswith(starts))
    assert sources[index].count(old) == 1, old
    return [*sources[:index], sources[index].replace(old, new), *sources[index + 1:]]


def notebook(sources: list[str]) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(s) for s in sources], metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}})
    for i, cell in enumerate(nb.cells, 1):
        cell.id = f"cell-{i:02d}"
    nbformat.validate(nb)
    return nb


def main() -> None:
    exercise1 = "# Exercise 1"
    last = "        dC[Xb[k, j]] += demb[k, j]"
    nbformat.write(notebook(changed(cells(), exercise1, last, last + "\ndC =")),
                   HERE / "unfinished_line.ipynb")

    broken = changed(cells(), exercise1, "dh = dlogits @ W2.T",
                     "for i in range(2):\nprint(dlogits[i].sum())\ndh = dlogits @ W2.T")
    scratch = "# trying the dC loop\nfor k in range(3):\nfor j in range(3):\n    print(k, j)"
    at = next(i for i, s in enumerate(broken) if s.startswith(exercise1))
    nbformat.write(notebook([*broken[:at], scratch, *broken[at:]]), HERE / "lost_indent.ipynb")

    bad = changed(cells(), exercise1, "dbnraw = bngain * dh_preact",
                  "dbnraw = \n# dbnraw = bngain * dhpreact ?\ndbnraw = bngain * dh_preact")
    bad = changed(bad, exercise1, "dW2 = h.T @ dlogits", ">>> dh.shape\ndW2 = h.T @ dlogits")
    bad = changed(bad, "dlogits = F.softmax", 'cmp("logits", dlogits, logits)',
                  'cmp("logits", dlogits, logits)\nprint(dlogits.shape, (dlogits.sum(1)')
    nbformat.write(notebook(bad), HERE / "bad_lines.ipynb")


if __name__ == "__main__":
    main()
