"""Submission file -> Submission: a .py file or a notebook, read and parsed, never run, and
classified as the exercise-function format ("stubs") or lecture style."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

from ..lecture.catalog import STUB_NAMES
from .lecture_source import looks_like_lecture_style
from .notebook import load_notebook_cells
from .stub_functions import exercise_functions, functions_made_at_run_time
from .submission import MAX_SOURCE_BYTES, Submission, SubmissionError, read_submission_text, \
    too_deep

# Submission and SubmissionError live in grader.submissions.submission; they are named here too
# because this module is where a submission comes from (grader.Submission, api, selfcheck)
__all__ = ["Submission", "SubmissionError", "load_submission", "parse_source",
           "submission_from_code"]


def load_submission(path: str | Path) -> Submission:
    """Read a .py (or .ipynb) submission and find what it defines, without running it."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".ipynb":
        code, notes, trees = load_notebook_cells(p)
        return submission_from_code(code, name=p.name, path=str(p), source_kind="ipynb",
                                    notes=notes, cell_trees=trees)
    if suffix not in (".py", ""):
        if not p.exists():
            raise SubmissionError(f"{p}: no such file")
        raise SubmissionError(f"{p}: expected a .py or .ipynb file, got '{suffix}'")
    code = read_submission_text(p, max_bytes=MAX_SOURCE_BYTES, kind="Python file",
                                too_large="a submission may have")
    if not code.strip():
        raise SubmissionError(f"{p}: the file is empty")
    return submission_from_code(code, name=p.name, path=str(p))


def submission_from_code(code: str, *, name: str, path: str = "", source_kind: str = "py",
                         notes: tuple[str, ...] = (),
                         cell_trees: tuple[ast.Module, ...] | None = None) -> Submission:
    """Classify Python source as stub format or lecture style. ``cell_trees``: ``code`` is
    join_cell_trees', these its cells' trees: each statement in it was in a cell whose tree
    passed too_deep, and nests as deep here (no need to walk the whole tree again); what is
    read from the statements alone is read from the cells' (shared, per process) trees, and
    ``code`` itself is parsed only where a line number in it is needed (the submission's
    ``tree`` is then None: what reads it parses ``code``)."""
    if cell_trees is None:
        tree: ast.Module | None = parse_source(code, filename=name)
        _refuse_deep_nesting(tree, filename=name)
        statements = tree
    else:   # the cells' statements, in order: what a parse of ``code`` would hold, lines aside
        tree = None
        statements = ast.Module(body=[node for cell in cell_trees for node in cell.body],
                                type_ignores=[])
    functions = exercise_functions(statements)
    made = functions_made_at_run_time(
        code, functions, cell_trees=cell_trees,
        parse=lambda: tree if tree is not None else parse_source(code, filename=name))
    if functions:
        if made is not None and made.names:
            notes = (*notes, f"{made.describe()}: {made.advice()}")
        return Submission(name=name, path=path, code=code, format="stubs",
                          source_kind=source_kind, functions=functions, notes=notes, tree=tree)
    if looks_like_lecture_style(statements, cell_trees=cell_trees):
        return Submission(name=name, path=path, code=code, format="lecture",
                          source_kind=source_kind, notes=notes, tree=tree)
    if made is not None:
        raise SubmissionError(f"{name}: defines no exercise function by `def`: {made.describe()}; "
                              f"{made.advice()}", source=code)
    raise SubmissionError(
        f"{name}: found none of the exercise functions ({', '.join(STUB_NAMES[:3])}, ...) "
        "and no lecture-style assignments (dlogprobs = ...): is this the right file?",
        source=code)


def parse_source(code: str, *, filename: str) -> ast.Module:
    """Parse, turning a SyntaxError into a SubmissionError that names the line."""
    try:
        return ast.parse(code, filename=filename)
    except SyntaxError as e:
        where = f"line {e.lineno}" if e.lineno else "unknown line"
        text = f": {e.text.strip()}" if e.text and e.text.strip() else ""
        raise SubmissionError(f"{filename}: syntax error at {where}: {e.msg}{text}") from None
    except ValueError as e:  # e.g. null bytes
        raise SubmissionError(f"{filename}: cannot parse as Python: {e}") from None
    except (RecursionError, MemoryError):
        line = _busiest_line(code)
        where = f" at line {line}" if line else ""
        raise SubmissionError(f"{filename}: your file's expression{where} is nested too deeply "
                              f"to analyse: {_SPLIT_ADVICE}") from None


_SPLIT_ADVICE = "split it into several shorter statements"


def _refuse_deep_nesting(tree: ast.Module, *, filename: str) -> None:
    """A SubmissionError naming the line when a statement nests deeper than MAX_NESTING."""
    line = too_deep(tree)
    if line is not None:
        where = f" at line {line}" if line else ""
        raise SubmissionError(f"{filename}: your file's expression{where} is nested too deeply "
                              f"to analyse: {_SPLIT_ADVICE}")


def _busiest_line(code: str) -> int | None:
    """The line with the most operators and brackets: where a parse that recursed too deeply
    most likely was (tokenizing does not recurse)."""
    counts: dict[int, int] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type == tokenize.OP:
                counts[token.start[0]] = counts.get(token.start[0], 0) + 1
    except (tokenize.TokenError, SyntaxError, ValueError):
        pass
    return max(counts, key=counts.__getitem__) if counts else None
