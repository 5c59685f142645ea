"""The report's notes on a lecture-style program: which cells and lines were run (the exercise
code) and which were not (data loading, the forward pass, plots, training)."""

from __future__ import annotations

import re

from .lecture_source import LectureProgram
from .statements import Statement

__all__ = ["describe_selection"]


def describe_selection(program: LectureProgram) -> list[str]:
    """Which cells and lines were run, and which were not."""
    run = set(program.run)
    by_cell: dict[str | None, list[Statement]] = {}
    for st in program.statements:
        by_cell.setdefault(st.cell, []).append(st)
    ran, not_run = [], []
    for cell, sts in by_cell.items():
        spans = [(st.line, st.end_line) for st in sts if st.index in run]
        if spans:
            text = _ranges(spans)
            ran.append(f"{cell} ({text})" if cell else text)
        elif cell:
            not_run.append(cell)
    notes = []
    if ran:
        notes.append("ran only the exercise code, with the grader's forward tensors and "
                     f"parameters: {', '.join(ran)}")
    skipped = len(program.statements) - len(run)
    if not_run:
        notes.append(f"not run: {_cells_text(not_run)} (data loading, the forward pass, plots, "
                     "training and the rest)")
    elif skipped and None in by_cell:
        notes.append(f"not run: the other {skipped} statements (data loading, the forward pass, "
                     "plots, training and the rest)")
    return notes


def _ranges(spans: list[tuple[int, int]]) -> str:
    """'line 4' or 'lines 2-9, 14': spans at most one line apart are merged."""
    merged: list[list[int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1] + 2:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in merged]
    return ("line " if len(parts) == 1 and "-" not in parts[0] else "lines ") + ", ".join(parts)


def _cells_text(labels: list[str]) -> str:
    """'cells 2-5, 9' for notebook cells; the labels as they are otherwise (``In [3]``)."""
    numbers = [int(m.group(1)) for lab in labels if (m := re.fullmatch(r"cell (\d+)", lab))]
    if len(numbers) != len(labels):
        return ", ".join(labels)
    spans: list[list[int]] = []
    for k in numbers:
        if spans and k == spans[-1][1] + 1:
            spans[-1][1] = k
        else:
            spans.append([k, k])
    word = "cells" if len(numbers) > 1 else "cell"
    return f"{word} " + ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)
