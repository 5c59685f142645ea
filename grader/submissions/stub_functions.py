"""The exercise functions a file defines, read without running it, and the ones it makes at run
time, which the grader cannot see before running it.

``def dlogprobs(logprobs, Yb, n):`` and a top-level ``dlogprobs = lambda logprobs, Yb, n: ...``
are read: their parameters say what to pass. Functions made at run time (a loop assigning
through ``globals()``, ``exec`` of built strings, ``dlogprobs = make("dlogprobs")``, an import
from another file) are named, with the line that makes them, so that the student is told what to
write instead of "found none".
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Callable

from ..lecture.catalog import GRADIENTS, STUB_NAMES
from .kept import KeptByNode

__all__ = ["RunTimeFunctions", "exercise_functions", "functions_made_at_run_time"]

_DYNAMIC_CALLS = frozenset({"globals", "locals", "vars", "exec", "eval", "setattr", "__import__"})
_SHOWN = 60


@dataclass(frozen=True)
class RunTimeFunctions:
    """Exercise functions made at run time: which (where the file names them), and where."""

    names: tuple[str, ...]
    line: int
    text: str

    def describe(self) -> str:
        """``dlogprobs, dprobs are made at run time (line 7: `globals()[name] = make(name)`)``."""
        where = f"(line {self.line}: `{self.text}`)"
        if not self.names:
            return f"its functions are made at run time {where}"
        shown = ", ".join(self.names[:4]) + (", ..." if len(self.names) > 4 else "")
        verb = "is" if len(self.names) == 1 else "are"
        return f"{shown} {verb} made at run time {where}"

    def advice(self) -> str:
        """What to write instead, with the first named function's parameters."""
        name = next((n for n in self.names if n in _SIGNATURES), "dlogprobs")
        return (f"functions made at run time are not graded; write `def {name}("
                f"{', '.join(_SIGNATURES[name])}):` (as in the exercise file) for each exercise "
                "function")


_SIGNATURES = {g.name: g.signature for g in GRADIENTS}


def exercise_functions(tree: ast.Module) -> dict[str, tuple[str, ...]]:
    """Exercise name -> its parameters, for each ``def`` of an exercise name, and each top-level
    assignment to one of a lambda or of a function defined above (the last one wins)."""
    functions: dict[str, tuple[str, ...]] = {}       # every top-level function, by name
    found: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions[node.name] = _parameters(node.args)
            if node.name in STUB_NAMES:
                found[node.name] = functions[node.name]
        for name, value in _assigned(node):
            if isinstance(value, ast.Lambda):
                functions[name] = _parameters(value.args)
            elif isinstance(value, ast.Name) and value.id in functions:
                functions[name] = functions[value.id]      # dlogits_fused = my_softmax_grad
            else:
                continue
            if name in STUB_NAMES:
                found[name] = functions[name]
    return found


def functions_made_at_run_time(code: str, defined: dict[str, tuple[str, ...]], *,
                               parse: Callable[[], ast.Module],
                               cell_trees: tuple[ast.Module, ...] | None = None
                               ) -> RunTimeFunctions | None:
    """The exercise functions ``code`` makes at run time and does not define as read above, and
    the first top-level statement that makes functions that way; None when none does.
    ``parse()``: ``code``'s tree, asked for only where the cells cannot tell.
    ``cell_trees``: the notebook cells ``code`` joins (their statements are its statements): the
    usual None is found from them, each statement's answer kept with it."""
    if cell_trees is not None:
        body = [node for cell in cell_trees for node in cell.body]
        imported = frozenset((a.asname or a.name).split(".")[0] for node in body
                             if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names)
        if all(_made_by_kept(node, imported) is None for node in body):
            return None
    tree = parse()
    names: list[str] = []
    line = 0
    imported = {(a.asname or a.name).split(".")[0] for node in tree.body
                if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    for node in tree.body:
        made = _made_by(node, imported)
        if made is None:
            continue
        new = [n for n in made if n not in defined and n not in names]
        if new or not made:
            names += new
            line = line or node.lineno
    if not line:
        return None
    if not names:     # e.g. globals().update(table), the names being the table's keys
        names = [n for n in _string_names(tree) if n not in defined]
    lines = code.splitlines()
    text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return RunTimeFunctions(tuple(names), line,
                            text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "...")


_MADE: KeptByNode[dict[frozenset[str], list[str] | None]] = KeptByNode(8192)


def _made_by_kept(node: ast.stmt, imported: frozenset[str]) -> list[str] | None:
    """_made_by, kept per shared cell statement (grader.submissions.kept)."""
    made = _MADE.of(node, dict)
    if imported not in made:
        made[imported] = _made_by(node, set(imported))
    return made[imported]


def _made_by(node: ast.stmt, imported: set[str]) -> list[str] | None:
    """The exercise names a top-level statement makes at run time (possibly none by name: an
    ``exec`` of a built string), or None when it makes nothing that way."""
    assigned = [name for name, value in _assigned(node)
                if name in STUB_NAMES and _makes_function(name, value, node, imported)]
    if assigned:
        return assigned
    if isinstance(node, ast.ImportFrom):
        made = [a.asname or a.name for a in node.names if (a.asname or a.name) in STUB_NAMES]
        return made or None
    if any(isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name)
           and sub.func.id in _DYNAMIC_CALLS for sub in ast.walk(node)):
        return _string_names(node)
    return None


def _makes_function(name: str, value: ast.expr | None, node: ast.stmt, imported: set[str]
                    ) -> bool:
    """Whether assigning ``value`` to the exercise name ``name`` looks like making a function
    (``make("dlogprobs")``, ``table["dlogprobs"]``, ``partial(...)``, ``module.dlogprobs``, an
    imported name), not computing a tensor (``dlogprobs = torch.zeros_like(logprobs)``, a
    lecture-style line)."""
    if value is None:            # a, b = ...: the whole value
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        return isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
    if isinstance(value, ast.Subscript):
        return bool(_string_names(value.slice))
    if isinstance(value, ast.Attribute):
        return value.attr == name
    if isinstance(value, ast.Name):
        return value.id in imported
    if isinstance(value, ast.Call):
        func = value.func
        called = func.id if isinstance(func, ast.Name) else \
            func.attr if isinstance(func, ast.Attribute) else ""
        return called == "partial" or isinstance(func, ast.Name) and (
            bool(_string_names(ast.Tuple(elts=list(value.args), ctx=ast.Load())))
            or any(isinstance(a, ast.Lambda) for a in value.args))
    return False


def _string_names(node: ast.AST) -> list[str]:
    """Exercise names written as strings in ``node``, in order."""
    out: list[str] = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and \
                sub.value in STUB_NAMES and sub.value not in out:
            out.append(sub.value)
    return out


def _assigned(node: ast.stmt) -> list[tuple[str, ast.expr | None]]:
    """(name, value) for each plain name a top-level assignment binds; the value is None where
    it is not the name's own (``a, b = ...``)."""
    if isinstance(node, ast.Assign):
        out: list[tuple[str, ast.expr | None]] = []
        for target in node.targets:
            if isinstance(target, ast.Name):
                out.append((target.id, node.value))
            elif isinstance(target, (ast.Tuple, ast.List)):
                out += [(e.id, None) for e in target.elts if isinstance(e, ast.Name)]
        return out
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
        return [(node.target.id, node.value)]
    return []


def _parameters(a: ast.arguments) -> tuple[str, ...]:
    params = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    if a.vararg:
        params.append("*" + a.vararg.arg)
    if a.kwarg:
        params.append("**" + a.kwarg.arg)
    return tuple(params)
