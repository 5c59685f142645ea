"""Jupyter notebooks: a submitted .ipynb as Python source, and the exercise notebook itself.

Reading never runs anything: only code cells are taken (markdown and outputs are ignored), IPython
magics and shell lines are dropped with a note, and each cell is marked in the joined source with
a ``# %% [cell N]`` line so that later stages can name cells. The exercise notebook
(``exercises/backprop.ipynb``) is generated from ``exercises/backprop.py`` by
``write_exercise_notebook`` (``backprop-grader notebook``), byte for byte reproducibly.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import nbformat
from nbformat.validator import ValidationError, normalize

from ..lecture.catalog import STUB_NAMES
from .loader import MAX_SOURCE_BYTES, SubmissionError

__all__ = [
    "CELL_MARKER",
    "CELL_MARKER_RE",
    "CodeCell",
    "build_exercise_notebook",
    "cell_of_line",
    "join_cells",
    "load_notebook_source",
    "read_notebook",
    "write_exercise_notebook",
]

MAX_NOTEBOOK_BYTES = 64 * 2**20     # outputs (images) make notebooks large; they are never read
CELL_MARKER = "# %% [{label}]"
CELL_MARKER_RE = re.compile(r"^# %% \[(?P<label>[^\n]+)\]$")
# cell magics whose body is Python: the magic line goes, the body stays
_PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})
_ASSIGNED_MAGIC = re.compile(r"^\s*[A-Za-z_][\w.,\s]*=\s*[%!]")
_HELP_LINE = re.compile(r"^\s*[?]*[A-Za-z_][\w.]*(\(\))?\s*\?{1,2}\s*$|^\s*\?+[A-Za-z_][\w.]*\s*$")


@dataclass(frozen=True)
class CodeCell:
    """One code cell: where it is (``cell 7``, ``In [3]``) and its source."""

    label: str
    source: str


# -- reading a submitted notebook ----------------------------------------------------------------

def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """Read and validate a notebook; every problem is a one-line SubmissionError naming the file."""
    p = Path(path)
    if not p.exists():
        raise SubmissionError(f"{p}: no such file")
    if p.is_dir():
        raise SubmissionError(f"{p}: is a folder, expected a .py or .ipynb file")
    size = p.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise SubmissionError(f"{p}: {size:,} bytes, more than the {MAX_NOTEBOOK_BYTES:,} a notebook "
                              "may have: clear its outputs (Kernel > Restart & Clear Output) and save")
    if size == 0:
        raise SubmissionError(f"{p}: the file is empty")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SubmissionError(f"{p}: not UTF-8 text (byte {e.start}): is this really a notebook?") \
            from None
    except OSError as e:
        raise SubmissionError(f"{p}: cannot read: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SubmissionError(f"{p}: not a valid notebook: broken JSON at line {e.lineno}, column "
                              f"{e.colno} ({e.msg}); was the file cut short or edited by hand?") \
            from None
    except RecursionError:
        raise SubmissionError(f"{p}: not a valid notebook: JSON nested too deeply") from None
    if not isinstance(data, dict) or "nbformat" not in data:
        raise SubmissionError(f"{p}: not a Jupyter notebook (no 'nbformat' field at the top)")
    version = data.get("nbformat")
    if version != 4:
        raise SubmissionError(
            f"{p}: notebook format version {version!r}, but only version 4 is read: open and save "
            "it with a current Jupyter, or `jupyter nbconvert --to notebook --nbformat 4`")
    minor = data.get("nbformat_minor")
    if not isinstance(minor, int):
        raise SubmissionError(f"{p}: not a valid notebook: 'nbformat_minor' is {minor!r}")
    cells = data.get("cells")
    if isinstance(cells, list):          # outputs are never read: their shape does not matter
        for cell in cells:
            if isinstance(cell, dict) and cell.get("cell_type") == "code" and "outputs" in cell:
                cell["outputs"] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # missing cell ids and the like: normalize() fixes them
        try:
            _, data = normalize(data, 4, minor, relax_add_props=True,
                                strip_invalid_metadata=True)
            nb = nbformat.from_dict(data)
            nbformat.validate(nb, relax_add_props=True)   # tools add fields of their own
        except ValidationError as e:
            where = "/".join(str(x) for x in getattr(e, "absolute_path", ())) or "top level"
            raise SubmissionError(f"{p}: not a valid notebook: {str(e.message)[:200]} (at {where})") \
                from None
        except (TypeError, KeyError, AttributeError) as e:
            raise SubmissionError(f"{p}: not a valid notebook: {type(e).__name__}: {e}") from None
    if not nb.cells:
        raise SubmissionError(f"{p}: the notebook is empty (no cells)")
    return nb


def load_notebook_source(path: str | Path) -> tuple[str, tuple[str, ...]]:
    """A notebook's code cells as one Python source, and notes on what was dropped."""
    p = Path(path)
    nb = read_notebook(p)
    cells = [CodeCell(f"cell {i}", _cell_text(cell.source))
             for i, cell in enumerate(nb.cells, 1) if cell.cell_type == "code"]
    if not cells:
        raise SubmissionError(f"{p}: the notebook has no code cells")
    if not any(c.source.strip() for c in cells):
        raise SubmissionError(f"{p}: every code cell of the notebook is empty")
    code, notes = join_cells(cells)
    if not code.strip():
        raise SubmissionError(f"{p}: no Python code in the notebook ({'; '.join(notes)})")
    if len(code) > MAX_SOURCE_BYTES:
        raise SubmissionError(f"{p}: {len(code):,} characters of code, more than the "
                              f"{MAX_SOURCE_BYTES:,} a submission may have")
    return code, notes


def _cell_text(source: object) -> str:
    if isinstance(source, list):
        return "".join(str(s) for s in source)
    return str(source)


def join_cells(cells: Iterable[CodeCell]) -> tuple[str, tuple[str, ...]]:
    """Code cells -> one source with a ``# %% [label]`` line before each cell, and notes.

    Magics and shell lines become ``pass`` (line numbers inside a cell are kept); a cell that is
    not Python even then is left out with a note naming its line. In the exercise-function format
    only definitions are kept (functions, imports, constants), as a notebook also holds the
    ``check()`` call, plots and scratch work that a .py file would not.
    """
    kept: list[tuple[CodeCell, ast.Module]] = []
    magic_notes: list[str] = []
    skipped: list[str] = []
    for cell in cells:
        text, dropped, whole = _python_only(cell.source)
        if whole:
            magic_notes.append(f"{cell.label}: {whole} cell not run")
            continue
        if dropped:
            shown = ", ".join(d[:40] for d in dropped[:3]) + (", ..." if len(dropped) > 3 else "")
            magic_notes.append(f"{cell.label}: {shown}")
        try:
            tree = ast.parse(text)
        except SyntaxError as e:
            skipped.append(f"{cell.label} has a syntax error at line {e.lineno} ({e.msg}) and was "
                           "left out")
            continue
        except (ValueError, RecursionError, MemoryError) as e:
            skipped.append(f"{cell.label} cannot be parsed ({type(e).__name__}) and was left out")
            continue
        kept.append((CodeCell(cell.label, text), tree))
    notes: list[str] = []
    if magic_notes:
        notes.append("IPython magics and shell lines were dropped (not run): " + "; ".join(magic_notes))
    notes += skipped
    if _defines_stubs(tree for _, tree in kept):
        kept, not_run = _definitions_only(kept)
        if not_run:
            notes.append(f"not run: {_compress(not_run)} (from a notebook in the exercise-function "
                         "format only functions, imports and constants are taken)")
    parts = []
    for cell, _ in kept:
        body = cell.source if cell.source.endswith("\n") else cell.source + "\n"
        if "# %% [" in body:      # a line of the cell's own that would read as a cell marker
            body = "".join("#  " + line[2:] if CELL_MARKER_RE.match(line.rstrip("\n"))
                           else line for line in body.splitlines(True))
        parts.append(CELL_MARKER.format(label=cell.label) + "\n" + body)
    return "".join(parts), tuple(notes)


def _python_only(source: str) -> tuple[str, list[str], str | None]:
    """(source with magic lines replaced by ``pass``, the dropped lines, or the cell magic that
    makes the whole cell non-Python)."""
    try:
        ast.parse(source)
        return source, [], None
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    lines = source.splitlines()
    dropped: list[str] = []
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        magic = lines[first].strip()[2:].split(maxsplit=1)[0] if lines[first].strip()[2:] else ""
        if magic not in _PYTHON_CELL_MAGICS:
            return "", [], f"%%{magic}"
        dropped.append(lines[first].strip())
        lines[first] = ""
    out = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")) or _ASSIGNED_MAGIC.match(line) or _HELP_LINE.match(line):
            dropped.append(stripped)
            out.append(line[: len(line) - len(stripped)] + "pass")
        else:
            out.append(line)
    return "\n".join(out) + ("\n" if source.endswith("\n") else ""), dropped, None


def _defines_stubs(trees: Iterable[ast.Module]) -> bool:
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in STUB_NAMES
               for tree in trees for node in tree.body)


def _is_definition(node: ast.stmt) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return True   # a docstring
    if isinstance(node, ast.Import):
        return not any(a.name.split(".")[0] == "grader" for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")[0] != "grader" and node.level == 0
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        return not any(isinstance(n, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr,
                                      ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
                                      ast.Lambda))
                       for n in ast.walk(node.value))
    return False


def _definitions_only(kept: list[tuple[CodeCell, ast.Module]]
                      ) -> tuple[list[tuple[CodeCell, ast.Module]], list[str]]:
    """Blank every top-level statement that is not a definition; say where."""
    out: list[tuple[CodeCell, ast.Module]] = []
    not_run: list[str] = []
    for cell, tree in kept:
        lines = cell.source.splitlines()
        keep_lines = {n for node in tree.body if _is_definition(node)
                      for n in range(_first_line(node), (node.end_lineno or node.lineno) + 1)}
        dropped_here = []
        for node in tree.body:
            if _is_definition(node):
                continue
            span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            if any(n in keep_lines for n in span):
                continue     # shares a line with a definition (a; b): leave the line alone
            for n in span:
                lines[n - 1] = ""
            if not isinstance(node, ast.Pass) and not _is_self_check(node):
                dropped_here.append(node.lineno)   # (magic lines and check() go unmentioned)
        if dropped_here:
            not_run.append(f"{cell.label} line{'s' if len(dropped_here) > 1 else ''} "
                           + ", ".join(str(n) for n in dropped_here[:6])
                           + (", ..." if len(dropped_here) > 6 else ""))
        text = "\n".join(lines) + "\n"
        out.append((CodeCell(cell.label, text), ast.parse(text)))
    return out, not_run


def _is_self_check(node: ast.stmt) -> bool:
    """``from grader import check`` and ``check(...)``: the notebook's own self-check cell."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True   # only grader imports are dropped (see _is_definition)
    value = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
    if isinstance(node, ast.Expr) and isinstance(value, (ast.Name, ast.Attribute)):
        return True   # a bare name, shown as the cell's output: nothing runs
    if isinstance(value, ast.Call):
        f = value.func
        return isinstance(f, ast.Name) and f.id == "check" or \
            isinstance(f, ast.Attribute) and f.attr == "check"
    return False


def _first_line(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", None) or []
    return min([node.lineno, *(d.lineno for d in decorators)])


def _compress(items: list[str]) -> str:
    return "; ".join(items[:8]) + (f"; and {len(items) - 8} more" if len(items) > 8 else "")


def cell_of_line(code: str, line: int) -> tuple[str | None, int]:
    """Which cell a line of the joined source is in, and its line number inside that cell.

    Source without cell markers (a .py file) gives ``(None, line)``.
    """
    label, start = None, 0
    for i, text in enumerate(code.splitlines()[: max(line, 1)], 1):
        m = CELL_MARKER_RE.match(text)
        if m:
            label, start = m.group("label"), i
    return label, line - start


# -- the exercise notebook, generated from exercises/backprop.py ---------------------------------

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
    """The exercise notebook for ``source`` (the text of exercises/backprop.py): an introduction
    that says how to self-check, the imports, one cell per exercise function, and ``check()``."""
    tree = ast.parse(source)
    lines = source.splitlines()
    doc = ast.get_docstring(tree, clean=True) or ""
    title, _, rest = doc.partition("\n")
    about = _markdown_from_docstring(rest)
    cells: list[nbformat.NotebookNode] = [
        nbformat.v4.new_markdown_cell("\n\n".join(p for p in (
            f"# {title.strip() or _INTRO_TITLE}", _SELF_CHECK,
            f"## The exercises\n\n{about}" if about else "") if p))]
    imports: list[str] = []
    previous_end = 0
    body = tree.body[1:] if doc else tree.body
    for node in body:
        start = _first_line(node)
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
    cells.append(nbformat.v4.new_markdown_cell("## Check your work"))
    cells.append(nbformat.v4.new_code_cell(_CHECK_CELL))
    for i, cell in enumerate(cells, 1):
        cell.id = f"cell-{i:02d}"              # stable ids: the file is regenerated, not edited
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    nb.nbformat_minor = 5
    nbformat.validate(nb)
    return nb


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
