"""Lecture-style code, run in the student's child: the exercise statements one at a time.

The grader (grader.judge.lecture_style) sends the statements it picked out of the notebook, with
its forward tensors, parameters, ``n``, ``Xb`` and ``Yb``; this module runs them with ``torch``,
``F`` and a ``cmp`` that records instead of printing, copies each gradient right after the
statements that compute it, and notes when a later statement changes it in place through an
alias (``dhprebn = dbndiff; dhprebn += ...``).

Those checks (every recorded gradient and every grader tensor compared with its copy) were
most of a run's cost, some 40 comparisons after each of some 60 steps. A step whose statement can
change no tensor is not followed by them (_step_kind says which can): what
they would find there is what the previous check found.
"""

from __future__ import annotations

import ast
import builtins
import linecache
import marshal
from types import CodeType
from typing import Any, Callable, Iterable

import torch

from ...lecture.catalog import SCALAR_NAMES
from ..wire import unsendable_reason
from .errors import exception_message, limit_hit, student_traceback

__all__ = ["LectureSession", "compile_step", "compiled_steps", "run_lecture_code"]

_MAX_ELEMENTS = 1 << 22           # a gradient larger than this is not sent back
_MAX_CAPTURES = 24
_MAX_COMPILED = 4096


class LectureSession:
    """What one child keeps between the lecture runs of its session (the lecture config and
    each hidden one run the same steps): each step's code compiled once, with what it can
    change; and whether a step that may run code of the student's choosing (or alter torch,
    builtins, anything) has run, or the session's file did at load, after which every step is
    checked again."""

    def __init__(self) -> None:
        self.compiled: dict[tuple[str, int, str], tuple[Any, int]] = {}
        self.opaque_ran = False
        self.load_read = False          # whether the session's loaded file was read (_inert_load)
        self.took_compiled = False

    def take_compiled(self, blob: bytes) -> None:
        """The steps as the grader compiled them (compiled_steps): once a session, before any
        step runs. A step it could not compile is compiled here, and raises here."""
        if not self.took_compiled:
            self.took_compiled = True
            self.compiled.update(marshal.loads(blob))

    def compiled_step(self, step: dict[str, Any]) -> tuple[Any, int]:
        """The step's code object and its kind (_step_kind); what compile() raises, as
        before."""
        key = (str(step["file"]), int(step["line"]), str(step["code"]))
        found = self.compiled.get(key)
        if found is None:
            found = compile_step(*key)
            if len(self.compiled) >= _MAX_COMPILED:
                self.compiled.clear()
            self.compiled[key] = found
        return found


def compile_step(file: str, line: int, code: str) -> tuple[CodeType, int]:
    """A step's code object, its lines numbered as in its cell, and its kind (_step_kind);
    what compile() raises for it, raised. Asserts kept (optimize 0), as the child runs them,
    wherever this compiles."""
    text = "\n" * (line - 1) + code
    try:
        tree = ast.parse(text, file, "exec")
        return compile(tree, file, "exec", optimize=0), _step_kind(tree)
    except Exception:  # noqa: BLE001  compiled from the text, as before: its error is raised
        return compile(text, file, "exec", optimize=0), OPAQUE


def _with_file_name(code: CodeType, file: str) -> CodeType:
    """``code`` as if compiled under the file name ``file``, the code nested in it too."""
    consts = tuple(_with_file_name(c, file) if isinstance(c, CodeType) else c
                   for c in code.co_consts)
    return code.replace(co_filename=file, co_consts=consts)


def compiled_steps(steps: Iterable[tuple[str, int, str]],
                   compiled: Callable[[int, str], tuple[CodeType, int] | None]) -> bytes:
    """For the grader: the steps (file, line, code) compiled, as LectureSession.take_compiled
    reads them. ``compiled(line, code)``: the code under any file name and its kind, None where
    it does not compile (the child then compiles it, and raises)."""
    out: dict[tuple[str, int, str], tuple[CodeType, int]] = {}
    for file, line, code in steps:
        found = compiled(line, code)
        if found is not None:
            out[(file, line, code)] = (_with_file_name(found[0], file), found[1])
    return marshal.dumps(out)


# -- which steps can change a tensor -------------------------------------------------------------
# PURE: the statement can change no tensor's values, given that torch, builtins and the types of
# the values it meets are as the worker had them (no earlier statement could alter them: see
# LectureSession.opaque_ran). It only reads names, calls functions and methods from the list
# below and builtins from the one after it (none writes into its arguments, none has an
# ``out=`` or ``inplace`` that writes), with Python's operators (torch's own for tensors: they
# make new tensors), and binds plain names. WRITES: it may write into a tensor it reaches
# (``x += ...``, ``x[i] = ...``, ``del x[i]``) but runs nothing else: checked after. OPAQUE: anything else (an
# attribute stored, a name or keyword not listed, a definition, an import, ...): checked after,
# and every step after it in this process too.
PURE, WRITES, OPAQUE = 0, 1, 2
_PURE_ATTRIBUTES = frozenset("""
    T mT shape dtype device ndim indices values nn functional
    sum mean var std max min amax amin argmax argmin exp log log2 log10 sqrt rsqrt pow square
    abs neg reciprocal tanh sigmoid softmax log_softmax sign clamp clip maximum minimum
    mul add sub div matmul mm bmm outer dot cumsum prod
    clone detach view view_as reshape reshape_as expand expand_as repeat unsqueeze squeeze
    flatten t transpose permute contiguous float double long int bool type_as to
    zeros_like ones_like full_like empty_like rand_like randn_like zeros ones full eye arange
    linspace tensor new_zeros new_ones new_full one_hot cross_entropy nll_loss
    cat stack where diag gather index_select masked_fill masked_select split chunk
    item numel size dim tolist allclose isclose equal all any isnan isinf isfinite
    nonzero sort argsort topk unique
""".split())
_PURE_BUILTINS = frozenset("range len float int abs min max sum round print list tuple zip "
                           "enumerate isinstance bool any all reversed".split())
_BUILTINS = frozenset(dir(builtins))
_PURE_NODES = (ast.Module, ast.Expr, ast.Assign, ast.For, ast.While, ast.If, ast.Pass,
               ast.Break, ast.Continue, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare,
               ast.Call, ast.Constant, ast.Slice, ast.Tuple, ast.List, ast.Dict, ast.Set,
               ast.IfExp, ast.Starred, ast.ListComp, ast.GeneratorExp, ast.comprehension,
               ast.JoinedStr, ast.FormattedValue, ast.expr_context, ast.operator, ast.unaryop,
               ast.boolop, ast.cmpop)


def _step_kind(tree: ast.AST) -> int:
    """PURE, WRITES or OPAQUE (above), the most of its nodes'."""
    kind = PURE
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id.startswith("_") or (node.id in _BUILTINS and
                                           node.id not in _PURE_BUILTINS):
                return OPAQUE
        elif isinstance(node, ast.Attribute):
            if not isinstance(node.ctx, ast.Load) or node.attr not in _PURE_ATTRIBUTES:
                return OPAQUE
        elif isinstance(node, ast.Subscript):
            if not isinstance(node.ctx, ast.Load):
                kind = WRITES
        elif isinstance(node, ast.keyword):
            if node.arg is None or node.arg in ("out", "inplace"):
                return OPAQUE
        elif isinstance(node, (ast.AugAssign, ast.Delete)):
            kind = WRITES
        elif not isinstance(node, _PURE_NODES):
            return OPAQUE
    return kind


def _inert_load(lines: list[str]) -> bool:
    """Whether the file the session loaded ran nothing of the student's: empty, or imports of
    torch and definitions whose header evaluates nothing (exercise 4's backward())."""
    try:
        tree = ast.parse("".join(lines))
    except Exception:  # noqa: BLE001
        return False
    for node in tree.body:
        if isinstance(node, ast.Import):
            if any(a.name.split(".")[0] != "torch" for a in node.names):
                return False
        elif isinstance(node, ast.FunctionDef):
            a = node.args
            if node.decorator_list or node.returns or a.defaults or a.kw_defaults or any(
                    x.annotation for x in (*a.posonlyargs, *a.args, *a.kwonlyargs,
                                           *filter(None, (a.vararg, a.kwarg)))):
                return False
        else:
            return False
    return True


def _unchanged(obj: torch.Tensor, snapshot: torch.Tensor) -> bool:
    try:
        return _equal(obj, snapshot)
    except Exception:  # noqa: BLE001  made into something that cannot be compared: changed
        return False


def _equal(obj: torch.Tensor, snapshot: torch.Tensor) -> bool:
    if obj.shape != snapshot.shape or obj.dtype != snapshot.dtype:
        return False
    if torch.equal(obj, snapshot):
        return True
    if obj.is_floating_point():
        return bool(((obj == snapshot) | (obj.isnan() & snapshot.isnan())).all())
    return False


def _snapshot(value: object) -> tuple[torch.Tensor | None, dict[str, Any] | None]:
    if not isinstance(value, torch.Tensor):
        return None, {"problem": "not_tensor",
                      "detail": f"is a {type(value).__name__}, expected a torch.Tensor"}
    try:
        why = unsendable_reason(value)          # before its size or a copy: those may fail on it
        if why is not None:
            return None, {"problem": "dtype", "detail": f"is {why}"}
        if type(value) is not torch.Tensor:     # its own methods run nothing of the grader's
            value = torch.Tensor.as_subclass(value, torch.Tensor)
        if value.numel() > _MAX_ELEMENTS:
            return None, {"problem": "too_large", "shape": list(value.shape),
                          "detail": f"has shape {tuple(value.shape)}, far larger than a gradient"}
        return value.detach().to("cpu").clone().contiguous(), None
    except Exception as exc:  # noqa: BLE001  a tensor torch itself cannot read
        return None, {"problem": "unreadable",
                      "detail": f"cannot be read: {exception_message(exc)}"}


def run_lecture_code(meta: dict[str, Any], tensors: dict[str, torch.Tensor], filename: str,
                     limits: dict[str, Any], session: LectureSession
                     ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Run the exercise statements one at a time; read each gradient after its statements.
    ``limits``: the child's (a step that runs into one says which); ``session``: what the
    child keeps from one run to the next."""
    try:
        return _run_steps(meta, tensors, filename, limits, session)
    except BaseException as exc:  # noqa: BLE001  student code may have broken torch or builtins
        return {"status": "error",
                "message": f"the exercise code could not be run: {exception_message(exc)}"}, {}


def _run_steps(meta: dict[str, Any], tensors: dict[str, torch.Tensor], filename: str,
               limits: dict[str, Any], session: LectureSession
               ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    import torch.nn as nn
    import torch.nn.functional as F

    if "compiled" in tensors:
        session.take_compiled(tensors["compiled"].numpy().tobytes())
    files = {str(k): str(v) for k, v in dict(meta.get("files", {})).items()}
    for name, text in files.items():
        linecache.cache[name] = (len(text), None, text.splitlines(True), name)
    steps = list(meta["steps"])
    file_names = frozenset(str(s["file"]) for s in steps)
    provided = {str(k): tensors[k] for k in meta["inputs"] if k in tensors}
    ns: dict[str, Any] = {"__name__": "__lecture__", "torch": torch, "F": F, "nn": nn}
    scalars = {str(k): v for k, v in dict(meta.get("scalars", {})).items()
               if k in SCALAR_NAMES and isinstance(v, int)}
    ns.update(scalars)
    # the student's own names for the sizes, bound to the config's values by their role
    ns.update({str(name): scalars[role] for name, role in dict(meta.get("sizes", {})).items()
               if role in scalars})
    ns.update(provided)
    for alias, target in dict(meta.get("aliases", {})).items():
        if target in provided:
            ns[str(alias)] = provided[target]
    records_after: dict[int, list[dict[str, Any]]] = {}
    for r in meta.get("records", []):
        records_after.setdefault(int(r["after"]), []).append(r)
    subs_after: dict[int, list[dict[str, Any]]] = {}
    for s in meta.get("substitute", []):
        subs_after.setdefault(int(s["after"]), []).append(s)
    
    out: dict[str, torch.Tensor] = {}
    errors: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    modified: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    watched: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    pristine = {k: v.clone() for k, v in provided.items()}
    changed_inputs: list[dict[str, Any]] = []
    current = {"step": -1, "capture": False}

    def cmp(s: object = None, dt: object = None, t: object = None, *_: object,
            **__: object) -> bool:
        """Records what the student compares (the lecture's cmp prints it). True, for checkers
        whose result is used (``ok &= cmp(...)``): the grader judges, not this."""
        if len(calls) >= 500:
            return True
        given = next((k for k, v in provided.items() if v is t), None)
        entry: dict[str, Any] = {"step": current["step"],
                                 "label": s[:80] if isinstance(s, str) else None, "input": given}
        if current["capture"] and isinstance(dt, torch.Tensor) and \
                sum(1 for c in calls if "key" in c) < _MAX_CAPTURES:
            snap, problem = _snapshot(dt)
            if snap is not None:
                entry["key"] = f"c{len(calls)}"
                out[entry["key"]] = snap
        calls.append(entry)
        return True

    ns["cmp"] = ns[str(meta.get("checker") or "cmp")] = cmp

    def substitute(after: int) -> None:
        for s in subs_after.get(after, []):
            value = tensors[s["key"]]
            for var in s["vars"]:
                ns[str(var)] = value.clone()

    if not session.load_read:      # the file loaded once, before the session's first run
        session.load_read = True
        if not _inert_load(linecache.cache.get(filename, (0, None, [], filename))[2]):
            session.opaque_ran = True
    last = len(steps) - 1
    substitute(-1)
    for position, step in enumerate(steps):
        current["step"], current["capture"] = position, bool(step.get("capture"))
        kind = OPAQUE
        try:
            code, kind = session.compiled_step(step)
            if kind == OPAQUE:
                session.opaque_ran = True
            exec(code, ns)  # noqa: S102  student code, in the sandbox
        except BaseException as exc:  # noqa: BLE001  student code: anything may come out
            limit = limit_hit(exc, limits)
            errors.append({"step": position,
                           "kind": "missing" if isinstance(exc, NotImplementedError) else "error",
                           "message": limit[1] if limit else exception_message(exc),
                           "limit": limit[0] if limit else None,
                           "traceback": student_traceback(exc, file_names)})
        current["capture"] = False
        # the last step is always checked: should torch itself have been made to write where a
        # statement cannot, the change is still seen (at a later step than it was made)
        if kind != PURE or session.opaque_ran or position == last:
            still: list[tuple[str, torch.Tensor, torch.Tensor]] = []
            for key, obj, snap in watched:
                if _unchanged(obj, snap):
                    still.append((key, obj, snap))
                else:
                    modified.append({"key": key, "step": position})
            watched = still
            for name, snap in list(pristine.items()):
                if not _unchanged(provided[name], snap):
                    changed_inputs.append({"input": name, "step": position})
                    del pristine[name]
        for record in records_after.get(position, []):
            var, key = str(record["var"]), str(record["key"])
            if var not in ns:
                problems.append({"key": key, "problem": "undefined", "detail": "is not defined"})
                continue
            snap, problem = _snapshot(ns[var])
            if problem:
                problems.append({"key": key, **problem})
                continue
            out[key] = snap
            watched.append((key, ns[var], snap.clone()))
        substitute(position)
    return ({"status": "ok", "errors": errors, "problems": problems, "modified": modified,
             "cmp": calls, "changed_inputs": changed_inputs}, out)
