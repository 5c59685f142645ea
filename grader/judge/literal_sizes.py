"""Literal sizes in lecture-style exercise code: ``F.one_hot(Yb, 27)``, ``view(32, 3, 10)``.

Such code is right at the lecture's sizes and wrong at any other, which the hidden configs show;
this names the literal, where it is, and which size it stands for, in the student's terms.
"""

from __future__ import annotations

import ast
from typing import Iterable

from ..lecture.configs import Dimension, changed_dimensions
from ..lecture.model import Config
from ..submissions.statements import Statement

__all__ = ["literal_size_message"]

# what to write instead of each size, from the tensors at hand
_FROM_SHAPES = {"n": "n (or logits.shape[0])", "vocab_size": "logits.shape[1]",
                "n_hidden": "h.shape[1]", "n_embd": "C.shape[1]", "block_size": "Xb.shape[1]"}


def _literals(statements: Iterable[Statement]) -> list[tuple[int, Statement]]:
    found = []
    for st in statements:
        for node in ast.walk(st.node):
            if isinstance(node, ast.Constant) and type(node.value) is int and node.value > 2:
                found.append((node.value, st))
    return found


def literal_size_message(statements: Iterable[Statement], *, lecture: Config, other: Config
                         ) -> str | None:
    """'correct in the lecture config, wrong in hidden-1 (...): the literal 27 at cell 10, line 15 is
    the lecture's vocab_size (24 in hidden-1): use logits.shape[1]', or None when no literal of
    ``statements`` is a size that ``other`` changes."""
    changed = changed_dimensions(lecture, other)
    by_value: dict[int, Dimension] = {d.lecture: d for d in changed}
    if {"n_embd", "block_size"} <= {d.name for d in changed}:   # embcat's width
        e = next(d for d in changed if d.name == "n_embd")
        b = next(d for d in changed if d.name == "block_size")
        by_value.setdefault(e.lecture * b.lecture,
                            Dimension("n_embd * block_size", e.lecture * b.lecture,
                                      e.hidden * b.hidden))
    hits = [(value, st) for value, st in _literals(statements) if value in by_value]
    if not hits:
        return None
    parts = []
    for value, st in hits[:3]:
        dim = by_value[value]
        instead = _FROM_SHAPES.get(dim.name, "the tensors' shapes")
        parts.append(f"the literal {value} at {st.where()} is the lecture's {dim.name} "
                     f"({dim.hidden} in {other.name}): use {instead}")
    sizes = ", ".join(d.phrase("hidden") for d in changed)
    return f"correct in the {lecture.name} config, wrong in {other.name} ({sizes}): " + \
        "; ".join(parts)
