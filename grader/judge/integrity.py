"""Autograd use: a static scan of the source, and the flags and messages for the results.

The exercise is to derive every gradient by hand, so autograd must not compute them. Two checks:

* at run time, the sandboxed child records calls to ``Tensor.backward``,
  ``torch.autograd.grad``/``backward`` and re-enabled ``requires_grad`` (grader.sandbox.worker.guard); a
  gradient whose call used autograd gets status "integrity" and no points under the default
  policy ("zero"), or is only flagged under policy "flag";
* here, in the grader, the source is scanned without running it for ``.grad``, ``.backward(``,
  ``autograd`` and friends. The child is the student's process and could hide from the run-time
  check; the scan cannot be hidden from, but it only flags: it cannot tell a comment-like use from
  a real one, and it never costs points by itself.
"""

from __future__ import annotations

import ast
import re
from typing import Iterable, Mapping

from ..output.results import REVIEW_KINDS, IntegrityFlag
from .source_scan import cell_markers, line_text, suspect_nodes, where_in_cells

__all__ = ["POLICIES", "autograd_events", "autograd_message", "flagged_use", "grad_read_note",
           "integrity_flags", "load_flags", "scan_source"]

POLICIES = ("zero", "flag")
_ATTRIBUTES = {
    "backward": "calls .backward()",
    "grad": "reads or sets .grad",
    "requires_grad": "uses .requires_grad",
    "requires_grad_": "calls .requires_grad_()",
    "retain_grad": "calls .retain_grad()",
    "autograd": "uses torch.autograd",
    "enable_grad": "uses torch.enable_grad",
}
_MODULES = ("torch.autograd", "torch.func", "functorch")
_MAX_FLAGS = 30


_ATTRIBUTE_CALLS = ("getattr", "setattr", "hasattr")   # getattr(x, "grad") flags as x.grad does
# Every flag comes from an identifier in the code (an attribute, a name, an imported module or
# name, a keyword argument, the attribute named in getattr & co.): the words of _ATTRIBUTES and
# _ATTRIBUTE_CALLS, or names starting with "autograd" or "func" (``import torch.functional``
# counts as torch.func). In ASCII source an identifier is spelled as it is written, so a line
# without any of these words holds nothing to flag.
_TRIGGERS = re.compile(r"\b(?:" + "|".join(sorted({*_ATTRIBUTES, *_ATTRIBUTE_CALLS}))
                       + r"|autograd\w*|func\w*)\b", re.ASCII)


def _name_of(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def flagged_use(node: ast.AST) -> str | None:
    """What ``node`` does that is flagged ("calls .backward()"), if anything."""
    kind = type(node)
    if kind is ast.Attribute:
        attr = node.attr
        if attr == "grad" and _name_of(node.value) in ("autograd", "func"):
            return None           # torch.autograd.grad / torch.func.grad: flagged as such
        if attr == "func" and _name_of(node.value) == "torch":
            return "uses torch.func"
        return _ATTRIBUTES.get(attr)
    if kind is ast.Name:
        return f"uses {node.id}" if node.id in ("autograd", "functorch") else None
    if kind is ast.Import:
        names = [a.name for a in node.names if a.name.startswith(_MODULES)]
        return f"imports {names[0]}" if names else None
    if kind is ast.ImportFrom:
        module = node.module or ""
        imported = {a.name for a in node.names}
        if module.startswith(_MODULES) or (module == "torch" and imported & {"autograd", "func"}):
            return f"imports from {module}"
        return None
    if kind is ast.keyword:
        if node.arg == "requires_grad" and not (
                isinstance(node.value, ast.Constant) and node.value.value is False):
            return "passes requires_grad=..."
        return None
    if kind is ast.Call and isinstance(node.func, ast.Name) \
            and node.func.id in _ATTRIBUTE_CALLS and len(node.args) >= 2 \
            and isinstance(node.args[1], ast.Constant) and node.args[1].value in _ATTRIBUTES:
        return f"{node.func.id}(..., {node.args[1].value!r})"
    return None


def scan_source(code: str, *, filename: str = "<submission>", tree: ast.Module | None = None,
                cells: bool = False) -> tuple[IntegrityFlag, ...]:
    """Static flags for autograd use in ``code`` (kind "source"); comments and docstrings,
    being no code, are not flagged. Code that does not parse gets no flags (the loader says why).

    ``tree``: ``code`` already parsed (the loader's, on the Submission), so it is not parsed twice.
    ``cells``: ``code`` is a notebook's cells joined under their ``# %% [cell N]`` lines, and each
    flag names the cell and the line in it. Only the statements on lines that name something
    suspect are looked at (see _TRIGGERS)."""
    suspect = suspect_nodes(code, _TRIGGERS, filename=filename, tree=tree)
    if suspect is None:
        return ()
    tree, nodes = suspect
    found: set[tuple[int, str]] = set()
    for node in nodes:
        what = flagged_use(node)
        if what is not None:
            found.add((getattr(node, "lineno", 0), what))
    code_lines = code.splitlines()
    markers = cell_markers(code_lines) if cells else []
    flags: list[IntegrityFlag] = []
    for lineno, what in sorted(found):
        source = line_text(code_lines, lineno)
        flag = IntegrityFlag("source", f"{filename}, {where_in_cells(markers, lineno)}: {what}"
                             + (f": {source}" if source else ""))
        if flag not in flags:
            flags.append(flag)
    return tuple(flags[:_MAX_FLAGS])


def autograd_events(events: Iterable[Mapping[str, str]]) -> list[Mapping[str, str]]:
    """The run-time records that mean autograd computed something (not just a flag)."""
    return [e for e in events if e.get("kind") == "autograd"]


def autograd_message(events: Iterable[Mapping[str, str]]) -> str:
    """Why a gradient scores 0 under the "zero" policy."""
    first = next(iter(autograd_events(events)), None)
    where = f" ({first['detail']})" if first else ""
    return (f"computed with autograd{where}: the exercise is to derive this gradient by hand. "
            "Scored 0 (integrity policy 'zero').")


def load_flags(events: Iterable[Mapping[str, str]]) -> tuple[IntegrityFlag, ...]:
    """The autograd records made while the file ran top to bottom (kind "load"): no gradient's
    own, so no gradient's zero; they send the file to review (grader.judge.review)."""
    return tuple(IntegrityFlag("load", f"your file uses autograd when it is run: {e['detail']}")
                 for e in autograd_events(events))


def grad_read_note(events: Iterable[Mapping[str, str]]) -> str | None:
    """Why a call that read ``.grad`` got None: it reads autograd's answer, which the grader's
    tensors do not carry (they come with no graph and no .grad); None when it read no .grad."""
    first = next((e for e in events if e.get("kind") == "grad"), None)
    if first is None:
        return None
    where = str(first.get("detail", "")).removesuffix(" reads .grad")
    if "grad" not in where.partition(": ")[2]:
        where = ".grad"       # the line shown is not the one read (code the grader generated)
    return (f"it reads autograd's answer ({where}) instead of computing it, and the grader's "
            "tensors carry no .grad: derive the gradient by hand")


def integrity_flags(static: Iterable[IntegrityFlag], events: Iterable[Mapping[str, str]]
                    ) -> tuple[IntegrityFlag, ...]:
    """Run-time records first (they are what happened), then the static scan; no duplicates."""
    flags: list[IntegrityFlag] = []
    # records that send the file to review first: no number of others may cut them off
    for e in sorted(events, key=lambda e: e.get("kind") not in REVIEW_KINDS):
        flag = IntegrityFlag(str(e.get("kind")), str(e.get("detail")))
        if flag not in flags:
            flags.append(flag)
    for flag in static:
        if flag not in flags:
            flags.append(flag)
    return tuple(flags[:2 * _MAX_FLAGS])
