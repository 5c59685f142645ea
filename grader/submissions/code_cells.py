"""Code cells -> one Python source: a notebook's cells, or those an IPython kernel has run.

Nothing is run: IPython magics and shell lines are dropped with a note, and each cell is marked
in the joined source with a ``# %% [cell N]`` line so that later stages can name cells.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Iterable

from ..lecture.catalog import STUB_NAMES
from .cell_salvage import salvage_cell
from .stub_functions import exercise_functions
from .submission import too_deep
from .kept import KeptByText

__all__ = ["CELL_MARKER", "CELL_MARKER_RE", "CodeCell", "first_line", "join_cell_trees",
           "join_cells"]

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


def first_line(node: ast.stmt) -> int:
    """The line a statement starts on, its decorators included."""
    decorators = getattr(node, "decorator_list", None) or []
    return min([node.lineno, *(d.lineno for d in decorators)])


def join_cells(cells: Iterable[CodeCell]) -> tuple[str, tuple[str, ...]]:
    """join_cell_trees without the trees."""
    code, notes, _ = join_cell_trees(cells)
    return code, notes


def join_cell_trees(cells: Iterable[CodeCell]
                    ) -> tuple[str, tuple[str, ...], tuple[ast.Module, ...]]:
    """Code cells -> one source with a ``# %% [label]`` line before each cell, and notes.

    Magics and shell lines become ``pass`` (line numbers inside a cell are kept); a statement that
    is not Python even then is left out with a note naming its line, and the rest of its cell
    kept (grader.submissions.cell_salvage); a cell with nothing left, or too broken, goes whole.
    In the exercise-function format only definitions are kept (functions, imports, constants),
    as a notebook also holds the ``check()`` call, plots and scratch work that a .py file would
    not. The trees: each kept cell's (shared: never to be changed), whose statements are those of
    the joined source, cell-relative line numbers aside.
    """
    kept, notes = _parse_cells(cells)
    if _defines_stubs(tree for _, tree in kept):
        kept, not_run = _definitions_only(kept)
        if not_run:
            notes.append(f"not run: {_compress(not_run)} (from a notebook in the exercise-function "
                         "format only functions, imports and constants are taken)")
    return ("".join(_marked(cell) for cell, _ in kept), tuple(notes),
            tuple(tree for _, tree in kept))


def _parse_cells(cells: Iterable[CodeCell]) -> tuple[list[tuple[CodeCell, ast.Module]], list[str]]:
    """Each cell that is Python once its magics are dropped, parsed; notes on what was not."""
    kept: list[tuple[CodeCell, ast.Module]] = []
    magic_notes: list[str] = []
    skipped: list[str] = []
    for cell in cells:
        parsed = _parsed_cell(cell.source)
        if parsed.whole:
            magic_notes.append(f"{cell.label}: {parsed.whole} cell not run")
            continue
        if parsed.dropped:
            dropped = parsed.dropped
            shown = ", ".join(d[:40] for d in dropped[:3]) + (", ..." if len(dropped) > 3 else "")
            magic_notes.append(f"{cell.label}: {shown}")
        skipped += [problem.format(label=cell.label) for problem in parsed.problems]
        if parsed.tree is not None:
            kept.append((CodeCell(cell.label, parsed.text), parsed.tree))
    notes: list[str] = []
    if magic_notes:
        notes.append("IPython magics and shell lines were dropped (not run): " + "; ".join(magic_notes))
    return kept, notes + skipped


@dataclass(frozen=True)
class _ParsedCell:
    """What a cell's text alone gives: its magic lines, its Python text and tree (None: left
    out), and notes on what was left out, ``{label}`` standing for the cell's label."""

    whole: str | None
    dropped: tuple[str, ...]
    text: str
    tree: ast.Module | None
    problems: tuple[str, ...]


# Most cells of a class are the lecture's own, the same text in every notebook: a cell's
# outcome is kept per process by its text (its tree is shared: nothing that reads it changes it)
_PARSED: KeptByText[_ParsedCell] = KeptByText(2048)


def _parsed_cell(source: str) -> _ParsedCell:
    found = _PARSED.get(source)
    if found is None:
        found, keep = _parse_cell(source)
        if keep:
            _PARSED.keep(source, found)
    return found


def _parse_cell(source: str) -> tuple[_ParsedCell, bool]:
    """The cell parsed, and whether the outcome may be kept (not when the parser ran out of
    stack or memory: that depends on how deep the caller's stack was)."""
    text, dropped, whole = _python_only(source)
    if whole:
        return _ParsedCell(whole, (), "", None, ()), True
    problems: list[str] = []
    keep = True
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        salvaged = salvage_cell(text)
        if salvaged is None:
            return _ParsedCell(None, tuple(dropped), text, None, (
                f"{{label}} has a syntax error at line {e.lineno} ({_braced(e.msg)}) and was "
                "left out",)), True
        text, tree = salvaged.source, salvaged.tree
        problems += [f"{{label}}, {spot.lines()}: `{_braced(spot.text)}` is not complete Python "
                     f"({_braced(spot.reason)}) and was left out; the rest of the cell was graded"
                     for spot in salvaged.left_out]
    except (RecursionError, MemoryError):
        tree, keep = None, False
    except ValueError as e:
        return _ParsedCell(None, tuple(dropped), text, None, (
            f"{{label}} cannot be parsed ({type(e).__name__}) and was left out",)), True
    if tree is None or too_deep(tree) is not None:
        problems.append("{label} is nested too deeply to analyse and was left out: split its "
                        "long expression into several shorter statements")
        tree = None
    return _ParsedCell(None, tuple(dropped), text, tree, tuple(problems)), keep


def _braced(text: object) -> str:
    """``text`` as it reads after str.format: a student's braces kept."""
    return str(text).replace("{", "{{").replace("}", "}}")


def _marked(cell: CodeCell) -> str:
    """The cell under its marker line; a line of its own that would read as a marker is bent."""
    body = cell.source if cell.source.endswith("\n") else cell.source + "\n"
    if "# %% [" in body:
        body = "".join("#  " + line[2:] if CELL_MARKER_RE.match(line.rstrip("\n")) else line
                       for line in body.splitlines(True))
    return CELL_MARKER.format(label=cell.label) + "\n" + body


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
        words = lines[first].strip()[2:].split(maxsplit=1)
        magic = words[0] if words else ""
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
    return any(exercise_functions(tree) for tree in trees)


def _is_definition(node: ast.stmt) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return True   # a docstring
    if isinstance(node, ast.Import):
        return not any(a.name.split(".")[0] == "grader" for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")[0] != "grader" and node.level == 0
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
        return all(isinstance(t, ast.Name) and t.id in STUB_NAMES for t in node.targets)
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
                      for n in range(first_line(node), (node.end_lineno or node.lineno) + 1)}
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


def _compress(items: list[str]) -> str:
    return "; ".join(items[:8]) + (f"; and {len(items) - 8} more" if len(items) > 8 else "")
