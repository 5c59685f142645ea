"""A notebook cell that does not parse as a whole -> the same cell with the statements that do
not parse left out (blanked, so that every other line keeps its number), and where they were.

A student types ``dC =`` at the end of a cell after it last ran, or a ``for`` loses its body's
indentation: the rest of the cell is still their work. Nothing here runs: Python's own parser
says where the cell breaks, and the top-level statement around that line is left out whole (a
bad line inside a ``def`` or a loop costs the whole block, never half of it). The work is capped:
a few parses per bad spot, a few bad spots per cell; past that the cell is left out whole.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

__all__ = ["LeftOut", "SalvagedCell", "salvage_cell"]

_MAX_SPOTS = 8                   # bad spots one cell may have and still be graded
_MAX_CHARS = 100_000             # a larger cell that does not parse is left out whole
_SHOWN = 60                      # characters of a left-out line shown in the note
_AFTER_LINE = re.compile(r" on line (\d+)$")
# a line that goes on the statement above it, though it starts in column 0
_CONTINUES = re.compile(r"^(?:else|elif|except|finally)\b|^[)\]}]")


@dataclass(frozen=True)
class LeftOut:
    """Lines of a cell left out: the first and last with code, the first one's text, why."""

    first: int
    last: int
    text: str
    reason: str

    def lines(self) -> str:
        return f"line {self.first}" if self.first == self.last else \
            f"lines {self.first}-{self.last}"


@dataclass(frozen=True)
class SalvagedCell:
    """The cell's source with the left-out lines blank, its tree, and what was left out."""

    source: str
    tree: ast.Module
    left_out: tuple[LeftOut, ...]


def salvage_cell(source: str) -> SalvagedCell | None:
    """``source`` with each top-level statement that does not parse blanked; None when that
    leaves no code, takes too many tries, or the cell cannot be parsed for another reason."""
    if len(source) > _MAX_CHARS:
        return None
    lines = source.split("\n")
    starts = _statement_starts(lines)
    spans: list[tuple[int, int, str]] = []          # 0-based first, last line; the reason
    for _ in range(_MAX_SPOTS + 1):
        text = "\n".join(lines)
        try:
            tree = ast.parse(text)
        except SyntaxError as e:
            span = _broken_span(lines, starts, e)
            if span is None or len(spans) == _MAX_SPOTS:
                return None
            first, last = span
            spans.append((first, last, str(e.msg)))
            for i in range(first, last + 1):
                lines[i] = ""
            continue
        except (ValueError, RecursionError, MemoryError):
            return None
        if not _has_code(tree):
            return None
        return SalvagedCell(text, tree, _left_out(source.split("\n"), spans))
    return None


def _statement_starts(lines: list[str]) -> list[int]:
    """The lines (0-based) that may begin a top-level statement: code in column 0 that does not
    continue the line above. A line inside a string or brackets may be counted too; the parser
    then says so, and the search goes on."""
    starts = []
    for i, line in enumerate(lines):
        if not line or line[0] in " \t#" or _CONTINUES.match(line):
            continue
        if i and lines[i - 1].rstrip().endswith("\\"):
            continue
        starts.append(i)
    return starts


def _broken_span(lines: list[str], starts: list[int], error: SyntaxError
                 ) -> tuple[int, int] | None:
    """The lines (0-based, inclusive) of the top-level statement where ``error`` is; None when
    they are blank already (leaving them out again would not help)."""
    at = _error_line(lines, error)
    if at is None:
        return None
    anchor = at
    after = _AFTER_LINE.search(str(error.msg))      # expected an indented block after ... on line N
    if after and 0 < int(after.group(1)) <= at + 1:
        anchor = int(after.group(1)) - 1
    first = max((s for s in starts if s <= anchor), default=0)
    last = min((s for s in starts if s > at), default=len(lines)) - 1
    if isinstance(error, IndentationError) and "unexpected indent" in str(error.msg) \
            and first < at and _simple_statements(lines[first:at]):
        first = at              # an indented line after a complete statement: only it goes
    if not any(line.strip() for line in lines[first:last + 1]):
        return None
    return first, last


def _error_line(lines: list[str], error: SyntaxError) -> int | None:
    """The line (0-based) the parser complained about, moved up off blank lines (an error at the
    end of the cell is reported on the line after it)."""
    at = (error.lineno or len(lines)) - 1
    at = min(max(at, 0), len(lines) - 1)
    while at > 0 and not lines[at].strip():
        at -= 1
    return at if lines[at].strip() else None


def _simple_statements(lines: list[str]) -> bool:
    """Whether ``lines`` parse on their own as statements with no block (no for, def, ...)."""
    try:
        tree = ast.parse("\n".join(lines))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return all(not hasattr(node, "body") for node in tree.body)


def _has_code(tree: ast.Module) -> bool:
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
               for node in tree.body)


def _left_out(lines: list[str], spans: list[tuple[int, int, str]]) -> tuple[LeftOut, ...]:
    """One entry per bad spot, in line order. A bracket never closed, found after a span that
    starts right below it, is the head of the same broken statement (``x = f(`` above a bad
    argument line): one spot, with the reason found first."""
    merged: list[tuple[int, int, str]] = []
    for first, last, reason in spans:
        head = "never closed" in reason
        at = next((k for k, (f, l, _) in enumerate(merged)
                   if first <= l and (last >= f or head and last + 1 == f)), None)
        if at is None:
            merged.append((first, last, reason))
        else:
            f, l, r = merged[at]
            merged[at] = (min(f, first), max(l, last), r)
    out = []
    for first, last, reason in sorted(merged):
        code = [i for i in range(first, last + 1)
                if lines[i].strip() and not lines[i].lstrip().startswith("#")]
        if code:
            out.append(LeftOut(code[0] + 1, code[-1] + 1, _shown(lines[code[0]]), reason))
    return tuple(out)


def _shown(line: str) -> str:
    """A line of the student's, safe to show: printable, and short."""
    text = "".join(c if c.isprintable() else "?" for c in line.strip())
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."
