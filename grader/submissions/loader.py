"""Submission file -> Submission. Reads and parses; never executes anything."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from ..lecture.catalog import STUB_NAMES

__all__ = ["Submission", "SubmissionError", "load_submission", "parse_source"]

MAX_SOURCE_BYTES = 2_000_000


class SubmissionError(Exception):
    """The submission cannot be graded at all; the message says why, in one line."""


@dataclass(frozen=True)
class Submission:
    """What the sandbox needs: the code, how to run it, and what it defines."""

    name: str                     # shown in reports: the file name
    path: str
    code: str                     # Python source the sandbox runs
    format: str                   # "stubs" | "lecture"
    source_kind: str              # "py" | "ipynb"
    functions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # stub -> parameters
    notes: tuple[str, ...] = ()
    # ``code`` as parsed here, handed to the integrity scan so a submission is parsed once
    tree: ast.Module | None = field(default=None, compare=False, repr=False)


def _function_signatures(tree: ast.Module) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in STUB_NAMES:
            a = node.args
            params = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            if a.vararg:
                params.append("*" + a.vararg.arg)
            if a.kwarg:
                params.append("**" + a.kwarg.arg)
            found[node.name] = tuple(params)  # the last definition wins, as when run
    return found


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


def _read_text(path: Path) -> str:
    if not path.exists():
        raise SubmissionError(f"{path}: no such file")
    if path.is_dir():
        raise SubmissionError(f"{path}: is a folder, expected a .py or .ipynb file")
    size = path.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise SubmissionError(
            f"{path}: {size:,} bytes, more than the {MAX_SOURCE_BYTES:,} a submission may have")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SubmissionError(
            f"{path}: not UTF-8 text (byte {e.start}): is this really a Python file?") from None
    except OSError as e:
        raise SubmissionError(f"{path}: cannot read: {e.strerror}") from None


def submission_from_code(code: str, *, name: str, path: str = "", source_kind: str = "py",
                         notes: tuple[str, ...] = ()) -> Submission:
    """Classify Python source as stub format or lecture style."""
    tree = parse_source(code, filename=name)
    functions = _function_signatures(tree)
    if functions:
        return Submission(name=name, path=path, code=code, format="stubs",
                          source_kind=source_kind, functions=functions, notes=notes, tree=tree)
    from .lecture_source import looks_like_lecture_style

    if looks_like_lecture_style(tree):
        return Submission(name=name, path=path, code=code, format="lecture",
                          source_kind=source_kind, notes=notes, tree=tree)
    raise SubmissionError(
        f"{name}: found none of the exercise functions ({', '.join(STUB_NAMES[:3])}, ...) "
        "and no lecture-style assignments (dlogprobs = ...): is this the right file?")


def load_submission(path: str | Path) -> Submission:
    """Read a .py (or .ipynb) submission and find what it defines, without running it."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".ipynb":
        from .notebook import load_notebook_source

        code, notes = load_notebook_source(p)
        return submission_from_code(code, name=p.name, path=str(p), source_kind="ipynb",
                                    notes=notes)
    if suffix not in (".py", ""):
        if not p.exists():
            raise SubmissionError(f"{p}: no such file")
        raise SubmissionError(f"{p}: expected a .py or .ipynb file, got '{suffix}'")
    code = _read_text(p)
    if not code.strip():
        raise SubmissionError(f"{p}: the file is empty")
    return submission_from_code(code, name=p.name, path=str(p))
