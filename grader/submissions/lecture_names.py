"""The names lecture-style code works with: the lecture's tensors and gradients, what the grader
provides when it runs the exercise code, what only data loading and plots use, and which lecture
tensor a student's own spelling means."""

from __future__ import annotations

import builtins
import re

from ..lecture.catalog import EXERCISE1, SCALAR_NAMES
from ..lecture.model import FORWARD_NAMES, PARAMETER_NAMES

__all__ = [
    "BUILTIN_NAMES",
    "DATA_NAMES",
    "GRADIENT_VARIABLES",
    "LECTURE_TENSORS",
    "MODULE_NAMES",
    "PROVIDED_NAMES",
    "lecture_name",
]

LECTURE_TENSORS: tuple[str, ...] = (*FORWARD_NAMES, *PARAMETER_NAMES)
MODULE_NAMES = ("torch", "F", "nn")
# in scope when the grader runs a student's exercise statements
PROVIDED_NAMES: frozenset[str] = frozenset(
    (*LECTURE_TENSORS, "Xb", "Yb", *SCALAR_NAMES, *MODULE_NAMES, "cmp"))
BUILTIN_NAMES = frozenset(dir(builtins))
# the variables a lecture-style notebook assigns its gradients to: exercise 1's
GRADIENT_VARIABLES = frozenset(g.name for g in EXERCISE1)
# a statement that reads one of these loads data, touches files or plots: never run as a helper
DATA_NAMES = frozenset({"open", "input", "words", "Xtr", "Ytr", "Xdev", "Ydev", "Xte", "Yte",
                        "build_dataset", "stoi", "itos", "plt", "matplotlib", "os", "sys",
                        "subprocess", "shutil", "requests", "urllib", "exit", "quit"})

_SYNONYMS = {"bnmean": "bnmeani", "countsum": "counts_sum", "countsuminv": "counts_sum_inv",
             "logitmax": "logit_maxes", "logitsmax": "logit_maxes", "logitmaxes": "logit_maxes",
             "bndiffsq": "bndiff2", "bnvarinverse": "bnvar_inv"}
_NORMALIZED = {re.sub(r"[^a-z0-9]", "", n.lower()): n for n in LECTURE_TENSORS if n != "loss"}


def lecture_name(text: str) -> str | None:
    """The lecture tensor a label or variable name means: 'bn_mean' -> 'bnmeani'."""
    key = re.sub(r"[^a-z0-9]", "", text.lower())
    return _NORMALIZED.get(key) or _SYNONYMS.get(key)
