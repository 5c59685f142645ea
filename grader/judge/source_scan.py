"""Finding suspect statements in a source fast: the lines a pattern names, the nodes of the
statements on them, and where a line is in a notebook's cells.

The static scans (grader.judge.integrity for autograd flags, grader.judge.review for signs of
reaching around the watch) look only at the statements on lines whose text could hold what they
look for, so a notebook of hundreds of cells costs a regular-expression pass, not a walk of
every node.
"""

from __future__ import annotations

import ast
import bisect
import re
from typing import Iterator

from ..submissions.code_cells import CELL_MARKER_RE

__all__ = ["cell_markers", "line_text", "nodes_near", "parsed", "suspect_nodes", "trigger_lines",
           "where_in_cells"]

_BODIES = ("body", "orelse", "finalbody")


def trigger_lines(code: str, triggers: re.Pattern[str]) -> list[int] | None:
    """The lines (sorted) where ``triggers`` matches, or None where the text cannot tell:
    non-ASCII source (Python normalises identifiers, so ``ｇrad`` is ``grad``) or a carriage
    return (a line break the count of "\\n" would miss)."""
    if not code.isascii() or "\r" in code:
        return None
    lines: list[int] = []
    line, at = 1, 0
    for match in triggers.finditer(code):
        line += code.count("\n", at, match.start())
        at = match.start()
        if not lines or lines[-1] != line:
            lines.append(line)
    return lines


def parsed(code: str, *, filename: str, tree: ast.Module | None = None) -> ast.Module | None:
    """``tree``, or ``code`` parsed; None for code that does not parse (the loader says why)."""
    if tree is not None:
        return tree
    try:
        return ast.parse(code, filename=filename)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def suspect_nodes(code: str, triggers: re.Pattern[str], *, filename: str,
                  tree: ast.Module | None = None
                  ) -> tuple[ast.Module, Iterator[ast.AST]] | None:
    """The tree and the nodes of the statements on lines ``triggers`` matches (every node
    where the text cannot tell: trigger_lines); None when no line matches or the code does not
    parse."""
    lines = trigger_lines(code, triggers)
    if lines == []:
        return None
    tree = parsed(code, filename=filename, tree=tree)
    if tree is None:
        return None
    return tree, (ast.walk(tree) if lines is None else nodes_near(tree.body, lines))


def _touches(lines: list[int], first: int, last: int) -> bool:
    i = bisect.bisect_left(lines, first)
    return i < len(lines) and lines[i] <= last


def nodes_near(statements: list[ast.stmt], lines: list[int]) -> Iterator[ast.AST]:
    """The nodes of the statements that span one of ``lines``: a compound statement's header is
    walked whole, its bodies statement by statement, so a long function with one suspect line
    costs that line's statement."""
    for stmt in statements:
        decorators = getattr(stmt, "decorator_list", ())     # above the def / class line
        first = min(stmt.lineno, *(d.lineno for d in decorators)) if decorators else stmt.lineno
        if not _touches(lines, first, stmt.end_lineno or stmt.lineno):
            continue
        yield stmt
        for name, value in ast.iter_fields(stmt):
            if name in _BODIES:
                yield from nodes_near(value, lines)
            elif name == "handlers":                         # except clauses
                for handler in value:
                    yield handler
                    if handler.type is not None:
                        yield from ast.walk(handler.type)
                    yield from nodes_near(handler.body, lines)
            elif name == "cases":                            # match: case ... if ...:
                for case in value:
                    yield case
                    yield from ast.walk(case.pattern)
                    if case.guard is not None:
                        yield from ast.walk(case.guard)
                    yield from nodes_near(case.body, lines)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        yield from ast.walk(item)
            elif isinstance(value, ast.AST):
                yield from ast.walk(value)


def cell_markers(code_lines: list[str]) -> list[tuple[int, str]]:
    """The ``# %% [cell N]`` lines of a notebook's joined cells: (line number, label)."""
    return [(i + 1, m.group("label")) for i, line in enumerate(code_lines)
            if (m := CELL_MARKER_RE.match(line))]


def where_in_cells(markers: list[tuple[int, str]], lineno: int) -> str:
    """``line 12``, or ``cell 7, line 3`` below the last cell marker before the line."""
    i = bisect.bisect_left(markers, (lineno, "")) - 1
    if i < 0:
        return f"line {lineno}"
    marker_line, label = markers[i]
    return f"{label}, line {lineno - marker_line}"


def line_text(code_lines: list[str], lineno: int) -> str:
    """Line ``lineno``, stripped and cut to 120 characters (a flag's quote)."""
    text = code_lines[lineno - 1].strip() if 0 < lineno <= len(code_lines) else ""
    return text[:120]
