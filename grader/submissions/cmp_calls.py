"""The student's checker calls, ``cmp(label, dvar, var)`` (whatever the checker's name), read
without running them, and the student's names, with what their forward pass says
(grader.submissions.names) first: ``cmp('logprobs', dlp, logprobs)`` means that ``dlp`` is their
``dlogprobs``, and ``cmp('h', dh, hidden)`` that ``hidden`` is the lecture's ``h``. A call is
read by the tensor it checks against first, and by its label only when the tensor says nothing:
labels are free text, and sometimes wrong."""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ..lecture.catalog import EXERCISE1
from .lecture_names import GRADIENT_VARIABLES, LECTURE_TENSORS, PROVIDED_NAMES, lecture_name
from .names import NameMap
from .statements import Statement, calls_to

__all__ = ["CmpCall", "StudentNames", "read_cmp_calls", "student_names"]


@dataclass(frozen=True)
class CmpCall:
    """A ``cmp(label, dvar, var)`` call, read without running it."""

    statement: int
    label: str | None        # the first argument, when a string
    variable: str | None     # the lecture tensor it is about
    dvar: str | None         # the student's gradient variable, when a plain name
    tensor_name: str | None  # the third argument, when a plain name


@dataclass(frozen=True)
class StudentNames:
    """The student's names for the lecture's tensors and gradients, learnt from cmp() calls."""

    aliases: dict[str, str]                  # their forward tensor names -> lecture names
    candidates: dict[str, list[str]]         # exercise-1 gradient -> its variables, lecture's first
    renamed: dict[str, tuple[str, str]]      # their gradient variable -> (gradient, where learnt)
    notes: tuple[str, ...]                   # calls that contradict each other


def read_cmp_calls(statements: list[Statement], *, checker: str = "cmp",
                   aliases: dict[str, str] | None = None) -> list[CmpCall]:
    """The calls of the student's checker; ``aliases``: their names for the lecture's tensors."""
    out = []
    for st in statements:
        if st.kind != "cmp":
            continue
        for call in calls_to(st.node, checker):
            args = list(call.args)
            label = args[0].value if args and isinstance(args[0], ast.Constant) \
                and isinstance(args[0].value, str) else None
            dvar = args[1].id if len(args) > 1 and isinstance(args[1], ast.Name) else None
            tname = args[2].id if len(args) > 2 and isinstance(args[2], ast.Name) else None
            variable = _lecture_tensor(label, tname, dvar, aliases or {})
            out.append(CmpCall(st.index, label, variable, dvar, tname))
    return out


def _lecture_tensor(label: str | None, tname: str | None, dvar: str | None,
                    aliases: dict[str, str]) -> str | None:
    """The lecture tensor a call is about: the tensor it checks against, else its label, else
    its gradient's name."""
    if tname in aliases:
        return aliases[tname]
    if tname in LECTURE_TENSORS:
        return tname
    for candidate in (label, tname, dvar[1:] if dvar and dvar.startswith("d") else None):
        if candidate and candidate in LECTURE_TENSORS:
            return candidate
        if candidate and lecture_name(candidate):
            return lecture_name(candidate)
    return None


def student_names(statements: list[Statement], cmp_calls: list[CmpCall], names: NameMap
                  ) -> StudentNames:
    """What the forward pass and the checker calls resolved (``names``) first; then the first
    call naming a tensor or a gradient decides; a gradient variable compared with two tensors is
    graded as the first, with a note."""
    aliases: dict[str, str] = dict(names.tensors)
    candidates: dict[str, list[str]] = {g.name: [g.name] for g in EXERCISE1}
    renamed: dict[str, tuple[str, str]] = {}
    notes: list[str] = list(names.conflicts)
    how = {b.student: b.how for b in names.bindings if b.kind == "gradient"}
    for var, gradient in names.gradients.items():
        if gradient in candidates:
            candidates[gradient].append(var)
            renamed[var] = (gradient, f"from {how[var]}")
    for call in cmp_calls:
        if not call.variable:
            continue
        gradient = f"d{call.variable}"
        if call.tensor_name and call.tensor_name not in PROVIDED_NAMES:
            aliases.setdefault(call.tensor_name, call.variable)
        if not call.dvar or call.dvar == gradient or call.dvar in GRADIENT_VARIABLES \
                or call.dvar in names.gradients:
            continue
        previous = renamed.get(call.dvar)
        if previous and previous[0] != gradient:
            notes.append(f"{call.dvar} is compared with both {previous[0][1:]} and "
                         f"{call.variable} by your cmp() calls: graded as {previous[0]}")
            continue
        if gradient in candidates and call.dvar not in candidates[gradient]:
            candidates[gradient].append(call.dvar)
            label = repr(call.label) if call.label is not None else "..."
            where = statements[call.statement].where()
            renamed[call.dvar] = (gradient, f"from your cmp({label}, {call.dvar}, ...) at {where}")
    return StudentNames(aliases, candidates, renamed, tuple(notes))
