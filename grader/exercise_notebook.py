"""The exercise notebook students get (exercises/backprop.ipynb), generated from the exercise
file (exercises/backprop.py) byte for byte reproducibly: an introduction that says how to
self-check, the imports, one cell per exercise function under its exercise's heading, and a last
cell that runs ``check()``. ``backprop-grader notebook`` writes it and checks it for drift.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat

from .submissions.code_cells import first_line

__all__ = ["build_exercise_notebook", "exercise_notebook_text", "write_exercise_notebook"]

_BANNER = re.compile(r"^#\s*(Exercise\s+\d+\s*:.*?)\s*$")
_INTRO_TITLE = "Backprop ninja: the exercises (makemore part 4)"
_SELF_CHECK = """\
## How to check your work

* **In this notebook:** fill in a function, run its cell, then run the last cell:

  ```python
  from grader import check
  check()
  ```

  `check()` grades the functions this notebook has run so far and shows a table here, one row
  per gradient. Your code runs in a separate, limited process, never in this kernel; nothing
  you have not run yourself is run. To grade the saved file instead: `check("backprop.ipynb")`.
* **From a terminal:** `backprop-grader check backprop.ipynb` (exit code 0 when everything
  passes). The notebook and `backprop.py` are graded the same way.

`exact` means every element equals autograd's, `approx` that it is within rounding of it:
both earn the points. Points come from grading each function on its own, with autograd's
upstream gradients; the `chained` column shows what happens with your own, as in the lecture."""
_CHECK_CELL = "from grader import check\n\ncheck()"


def _markdown_from_docstring(doc: str) -> str:
    """The module docstring, with its indented command blocks as fenced code."""
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if block:
            out.extend(["```sh", *block, "```"])
            block.clear()

    for line in doc.strip().splitlines():
        if line.startswith("    ") and line.strip():
            block.append(line.strip())
            continue
        if not line.strip() and block:
            continue
        flush()
        out.append(line)
    flush()
    return "\n".join(out).strip()


def build_exercise_notebook(source: str) -> nbformat.NotebookNode:
    """The exercise notebook for ``source`` (the text of exercises/backprop.py)."""
    tree = ast.parse(source)
    doc = ast.get_docstring(tree, clean=True) or ""
    cells = [_introduction(doc), *_exercise_cells(tree.body[1:] if doc else tree.body,
                                                  source.splitlines()),
             nbformat.v4.new_markdown_cell("## Check your work"),
             nbformat.v4.new_code_cell(_CHECK_CELL)]
    for i, cell in enumerate(cells, 1):
        cell.id = f"cell-{i:02d}"              # stable ids: the file is regenerated, not edited
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    nb.nbformat_minor = 5
    nbformat.validate(nb)
    return nb


def _introduction(doc: str) -> nbformat.NotebookNode:
    """The first cell: the file's title, how to self-check, and the rest of its docstring."""
    title, _, rest = doc.partition("\n")
    about = _markdown_from_docstring(rest)
    return nbformat.v4.new_markdown_cell("\n\n".join(p for p in (
        f"# {title.strip() or _INTRO_TITLE}", _SELF_CHECK,
        f"## The exercises\n\n{about}" if about else "") if p))


def _exercise_cells(body: list[ast.stmt], lines: list[str]) -> list[nbformat.NotebookNode]:
    """One code cell for the imports, one per definition, and a heading for each ``# Exercise
    N: ...`` comment between them."""
    cells: list[nbformat.NotebookNode] = []
    imports: list[str] = []
    previous_end = 0
    for node in body:
        start = first_line(node)
        for text in lines[previous_end:start - 1]:       # comments between definitions
            m = _BANNER.match(text)
            if m:
                cells.append(nbformat.v4.new_markdown_cell(f"## {m.group(1)}"))
        segment = "\n".join(lines[start - 1:node.end_lineno]).rstrip()
        previous_end = node.end_lineno or start
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(segment)
            if len(imports) == 1:
                cells.append(nbformat.v4.new_code_cell(""))
            cells[-1].source = "\n".join(imports)
            continue
        cells.append(nbformat.v4.new_code_cell(segment))
    return cells


def exercise_notebook_text(source_path: str | Path) -> str:
    """The exercise notebook for a .py exercise file, as the exact text written to disk."""
    return nbformat.writes(build_exercise_notebook(Path(source_path).read_text("utf-8"))) + "\n"


def write_exercise_notebook(source_path: str | Path, out_path: str | Path) -> bool:
    """Write the notebook generated from ``source_path``; True when the file changed."""
    text = exercise_notebook_text(source_path)
    out = Path(out_path)
    if out.exists() and out.read_text("utf-8") == text:
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, "utf-8")
    return True
