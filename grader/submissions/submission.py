"""What reading a submission gives: a ``Submission`` or a one-line ``SubmissionError``, and the
guard every reader puts before a file's text (exists, is a file, not too large, not empty,
UTF-8)."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MAX_SOURCE_BYTES", "Submission", "SubmissionError", "read_submission_text"]

MAX_SOURCE_BYTES = 2_000_000


class SubmissionError(Exception):
    """The submission cannot be graded at all; the message says why, in one line. ``source``:
    the code, where it was read and parsed before it was refused (the integrity scan reads it)."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


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
    # ``code`` as parsed here, handed to the integrity scan so a submission is parsed once;
    # None for a notebook, whose cells' trees were read instead (what needs it parses ``code``)
    tree: ast.Module | None = field(default=None, compare=False, repr=False)


def read_submission_text(path: Path, *, max_bytes: int, too_large: str, kind: str) -> str:
    """The file's text; a SubmissionError naming the file when it cannot be read as text.

    ``too_large`` ends the message for a file over ``max_bytes`` ("a submission may have");
    ``kind`` is what the file should be ("Python file", "notebook").
    """
    if not path.exists():
        raise SubmissionError(f"{path}: no such file")
    if path.is_dir():
        raise SubmissionError(f"{path}: is a folder, expected a .py or .ipynb file")
    if not path.is_file():              # a FIFO would block the read, a device never end it
        raise SubmissionError(f"{path}: not a regular file (a FIFO, socket or device): not read")
    size = path.stat().st_size
    if size > max_bytes:
        raise SubmissionError(f"{path}: {size:,} bytes, more than the {max_bytes:,} {too_large}")
    if size == 0:
        raise SubmissionError(f"{path}: the file is empty")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SubmissionError(
            f"{path}: not UTF-8 text (byte {e.start}): is this really a {kind}?") from None
    except OSError as e:
        raise SubmissionError(f"{path}: cannot read: {e.strerror}") from None


# The analysis (ast.unparse, copies, visitors) recurses once or more per level of a statement's
# tree; the exercise needs a few dozen levels, so a deeper statement is refused, never a crash.
# Whether ast.parse itself gives up first depends on how deep the caller's stack already is:
# this bound, checked on every tree parsed, decides the same way every time.
MAX_NESTING = 100


def too_deep(tree: ast.AST) -> int | None:
    """The line of the first statement nested deeper than MAX_NESTING (0 when the node has no
    line), or None when none is."""
    stack: list[tuple[ast.AST, int, int | None]] = [(tree, 0, None)]
    while stack:
        node, depth, line = stack.pop()
        line = getattr(node, "lineno", line)     # operators have none: their expression's
        if depth > MAX_NESTING:
            return line or 0
        stack.extend((child, depth + 1, line) for child in ast.iter_child_nodes(node))
    return None

