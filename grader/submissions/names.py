"""The student's own names for the lecture's tensors, sizes, gradients and checker, read from
their code without running it.

Students rename things: ``X_batch`` for ``Xb``, ``embeddings`` for ``emb``, ``gamma`` for
``bngain``, ``EMB_DIM`` for ``n_embd``, ``compare(...)`` for ``cmp(...)``. The grader runs their
exercise statements with its own tensors, so it must know which of its tensors each of their
names stands for. The names come from three places, in this order of precedence:

1. Their forward pass, aligned with the lecture's statement by statement by the operations each
   performs (grader.submissions.forward_alignment): their data, parameters, forward tensors and
   sizes, and ``d`` + each of their tensor names as its gradient.
2. Their checker's calls: a function called as ``f('label', dvar, tensor)`` whatever its name;
   ``dvar`` is the gradient of the tensor it is checked against.
3. The label of such a call, when its tensor says nothing.

A name none of them resolves is left alone (and reported by the caller), never guessed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Iterator, Sequence

from .expression_match import GRADIENT_NAMES, SIZE_SPELLINGS, TENSOR_NAMES
from .forward_alignment import Program, align_forward
from .kept import KeptByNode

__all__ = ["Binding", "NameMap", "resolve_names"]


@dataclass(frozen=True)
class Binding:
    """One of the student's names, what it stands for, and where the grader learnt it."""

    student: str
    lecture: str
    kind: str          # "tensor", "size", "gradient" or "checker"
    how: str


@dataclass(frozen=True)
class NameMap:
    """The student's names, resolved."""

    tensors: dict[str, str]       # student name -> lecture tensor, parameter, Xb or Yb
    sizes: dict[str, str]         # student name -> size role ("n", "n_embd", ...)
    gradients: dict[str, str]     # student variable -> lecture gradient ("dbngain")
    checker: str | None           # the student's checker function, whatever its name
    bindings: tuple[Binding, ...]
    conflicts: tuple[str, ...]    # names read two ways: the first kept, the second said here


# -- the checker and the gradients -----------------------------------------------------------

def _checker_calls(program: Program) -> Iterator[tuple[int, str, ast.Call]]:
    """(statement, function name, call) for calls shaped f('label', dvar, tensor)."""
    for i, node in enumerate(program.nodes):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for call in _calls_shaped(node):
            yield i, call.func.id, call  # type: ignore[attr-defined]


# kept per statement node as forward_alignment.stored_names is (shared cells' statements)
_CALLS: KeptByNode[tuple[ast.Call, ...]] = KeptByNode(8192)


def _calls_shaped(node: ast.AST) -> tuple[ast.Call, ...]:
    return _CALLS.of(node, lambda: tuple(
        sub for sub in ast.walk(node)
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and
        len(sub.args) >= 3 and isinstance(sub.args[0], ast.Constant) and
        isinstance(sub.args[0].value, str) and isinstance(sub.args[1], ast.Name) and
        isinstance(sub.args[2], ast.Name)))


def _checker(program: Program, tensor_of: dict[str, str]) -> str | None:
    """The function most often called with a label, a gradient and one of the net's tensors."""
    defined = {node.name for node in program.nodes if isinstance(node, ast.FunctionDef)
               and len(node.args.args) >= 3}
    counts: dict[str, int] = {}
    for _, name, call in _checker_calls(program):
        tensor = call.args[2].id  # type: ignore[attr-defined]
        if (name in defined or name == "cmp") and (tensor in tensor_of or tensor in TENSOR_NAMES):
            counts[name] = counts.get(name, 0) + 1
    return max(counts, key=lambda k: (counts[k], k == "cmp")) if counts else None


def resolve_names(statements: Sequence[tuple[ast.stmt, str]]) -> NameMap:
    """The student's names in ``statements`` (top-level, in order, each with where it is)."""
    program = Program(statements)
    aligned = align_forward(program)
    how = aligned.how
    tensors = {s: l for l, s in aligned.tensors.items() if s != l}
    bindings = [Binding(s, l, "tensor", how.get(s, "")) for s, l in tensors.items()]
    sizes = {s: r for s, r in aligned.sizes.items() if SIZE_SPELLINGS.get(s) != r}
    bindings += [Binding(s, r, "size", how.get(s, "")) for s, r in sizes.items()]
    conflicts = list(aligned.conflicts)
    tensor_of = {s: l for l, s in aligned.tensors.items()}

    gradients: dict[str, str] = {}
    for student, lecture in tensors.items():
        for var in (f"d{student}", f"d_{student}"):
            gradient = f"d{lecture}"
            if var in program.assigned and var not in GRADIENT_NAMES and gradient in GRADIENT_NAMES:
                gradients[var] = gradient
                bindings.append(Binding(var, gradient, "gradient",
                                        f"its name: d + your {student}, which is the lecture's "
                                        f"{lecture} ({how.get(student, '')})"))
    checker = _checker(program, tensor_of)
    if checker is not None:
        if checker != "cmp":
            bindings.append(Binding(checker, "cmp", "checker",
                                    "called with a label, a gradient and one of the net's tensors"))
        for i, name, call in _checker_calls(program):
            if name != checker:
                continue
            dvar, tensor = call.args[1].id, call.args[2].id  # type: ignore[attr-defined]
            lecture = tensor_of.get(tensor) or (tensor if tensor in TENSOR_NAMES else None)
            gradient = f"d{lecture}" if lecture else None
            if gradient not in GRADIENT_NAMES or dvar in GRADIENT_NAMES or dvar == gradient:
                continue
            if dvar in gradients and gradients[dvar] != gradient:
                conflicts.append(f"{dvar} is checked against {tensor} at {program.where[i]}, but "
                                 f"it is the gradient of {gradients[dvar][1:]} by "
                                 f"{'your forward pass' if dvar in tensors else 'an earlier check'}"
                                 f": kept {gradients[dvar]}")
                continue
            if dvar not in gradients:
                gradients[dvar] = gradient  # type: ignore[assignment]
                label = call.args[0].value  # type: ignore[attr-defined]
                bindings.append(Binding(dvar, gradient, "gradient",  # type: ignore[arg-type]
                                        f"your {checker}({label!r}, {dvar}, {tensor}) at "
                                        f"{program.where[i]}"))
    return NameMap(tensors=tensors, sizes=sizes, gradients=gradients, checker=checker,
                   bindings=tuple(bindings), conflicts=tuple(conflicts))
