"""Builds lecture_leading_ones.ipynb from its .py twin (cells marked ``# %%``); run from anywhere:

    python tests/submissions/shapes/build.py

The notebook is committed; this script says how it was made. It holds the same code as its twin,
so both must get the same verdicts.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def main() -> None:
    head, *cells = (HERE / "lecture_leading_ones.py").read_text().split("# %%\n")
    intro = "\n".join(line.lstrip("# ") for line in head.strip().splitlines()
                      if not line.startswith("# expect-"))
    nb = new_notebook(cells=[new_markdown_cell(intro)]
                      + [new_code_cell(c.strip("\n")) for c in cells], metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}})
    for i, cell in enumerate(nb.cells, 1):
        cell.id = f"cell-{i:02d}"
    nbformat.validate(nb)
    nbformat.write(nb, HERE / "lecture_leading_ones.ipynb")


if __name__ == "__main__":
    main()
