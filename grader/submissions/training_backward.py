"""Exercise 4 from lecture-style code: the backward lines of the training loop, as the text of a
``backward(...)`` function that asks for what they read and returns the seven gradients.

The loop itself never runs: only the statements that compute gradients, those they need from
the loop body (not data loading), and the imports and functions defined before the loop.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ..lecture.catalog import EXERCISE4_INPUT_NAMES, SCALAR_NAMES
from ..lecture.names import PARAMETER_NAMES
from .lecture_names import BUILTIN_NAMES, DATA_NAMES, MODULE_NAMES
from .statements import Statement, bound_and_read, open_no_grad, statement_source

__all__ = ["BackwardSource", "backward_from_training_loop"]

_EX4_ORDER = tuple(f"d{p}" for p in PARAMETER_NAMES)   # dC, dW1, db1, dW2, db2, dbngain, dbnbias
# each size role, as a backward() can work it out from what it is given: (parameter, expression)
_SIZES = {"n": ("n", "n"), "vocab_size": ("logits", "logits.shape[1]"),
          "n_hidden": ("h", "h.shape[1]"), "n_embd": ("C", "C.shape[1]"),
          "block_size": ("Xb", "Xb.shape[1]")}
# the lecture's spellings of the sizes, by role
_LECTURE_SIZES = {"batch_size": "n", "vocab_size": "vocab_size", "n_hidden": "n_hidden",
                  "n_embd": "n_embd", "block_size": "block_size"}

# a loop-body statement with (fresh binds, binds and changes, outside reads)
_Analysed = tuple[ast.stmt, frozenset[str], frozenset[str], frozenset[str]]


@dataclass(frozen=True)
class BackwardSource:
    """Exercise 4 from a training loop: a backward() function made of its backward lines."""

    where: str
    code: str | None = None              # module text defining backward(...)
    params: tuple[str, ...] = ()
    reason: str | None = None            # why it cannot be graded


@dataclass(frozen=True)
class _Names:
    """The student's names for what backward() is given: tensors and sizes."""

    aliases: dict[str, str]       # their name -> the lecture's (an input of backward())
    sizes: dict[str, str]         # their name -> size role

    def input_of(self, name: str) -> tuple[str, str] | None:
        """(backward()'s parameter, the line binding ``name`` from it), for a name it may read
        under another spelling; None for the lecture's own inputs and unknown names."""
        role = self.sizes.get(name) or _LECTURE_SIZES.get(name)
        if role is not None and name != "n":
            param, expression = _SIZES[role]
            return param, f"{name} = {expression}"
        target = self.aliases.get(name)
        if target in EXERCISE4_INPUT_NAMES:
            return target, f"{name} = {target}"
        return None


def backward_from_training_loop(statements: list[Statement], file_lines: dict[str, list[str]],
                                tracked: set[str], candidates: dict[str, list[str]], *,
                                aliases: dict[str, str], sizes: dict[str, str]
                                ) -> BackwardSource | None:
    """The last training loop that computes gradients (``tracked``: the variables that may hold
    them), as a backward(); None when no loop does. ``aliases`` and ``sizes``: the student's own
    names for the tensors and sizes backward() is given."""
    names = _Names(aliases, sizes)
    for st in reversed(statements):
        if st.kind != "training":
            continue
        for loop in _loops(st.node):
            body = _gradient_body(loop, tracked)
            if body is not None:
                return _build_backward(statements, st, body, file_lines[st.file], tracked,
                                       candidates, names)
    return None


def _loops(node: ast.AST) -> list[ast.For | ast.AsyncFor | ast.While]:
    return [n for n in ast.walk(node) if isinstance(n, (ast.For, ast.AsyncFor, ast.While))]


def _gradient_body(loop: ast.For | ast.AsyncFor | ast.While, tracked: set[str]
                   ) -> list[ast.stmt] | None:
    """The loop's statements when it computes gradients: two of the lecture's, or a list of
    seven gradients (``grads = [...]``, whatever the names)."""
    body = open_no_grad(loop.body)
    count = sum(1 for node in body if bound_and_read(node)[1] & tracked)
    return body if count >= 2 or any(_grads_list(node, tracked) is not None for node in body) \
        else None


def _grads_list(node: ast.stmt, tracked: set[str]) -> list[ast.expr] | None:
    """The elements of ``grads = [...]``, or of any list of seven names of which most are
    gradient variables (``d_grads = [dC, dW1, ...]``)."""
    if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and
            isinstance(node.targets[0], ast.Name) and isinstance(node.value, (ast.List, ast.Tuple))):
        return None
    elts = list(node.value.elts)
    if node.targets[0].id == "grads":
        return elts
    names = [e.id for e in elts if isinstance(e, ast.Name)]
    if len(elts) == len(PARAMETER_NAMES) and len(names) == len(elts) and \
            sum(n in tracked or n.startswith("d") for n in names) >= len(elts) - 1:
        return elts
    return None


def _build_backward(statements: list[Statement], training: Statement, body: list[ast.stmt],
                    lines: list[str], tracked: set[str], candidates: dict[str, list[str]],
                    names: _Names) -> BackwardSource:
    info: list[_Analysed] = [(node, *bound_and_read(node)) for node in body]
    chosen, prelude, unknown = _backward_lines(statements, training, info, tracked, names)
    if not chosen:
        return BackwardSource(f"{training.where()} (the training loop)", reason=(
            "its gradients' list names no gradient the loop computes: the backward lines "
            "(dlogits = ..., ..., dC = ...) must be in the loop"))
    first = chosen[0][0].lineno
    last = max(node.end_lineno or node.lineno for node, *_ in chosen)
    cell = f"{training.cell}, " if training.cell else ""
    where = f"{cell}lines {first}-{last} (inside the training loop)"
    if unknown:
        return BackwardSource(where, reason=(
            f"your backward lines use {', '.join(sorted(unknown))}, which the grader cannot provide "
            f"(it passes {', '.join(sorted(EXERCISE4_INPUT_NAMES))})"))
    returned = _returned_gradients(statements, training, chosen, candidates, tracked, names)
    if isinstance(returned, str):
        return BackwardSource(where, reason=returned)
    bound: set[str] = set()
    free: list[str] = []
    for _, _, assigns, reads in chosen:
        free += [n for n in sorted(reads) if n not in bound and n not in free]
        bound |= assigns
    inputs = {n: names.input_of(n) for n in free}
    prologue = [line for n in free if (found := inputs[n]) for line in [found[1]]]
    params = sorted({n for n in free if n in EXERCISE4_INPUT_NAMES and inputs[n] is None}
                    | {found[0] for found in inputs.values() if found})
    # checked as one module below, each statement ast.unparse'd if it does not parse
    body_text = [statement_source(lines, node, checked=False) for node, *_ in chosen]
    code = _backward_module(prelude, params, where, prologue, body_text, returned)
    try:
        ast.parse(code)
    except SyntaxError:      # their own text, indented into a function, does not parse
        code = _backward_module(prelude, params, where, prologue,
                                [ast.unparse(node) for node, *_ in chosen], returned)
    return BackwardSource(where, code=code, params=tuple(params))


def _backward_lines(statements: list[Statement], training: Statement, info: list[_Analysed],
                    tracked: set[str], names: _Names
                    ) -> tuple[list[_Analysed], dict[int, Statement], set[str]]:
    """The loop-body statements to run: those that assign ``tracked`` and the earlier ones they
    need; the definitions before the loop they need (the prelude); the names nothing provides."""
    selected = {k for k, (_, _, assigns, _) in enumerate(info) if assigns & tracked}
    inputs = set(EXERCISE4_INPUT_NAMES) | set(SCALAR_NAMES) | set(MODULE_NAMES)
    top_defs = {name: st for st in statements[:training.index]
                if isinstance(st.node, (ast.Import, ast.ImportFrom, ast.FunctionDef))
                for name in st.binds}
    prelude: dict[int, Statement] = {}
    unknown: set[str] = set()
    changed = True
    while changed:
        changed = False
        for k in sorted(selected):
            for name in info[k][3]:
                if name in inputs or name in BUILTIN_NAMES or names.input_of(name):
                    continue
                earlier = [j for j in range(k) if name in info[j][2]]
                if earlier and any(j in selected for j in earlier):
                    continue
                if earlier and not (info[earlier[-1]][2] & EXERCISE4_INPUT_NAMES) and \
                        not info[earlier[-1]][3] & DATA_NAMES:
                    selected.add(earlier[-1])
                    changed = True
                elif name in top_defs:
                    prelude[top_defs[name].index] = top_defs[name]
                else:
                    unknown.add(name)
    return [info[k] for k in sorted(selected)], prelude, unknown


def _backward_module(prelude: dict[int, Statement], params: list[str], where: str,
                     prologue: list[str], body: list[str], returned: list[str]) -> str:
    out = ["import torch", "import torch.nn.functional as F", "import torch.nn as nn", ""]
    out += [prelude[i].code for i in sorted(prelude)]
    out += ["", "", f"def backward({', '.join(params)}):",
            f"    # your exercise-4 backward lines, {where}"]
    out += [f"    {line}" for line in prologue]
    for text in body:
        out += [f"    {line}" if line.strip() else "" for line in text.splitlines()]
    out.append(f"    return [{', '.join(returned)}]")
    return "\n".join(out) + "\n"


def _returned_gradients(statements: list[Statement], training: Statement,
                        chosen: list[_Analysed], candidates: dict[str, list[str]],
                        tracked: set[str], names: _Names) -> list[str] | str:
    """Expressions for [dC, dW1, db1, dW2, db2, dbngain, dbnbias], or why they are unknown."""
    for node, *_ in reversed(chosen):
        elts = _grads_list(node, tracked)
        if elts is not None:
            if len(elts) != len(PARAMETER_NAMES):
                return (f"grads has {len(elts)} entries, expected {len(PARAMETER_NAMES)}: "
                        "[dC, dW1, db1, dW2, db2, dbngain, dbnbias]")
            order = _parameter_order(statements[:training.index], names.aliases)
            by_param = {p: ast.unparse(e) for p, e in zip(order, elts)}
            return [by_param[p] for p in PARAMETER_NAMES]
    assigned = {n for _, _, assigns, _ in chosen for n in assigns}
    out = []
    for name in _EX4_ORDER:
        var = next((v for v in candidates.get(name, [name]) if v in assigned), None)
        if var is None:
            return (f"no {name} among your backward lines, and no `grads = [dC, dW1, db1, dW2, "
                    "db2, dbngain, dbnbias]` to say which variables they are")
        out.append(var)
    return out


def _parameter_order(before_loop: list[Statement], aliases: dict[str, str]) -> list[str]:
    """The order of the student's list of the seven parameters (``parameters = [...]``, the last
    such list before the loop, whatever its name), which their gradients' list follows; the
    lecture's order when there is none."""
    order = list(PARAMETER_NAMES)
    for st in before_loop:
        node = st.node
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name) and \
                isinstance(node.value, (ast.List, ast.Tuple)):
            names = [aliases.get(e.id, e.id) if isinstance(e, ast.Name) else None
                     for e in node.value.elts]
            if sorted(n or "" for n in names) == sorted(PARAMETER_NAMES):
                order = [n for n in names if n]
    return order
