"""Review: signs that a submission reached around the autograd watch, and what they do to it.

The run-time watch (grader.sandbox.worker.guard) runs in the student's own process, so code can
undo it. What code cannot undo is the grader reading the source: a submission that uses what no
honest answer to the exercise needs (modules imported by name, a function's closure or
``__wrapped__``, forward-mode AD, torch's C internals, process creation, code built from strings
and run) goes to **review**: its score is withheld (status "review", score 0, the score it would
have had in ``withheld_score``) until an instructor clears it (``clear_review``). So does one the
watch saw being switched off or starting a process (run-time records of kind "tamper" and
"process"). Each reason names the file, cell and line.

Review applies under the "zero" integrity policy; under "flag" autograd costs no points, so
there is nothing to withhold. The scan reads only statements on lines that name one of its words
(grader.judge.source_scan).
"""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from typing import Iterable

from ..output.results import IntegrityFlag, Result
from .source_scan import cell_markers, line_text, nodes_near, trigger_lines, where_in_cells

__all__ = ["REVIEW_KINDS", "clear_review", "review_reasons", "review_sign", "runtime_reasons",
           "with_review"]

REVIEW_KINDS = ("tamper", "process")     # run-time records that send a submission to review
_MAX_REASONS = 10
_LITERAL_DEPTH = 3                       # exec("exec('...')"): nested literal code, read this deep

_AROUND = "reaches around the grader's autograd watch"
_PROCESS = "starts a process (a helper process could compute what the grader cannot see)"
_OTHER_AD = "computes derivatives with a tool the watch does not follow"
_INTERNALS = "uses torch's internals"
_BUILT_CODE = "runs code built at run time"
_DERIVATIVES = "uses autograd's own derivative formulas"    # torch._softmax_backward_data & co

# imported modules (and their submodules) no answer needs
_MODULES = {
    "importlib": "imports modules by name at run time", "ctypes": "calls C code directly",
    "cffi": "calls C code directly", "subprocess": _PROCESS, "multiprocessing": _PROCESS,
    "concurrent": _PROCESS, "pty": _PROCESS, "pickle": "loads pickled objects (runs code)",
    "marshal": "loads marshalled code", "dill": "loads pickled objects (runs code)",
    "code": _BUILT_CODE, "codeop": _BUILT_CODE, "pdb": _BUILT_CODE, "bdb": _BUILT_CODE,
    "runpy": _BUILT_CODE, "builtins": _AROUND, "functorch": _OTHER_AD,
    "torch._functorch": _OTHER_AD, "torch.func": _OTHER_AD, "torch.autograd.forward_ad": _OTHER_AD,
    "torch.autograd.functional": _OTHER_AD, "torch._C": _INTERNALS, "torch._VF": _INTERNALS,
    "torch._ops": _INTERNALS, "torch.ops": _INTERNALS, "torch.library": _INTERNALS,
    "torch.overrides": _INTERNALS, "torch.utils._python_dispatch": _INTERNALS,
}
# attribute names (and names imported with ``from m import name``) no answer needs
_ATTRIBUTES = {
    **dict.fromkeys(("__wrapped__", "__closure__", "__globals__", "__code__", "__builtins__",
                     "__import__", "__subclasses__", "__bases__", "__base__", "__mro__",
                     "__dict__", "__getattribute__", "__func__", "__self__", "__defaults__",
                     "__kwdefaults__", "__loader__", "__spec__", "__reduce__", "__reduce_ex__",
                     "__setattr__", "__delattr__", "cell_contents", "f_back", "f_globals",
                     "f_locals", "f_builtins", "f_code", "tb_frame", "gi_frame", "cr_frame",
                     "co_code", "co_consts", "_getframe", "setprofile", "settrace",
                     "get_referents", "get_referrers", "get_objects", "getclosurevars",
                     "currentframe", "unwrap", "attrgetter", "methodcaller"), _AROUND),
    **dict.fromkeys(("fork", "forkpty", "system", "popen", "Popen", "posix_spawn",
                     "posix_spawnp", "register_at_fork", "execv", "execve", "execvp", "execvpe",
                     "execl", "execle", "execlp", "execlpe", "spawnl", "spawnle", "spawnlp",
                     "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe"), _PROCESS),
    **dict.fromkeys(("jacfwd", "jacrev", "jvp", "vjp", "hessian", "hvp", "vhp", "jacobian",
                     "linearize", "grad_and_value", "make_dual", "unpack_dual", "dual_level",
                     "forward_ad", "functorch", "_make_dual", "_unpack_dual",
                     "_enter_dual_level"), _OTHER_AD),
    **dict.fromkeys(("_C", "_VF", "_functorch", "_execution_engine", "run_backward",
                     "saved_tensors_hooks", "disable_saved_tensors_hooks", "_python_dispatch",
                     "TorchDispatchMode", "TorchFunctionMode", "_ops"), _INTERNALS),
}
_TORCH_ATTRIBUTES = {"func": _OTHER_AD, "ops": _INTERNALS, "library": _INTERNALS}  # torch.X
_RUNS_CODE = ("exec", "eval", "compile")
_BY_NAME = ("getattr", "setattr", "delattr", "hasattr")
# dunder names a student may well write, in code or in a string ("__main__")
_PLAIN_DUNDERS = re.compile(
    r"__(?:name|main|file|doc|version|class|init|call|all|len|getitem|setitem|repr|str|iter|"
    r"next|enter|exit|future|annotations|slots|post_init|qualname|module|eq|hash|add|mul|sub|"
    r"matmul|neg|pow|truediv|radd|rmul|rsub|rtruediv|contains|bool|float|int)__")
_DUNDER_PIECE = re.compile(r"[A-Za-z0-9]__|__[A-Za-z0-9]")
_IDENTIFIER_PIECE = re.compile(r"[A-Za-z0-9_]*")

# the words a sign is written with; a module's last name is enough ("import torch._C" holds
# "_C"), but torch.autograd.functional is told by "autograd" (torch.nn.functional is everywhere)
_WORDS = frozenset({*(m.split(".")[-1] for m in _MODULES if m != "torch.autograd.functional"),
                    "autograd", *_ATTRIBUTES, *_TORCH_ATTRIBUTES, *_RUNS_CODE, *_BY_NAME,
                    "modules", "__import__", "__builtins__", "breakpoint"})
_TRIGGERS = re.compile(r"\b(?:" + "|".join(sorted(_WORDS)) + r")\b|__|\w+backward|backward\w+",
                       re.ASCII)
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*", re.ASCII)


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _identifier_built(node: ast.expr) -> bool:
    """``node`` can only build an identifier (``'d' + name``, ``f"d{name}"``): what a checker
    loop passes to eval to look a variable up."""
    if isinstance(node, ast.Name):
        return True
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and bool(_IDENTIFIER_PIECE.fullmatch(node.value)) \
            and "__" not in node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _identifier_built(node.left) and _identifier_built(node.right)
    if isinstance(node, ast.JoinedStr):
        return all(_identifier_built(v.value if isinstance(v, ast.FormattedValue) else v)
                   for v in node.values)
    return False


def _module_sign(module: str) -> str | None:
    for name, why in _MODULES.items():
        if module == name or module.startswith(name + "."):
            return f"{why} (imports {module})"
    return None


def _literal_code_sign(node: ast.Call, depth: int) -> str | None:
    """exec / eval / compile of a literal string: the string's own signs (it is code we can
    read); of anything else: a sign in itself."""
    name = node.func.id if isinstance(node.func, ast.Name) else ""
    arg = node.args[0] if node.args else None
    if name == "eval" and arg is not None and _identifier_built(arg) \
            and not isinstance(arg, ast.Constant):
        return None                                 # eval("d" + name): a variable looked up
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)) \
            or depth >= _LITERAL_DEPTH:
        return f"{_BUILT_CODE} ({name}() of a string built at run time)"
    try:
        tree = ast.parse(arg.value, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return f"{_BUILT_CODE} ({name}() of a string that is not Python)"
    for inner in ast.walk(tree):
        why = review_sign(inner, depth=depth + 1)
        if why is not None:
            return f"{why}, inside {name}()"
    return None


def review_sign(node: ast.AST, *, depth: int = 0) -> str | None:
    """Why ``node`` sends its submission to review, if it does."""
    kind = type(node)
    if kind is ast.Attribute:
        if node.attr in _ATTRIBUTES:
            return f"{_ATTRIBUTES[node.attr]} (.{node.attr})"
        if "backward" in node.attr and node.attr != "backward":
            return f"{_DERIVATIVES} (.{node.attr})"
        if node.attr in _TORCH_ATTRIBUTES and _root_name(node.value) == "torch":
            return f"{_TORCH_ATTRIBUTES[node.attr]} (torch.{node.attr})"
        if node.attr == "modules" and _root_name(node.value) == "sys":
            return f"{_AROUND} (sys.modules)"
        if node.attr == "functional" and isinstance(node.value, (ast.Name, ast.Attribute)) \
                and (node.value.attr if isinstance(node.value, ast.Attribute)
                     else node.value.id) == "autograd":
            return f"{_OTHER_AD} (autograd.functional)"
        return None
    if kind is ast.Name:
        if node.id in ("__import__", "__builtins__", "breakpoint"):
            return f"{_AROUND} ({node.id})"
        return None
    if kind is ast.Import:
        return next((s for a in node.names if (s := _module_sign(a.name))), None)
    if kind is ast.ImportFrom:
        module = node.module or ""
        sign = _module_sign(module)
        if sign is None:
            names = [a.name for a in node.names]
            sign = next((_module_sign(f"{module}.{n}") for n in names
                         if _module_sign(f"{module}.{n}")), None)
            sign = sign or next((f"{_ATTRIBUTES[n]} (imports {n} from {module})" for n in names
                                 if n in _ATTRIBUTES), None)
            sign = sign or next((f"{_DERIVATIVES} (imports {n} from {module})" for n in names
                                 if "backward" in n and n != "backward"), None)
        return sign
    if kind is ast.Call and isinstance(node.func, ast.Name):
        name = node.func.id
        if name in _RUNS_CODE:
            return _literal_code_sign(node, depth)
        if name in _BY_NAME and len(node.args) >= 2:
            attr = node.args[1]
            if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
                return f"{_AROUND} ({name}() of an attribute named at run time)"
            if attr.value in _ATTRIBUTES:
                return f"{_ATTRIBUTES[attr.value]} ({name}(..., {attr.value!r}))"
        return None
    if kind is ast.Constant and isinstance(node.value, str) \
            and _DUNDER_PIECE.search(_PLAIN_DUNDERS.sub("", node.value)):
        return f"{_AROUND} (a string naming Python's internals: {node.value[:40]!r})"
    return None


def _docstrings(tree: ast.Module) -> set[int]:
    """The ids of docstring constants (text, not code: they may name anything)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            found.add(id(body[0].value))
    return found


def review_reasons(code: str, *, filename: str = "<submission>",
                   tree: ast.Module | None = None, cells: bool = False) -> tuple[str, ...]:
    """Each sign in ``code`` that sends it to review, naming the line (and the cell, for a
    notebook's joined cells); () for code that does not parse (the loader says why)."""
    if code.isascii() and "__" not in code and not any(
            w in _WORDS or ("backward" in w and w != "backward")
            for w in set(_IDENTIFIER.findall(code))):
        return ()             # most files: one pass over the identifiers (the scan's regex is slow)
    lines = trigger_lines(code, _TRIGGERS)
    if lines == []:
        return ()
    if tree is None:
        try:
            tree = ast.parse(code, filename=filename)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return ()
    nodes = ast.walk(tree) if lines is None else nodes_near(tree.body, lines)
    docstrings = _docstrings(tree) if "__" in code else set()
    found: dict[int, str] = {}
    for node in nodes:
        if id(node) in docstrings:
            continue
        why = review_sign(node)
        if why is not None:
            found.setdefault(getattr(node, "lineno", 0), why)
    code_lines = code.splitlines()
    markers = cell_markers(code_lines) if cells else []
    reasons = []
    for lineno, why in sorted(found.items())[:_MAX_REASONS]:
        source = line_text(code_lines, lineno)
        reasons.append(f"{filename}, {where_in_cells(markers, lineno)}: {why}"
                       + (f": {source}" if source else ""))
    return tuple(reasons)


def runtime_reasons(flags: Iterable[IntegrityFlag]) -> tuple[str, ...]:
    """The run-time records that send a submission to review (kinds REVIEW_KINDS)."""
    return tuple(f"at run time, {f.detail}" for f in flags if f.kind in REVIEW_KINDS)


def with_review(result: Result, reasons: Iterable[str], *, policy: str) -> Result:
    """``result`` sent to review for ``reasons`` (and the run-time records among its
    integrity flags): status "review", score withheld. Unchanged where there is no reason, the
    policy is not "zero" or the submission was not graded."""
    everything = (*reasons, *runtime_reasons(result.integrity))
    if not everything or policy != "zero" or result.status != "graded":
        return result
    return replace(result, status="review", score=0.0, withheld_score=result.score,
                   review=tuple(dict.fromkeys(everything)))


def clear_review(result: Result) -> Result:
    """An instructor's clearance: the withheld score given back, the reasons kept as a note."""
    if result.status != "review":
        return result
    note = "Cleared by the instructor after review of: " + "; ".join(result.review)
    return replace(result, status="graded", score=result.withheld_score or 0.0,
                   withheld_score=None, notes=(*result.notes, note))
