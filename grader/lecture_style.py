"""Lecture-style submissions: ``dlogprobs = ...`` assignments in sequence, as in the notebook."""

from __future__ import annotations

import ast

from .catalog import GRADIENTS

__all__ = ["looks_like_lecture_style"]

_GRADIENT_NAMES = frozenset(g.name for g in GRADIENTS if g.exercise == "ex1") | {"dlogits", "dhprebn"}


def _assigned_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
    return names


def looks_like_lecture_style(tree: ast.Module) -> bool:
    """At least two of the lecture's gradient variables are assigned."""
    return len(_assigned_names(tree) & _GRADIENT_NAMES) >= 2
