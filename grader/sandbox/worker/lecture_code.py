"""Lecture-style code, run in the student's child: the exercise statements one at a time.

The grader (grader.judge.lecture_style) sends the statements it picked out of the notebook, with
its forward tensors, parameters, ``n``, ``Xb`` and ``Yb``; this module runs them with ``torch``,
``F`` and a ``cmp`` that records instead of printing, copies each gradient right after the
statements that compute it, and notes when a later statement changes it in place through an
alias (``dhprebn = dbndiff; dhprebn += ...``).
"""

from __future__ import annotations

import linecache
from typing import Any

import torch

from ...lecture.catalog import SCALAR_NAMES
from ..wire import unsendable_reason
from .errors import exception_message, limit_hit, student_traceback

__all__ = ["run_lecture_code"]

_MAX_ELEMENTS = 1 << 22           # a gradient larger than this is not sent back
_MAX_CAPTURES = 24


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
                     limits: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Run the exercise statements one at a time; read each gradient after its statements.
    ``limits``: the child's (a step that runs into one says which)."""
    try:
        return _run_steps(meta, tensors, limits)
    except BaseException as exc:  # noqa: BLE001  student code may have broken torch or builtins
        return {"status": "error",
                "message": f"the exercise code could not be run: {exception_message(exc)}"}, {}


def _run_steps(meta: dict[str, Any], tensors: dict[str, torch.Tensor], limits: dict[str, Any]
               ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    import torch.nn as nn
    import torch.nn.functional as F

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

    substitute(-1)
    for position, step in enumerate(steps):
        current["step"], current["capture"] = position, bool(step.get("capture"))
        try:
            code = compile("\n" * (int(step["line"]) - 1) + str(step["code"]), str(step["file"]),
                           "exec")
            exec(code, ns)  # noqa: S102  student code, in the sandbox
        except BaseException as exc:  # noqa: BLE001  student code: anything may come out
            limit = limit_hit(exc, limits)
            errors.append({"step": position,
                           "kind": "missing" if isinstance(exc, NotImplementedError) else "error",
                           "message": limit[1] if limit else exception_message(exc),
                           "limit": limit[0] if limit else None,
                           "traceback": student_traceback(exc, file_names)})
        current["capture"] = False
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
