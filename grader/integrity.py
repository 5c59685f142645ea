"""Autograd use: a static scan of the source, and the flags and messages for the results.

The exercise is to derive every gradient by hand, so autograd must not compute them. Two checks:

* at run time, the sandboxed child records calls to ``Tensor.backward``,
  ``torch.autograd.grad``/``backward`` and re-enabled ``requires_grad`` (grader._guard); a
  gradient whose call used autograd gets status "integrity" and no points under the default
  policy ("zero"), or is only flagged under policy "flag";
* here, in the grader, the source is scanned without running it for ``.grad``, ``.backward(``,
  ``autograd`` and friends. The child is the student's process and could hide from the run-time
  check; the scan cannot be hidden from, but it only flags: it cannot tell a comment-like use from
  a real one, and it never costs points by itself.
"""

from __future__ import annotations

import ast
from typing import Iterable, Mapping

from .results import IntegrityFlag

__all__ = ["POLICIES", "autograd_events", "autograd_message", "integrity_flags", "scan_source"]

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


def _line(code_lines: list[str], lineno: int) -> str:
    text = code_lines[lineno - 1].strip() if 0 < lineno <= len(code_lines) else ""
    return text[:120]


def _name_of(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def scan_source(code: str, *, filename: str = "<submission>") -> tuple[IntegrityFlag, ...]:
    """Static flags for autograd use in ``code`` (kind "source"); comments and docstrings,
    being no code, are not flagged. Code that does not parse gets no flags (the loader says why)."""
    try:
        tree = ast.parse(code, filename=filename)
    except (SyntaxError, ValueError):
        return ()
    lines = code.splitlines()
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Attribute) and node.attr == "grad" and _name_of(node.value) in (
                "autograd", "func"):
            what = None           # torch.autograd.grad / torch.func.grad: flagged as such
        elif isinstance(node, ast.Attribute) and node.attr == "func" \
                and _name_of(node.value) == "torch":
            what = "uses torch.func"
        elif isinstance(node, ast.Attribute) and node.attr in _ATTRIBUTES:
            what = _ATTRIBUTES[node.attr]
        elif isinstance(node, ast.Name) and node.id in ("autograd", "functorch"):
            what = f"uses {node.id}"
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith(_MODULES)]
            what = f"imports {names[0]}" if names else None
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            imported = {a.name for a in node.names}
            if module.startswith(_MODULES) or (
                    module == "torch" and imported & {"autograd", "func"}):
                what = f"imports from {module}"
        elif isinstance(node, ast.keyword) and node.arg == "requires_grad" and not (
                isinstance(node.value, ast.Constant) and node.value.value is False):
            what = "passes requires_grad=..."
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) >= 2 \
                and isinstance(node.args[1], ast.Constant) and node.args[1].value in _ATTRIBUTES:
            what = f"{node.func.id}(..., {node.args[1].value!r})"
        if what is not None:
            found.append((getattr(node, "lineno", 0), what))
    flags: list[IntegrityFlag] = []
    for lineno, what in sorted(set(found)):
        source = _line(lines, lineno)
        flag = IntegrityFlag("source", f"{filename}, line {lineno}: {what}"
                             + (f": {source}" if source else ""))
        if flag not in flags:
            flags.append(flag)
    return tuple(flags[:_MAX_FLAGS])


def autograd_events(events: Iterable[Mapping[str, str]]) -> list[Mapping[str, str]]:
    """The run-time records that mean autograd computed something (not just a flag)."""
    return [e for e in events if e.get("kind") == "autograd"]


def autograd_message(events: Iterable[Mapping[str, str]], *, at_load: bool = False) -> str:
    """Why a gradient scores 0 under the "zero" policy."""
    first = next(iter(autograd_events(events)), None)
    where = f" ({first['detail']})" if first else ""
    if at_load:
        return (f"your file uses autograd when it is run{where}, so no gradient from it can be "
                "trusted: the exercise is to derive the gradients by hand. Scored 0 (integrity "
                "policy 'zero').")
    return (f"computed with autograd{where}: the exercise is to derive this gradient by hand. "
            "Scored 0 (integrity policy 'zero').")


def integrity_flags(static: Iterable[IntegrityFlag], events: Iterable[Mapping[str, str]]
                    ) -> tuple[IntegrityFlag, ...]:
    """Run-time records first (they are what happened), then the static scan; no duplicates."""
    flags: list[IntegrityFlag] = []
    for e in events:
        flag = IntegrityFlag(str(e.get("kind")), str(e.get("detail")))
        if flag not in flags:
            flags.append(flag)
    for flag in static:
        if flag not in flags:
            flags.append(flag)
    return tuple(flags[:2 * _MAX_FLAGS])
