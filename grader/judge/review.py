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

from ..output.results import REVIEW_KINDS, IntegrityFlag, Result
from .source_scan import cell_markers, line_text, suspect_nodes, where_in_cells

__all__ = ["REVIEW_KINDS", "clear_review", "review_reasons", "review_sign", "runtime_reasons",
           "with_review"]

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
    "importlib.util": "imports modules by name at run time",
    "importlib.machinery": "imports modules by name at run time",
    "pydoc": "imports modules by name at run time", "ctypes": "calls C code directly",
    "cffi": "calls C code directly", "subprocess": _PROCESS, "multiprocessing": _PROCESS,
    "concurrent": _PROCESS, "pty": _PROCESS, "marshal": "loads marshalled code",
    "code": _BUILT_CODE, "codeop": _BUILT_CODE, "runpy": _BUILT_CODE, "builtins": _AROUND,
    "functorch": _OTHER_AD, "sympy": _OTHER_AD, "jax": _OTHER_AD, "tensorflow": _OTHER_AD,
    "autograd": _OTHER_AD, "mpmath": _OTHER_AD,
    "zipimport": _BUILT_CODE, "pkgutil": _BUILT_CODE, "imp": _BUILT_CODE,
    "torch._functorch": _OTHER_AD, "torch.func": _OTHER_AD, "torch.autograd.forward_ad": _OTHER_AD,
    "torch.autograd.functional": _OTHER_AD, "torch._C": _INTERNALS, "torch._VF": _INTERNALS,
    "torch._ops": _INTERNALS, "torch.ops": _INTERNALS, "torch.library": _INTERNALS,
    "torch.overrides": _INTERNALS, "torch.utils._python_dispatch": _INTERNALS,
    # autograd's formulas written in Python, and the tracers that run them
    "torch._decomp": _DERIVATIVES, "torch._refs": _DERIVATIVES, "torch._prims": _DERIVATIVES,
    "torch._dynamo": _INTERNALS, "torch._inductor": _INTERNALS, "torch._subclasses": _INTERNALS,
    "torch._higher_order_ops": _INTERNALS, "torch.nn.grad": _DERIVATIVES,
    "torch.autograd.graph": _INTERNALS,
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
                     "currentframe", "unwrap", "attrgetter", "methodcaller", "meta_path",
                     "path_hooks", "path_importer_cache"), _AROUND),
    # a module reached as another module's attribute (torch.utils.cpp_extension.subprocess)
    **dict.fromkeys(("subprocess", "multiprocessing", "_posixsubprocess", "pty", "spawn"),
                    _PROCESS),
    **dict.fromkeys(("ctypes", "builtins", "marshal", "runpy", "FunctionType", "CodeType",
                     "pydoc"), _AROUND),
    # what turns a dotted string into the object it names, or reads any attribute at all
    **dict.fromkeys(("import_module", "locate", "resolve_name", "_import_dotted_name"),
                    "imports modules by name at run time"),
    **dict.fromkeys(("getmembers", "getmembers_static", "get_field"), _AROUND),
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
                     "TorchDispatchMode", "TorchFunctionMode", "_ops", "save_on_cpu",
                     "next_functions", "_input_metadata", "unfreeze",
                     "_push_saved_tensors_default_hooks", "_pop_saved_tensors_default_hooks",
                     "_top_saved_tensors_default_hooks", "getattr_static", "walk_stack",
                     "walk_tb", "_current_frames", "getouterframes", "getinnerframes"),
                    _INTERNALS),
}
_TORCH_ATTRIBUTES = {"func": _OTHER_AD, "ops": _INTERNALS, "library": _INTERNALS}  # torch.X
_UNPICKLE = "loads pickled objects (which runs code)"
# X.Y where X's last name is the key: torch.nn.grad (gradients of convolutions and products),
# torch.autograd.graph (the graph's nodes and hooks)
_CHAINS = {("nn", "grad"): _DERIVATIVES, ("autograd", "graph"): _INTERNALS,
           ("autograd", "functional"): _OTHER_AD, ("inspect", "stack"): _AROUND,
           ("inspect", "trace"): _AROUND, ("traceback", "extract_stack"): _AROUND,
           ("pickle", "loads"): _UNPICKLE, ("pickle", "load"): _UNPICKLE,
           ("pickle", "Unpickler"): _UNPICKLE, ("dill", "loads"): _UNPICKLE,
           ("dill", "load"): _UNPICKLE, ("pdb", "run"): _BUILT_CODE,
           ("pdb", "runeval"): _BUILT_CODE, ("pdb", "runctx"): _BUILT_CODE}
_KERNEL = re.compile(r"[A-Za-z0-9]_backward")      # tanh_backward, _softmax_backward_data, ...
_TORCH_ROOTS = ("torch", "F", "nn", "aten", "ops", "_VF", "functional")
_RUNS_CODE = ("exec", "eval", "compile")
_BY_NAME = ("getattr", "setattr", "delattr", "hasattr")
# dunder names a student may well write, in code or in a string ("__main__")
_PLAIN_DUNDERS = re.compile(
    r"__(?:name|main|file|doc|version|class|init|call|all|len|getitem|setitem|repr|str|iter|"
    r"next|enter|exit|future|annotations|slots|post_init|qualname|module|eq|hash|add|mul|sub|"
    r"matmul|neg|pow|truediv|radd|rmul|rsub|rtruediv|contains|bool|float|int)__")
# a string that could be (a piece of) a name with "__" in it: "__clo", "sure__", "__dict__";
# not prose ("__Exercise 2__", "dL/dlogits__i")
# a string naming torch's internals or a derivative formula by its dotted path
_INTERNAL_PATH = re.compile(r"torch\._C\b|_VariableFunctions|\bops\.aten\b|_functorch|_decomp|"
                            r"autograd\.graph|saved_tensors|\w\._?\w*_backward")
_NAME_WITH_DUNDER = re.compile(r"\w*(?:[A-Za-z0-9]__|__[A-Za-z0-9])\w*", re.ASCII)
_IDENTIFIER_PIECE = re.compile(r"[A-Za-z0-9_]*")

# the words a sign is written with; a module's last name is enough ("import torch._C" holds
# "_C"), but not a word every notebook has: torch.autograd.functional and .graph are told by
# "autograd", torch.nn.grad by "nn.grad" (see review_reasons)
_WORDS = frozenset({*(m.split(".")[-1] for m in _MODULES), "autograd", *_ATTRIBUTES,
                    *_TORCH_ATTRIBUTES, *_RUNS_CODE, *_BY_NAME, "modules", "vars", "__import__",
                    "__builtins__", "inspect", "extract_stack", "exec", "pickle", "dill", "pdb"}
                   - {"functional", "grad", "graph"})
# lines that hold no word of a sign, but may spell one: torch.nn.grad, and literals joined with
# + (a name written in pieces: "saved_tensors_" + "hooks")
_ALSO = re.compile(r"""nn\.grad\b|\bnn\s+import\b[^\n]*\bgrad\b|['"]\s*\+\s*[rRbBfFuU]*['"]|"""
                   r"""\.join\(\s*[\[(]\s*[rRbBfFuU]*['"]""")
_TRIGGERS = re.compile(r"\b(?:" + "|".join(sorted(_WORDS)) + r")\b|__|\w_backward|"
                       + _ALSO.pattern, re.ASCII)
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
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):     # "d%s" % name
        values = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
        return isinstance(node.left, ast.Constant) and isinstance(node.left.value, str) \
            and _identifier_built(ast.Constant(node.left.value.replace("%s", ""))) \
            and all(_identifier_built(v) for v in values)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr == "format" and isinstance(node.func.value, ast.Constant) \
            and isinstance(node.func.value.value, str) and not node.keywords:  # "d{}".format(n)
        template = re.sub(r"\{\d*\}", "", node.func.value.value)
        return _identifier_built(ast.Constant(template)) \
            and all(_identifier_built(a) for a in node.args)
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


def _folded(node: ast.AST) -> str | None:
    """The string ``node`` always is (a literal, or literals joined with + or an f-string
    without fields): ``"saved_tensors_" + "hooks"`` is ``"saved_tensors_hooks"``."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _folded(node.left), _folded(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):      # "_" * 2
        text, times = (node.left, node.right) if isinstance(node.left, ast.Constant) and \
            isinstance(node.left.value, str) else (node.right, node.left)
        if isinstance(times, ast.Constant) and type(times.value) is int and times.value < 100:
            piece = _folded(text)
            return None if piece is None else piece * times.value
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr == "join" and len(node.args) == 1 and not node.keywords \
            and isinstance(node.args[0], (ast.List, ast.Tuple)):       # "".join(["_", "_self"])
        sep = _folded(node.func.value)
        parts = [_folded(e) for e in node.args[0].elts]
        return None if sep is None or None in parts else sep.join(p for p in parts if p is not None)
    if isinstance(node, ast.JoinedStr):
        parts = [_folded(v) for v in node.values]
        return None if None in parts else "".join(p for p in parts if p is not None)
    return None


def _name_sign(name: str, *, kernels: bool = True) -> str | None:
    """Why a name (an attribute, an imported name, a name looked up by string) is a sign;
    ``kernels``: a derivative formula's name (``tanh_backward``) is one."""
    if name in _ATTRIBUTES:
        return _ATTRIBUTES[name]
    if kernels and _KERNEL.search(name):
        return _DERIVATIVES
    if _NAME_WITH_DUNDER.fullmatch(_PLAIN_DUNDERS.sub("", name)):
        return _AROUND
    return None


def _last_name(node: ast.expr) -> str | None:
    return node.attr if isinstance(node, ast.Attribute) else \
        node.id if isinstance(node, ast.Name) else None


# what a notebook's setup cell runs to fetch the data set (`!wget ...` exported to .py as
# get_ipython().system(...), or os.system): one literal command of these, no shell syntax
_FETCH_COMMANDS = ("wget", "curl", "gdown", "pip", "pip3", "unzip", "mkdir", "ls", "head",
                   "tail", "cat", "wc", "echo", "nvidia-smi", "rm", "cp", "mv", "pwd", "touch",
                   "du", "df", "free", "uname", "nproc", "which", "date")
_TO_NULL = re.compile(r"\s*(?:[12]?>\s*/dev/null|2>&1)")
_SHELL_SYNTAX = re.compile(r"[;&|$`<>(){}\n\\]")


def _fetches_a_file(node: ast.Call) -> bool:
    """``get_ipython().system("wget -q URL")`` or ``os.system("wget URL")``: a literal
    command that fetches or lists files, nothing a helper process could compute with."""
    func = node.func
    if not (isinstance(func, ast.Attribute) and func.attr in ("system", "getoutput")
            and len(node.args) == 1 and not node.keywords):
        return False
    command = _folded(node.args[0])
    command = None if command is None else _TO_NULL.sub("", command)
    return command is not None and not _SHELL_SYNTAX.search(command) \
        and command.split()[:1] in ([c] for c in _FETCH_COMMANDS)


def _attribute_sign(node: ast.Attribute) -> str | None:
    """A derivative formula's name is a sign off torch's own names (or a private one): a
    student's ``layer.tanh_backward(...)`` is their own."""
    root = _root_name(node.value)
    if root in ("self", "cls"):
        return _ATTRIBUTES.get(node.attr)
    if _KERNEL.search(node.attr) and root not in _TORCH_ROOTS and not node.attr.startswith("_"):
        return None
    return _name_sign(node.attr)


def review_sign(node: ast.AST, *, depth: int = 0, called: set[int] | None = None
                ) -> str | None:
    """Why ``node`` sends its submission to review, if it does. ``called``: the ids of the
    functions of the calls seen so far (a walk meets a call before its function), so that
    ``getattr`` passed around (``ga = getattr``, ``reduce(getattr, ...)``) is told from called."""
    kind = type(node)
    if kind is ast.Attribute:
        if called is not None and -id(node) in called:
            return None
        why = _attribute_sign(node)
        if why is not None:
            return f"{why} (.{node.attr})"
        if node.attr in _TORCH_ATTRIBUTES and _root_name(node.value) == "torch":
            return f"{_TORCH_ATTRIBUTES[node.attr]} (torch.{node.attr})"
        if node.attr == "modules" and _root_name(node.value) == "sys":
            return f"{_AROUND} (sys.modules)"
        chain = (_last_name(node.value), node.attr)
        if chain in _CHAINS:
            return f"{_CHAINS[chain]} ({chain[0]}.{chain[1]})"
        return None
    if kind is ast.Name:
        if node.id in ("__import__", "__builtins__"):
            return f"{_AROUND} ({node.id})"
        if node.id in (*_BY_NAME, "vars") and called is not None and id(node) not in called:
            return f"{_AROUND} ({node.id} passed around, not called)"
        return None
    if kind is ast.MatchClass:           # case object(__closure__=c): attributes by pattern
        return next((f"{why} (case ...({a}=...))" for a in node.kwd_attrs
                     if (why := _name_sign(a))), None)
    if kind is ast.Import:
        return next((s for a in node.names if (s := _module_sign(a.name))), None)
    if kind is ast.ImportFrom:
        module = node.module or ""
        names = {a.name for a in node.names}
        if module == "importlib" and names == {"reload"}:
            return None      # reloading a module of the student's own (none in the sandbox)
        if module in ("pickle", "dill") and names & {"load", "loads", "Unpickler"}:
            return f"{_UNPICKLE} (imports {', '.join(sorted(names))} from {module})"
        sign = _module_sign(module)
        if sign is None:
            names = [a.name for a in node.names]
            sign = next((_module_sign(f"{module}.{n}") for n in names
                         if _module_sign(f"{module}.{n}")), None)
            sign = sign or next((f"{why} (imports {n} from {module})" for n in names
                                 if (why := _name_sign(n))), None)
        return sign
    if kind is ast.Compare and called is not None and isinstance(node.left, ast.Constant) \
            and all(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
        called.update(-id(c) for c in node.comparators)   # 'google.colab' in sys.modules
    if kind is ast.Call and called is not None:
        called.add(id(node.func))
        if _fetches_a_file(node):      # its .system is no sign: the walk meets it next
            called.add(-id(node.func))
    if kind is ast.Call and isinstance(node.func, ast.Attribute) and (
            node.func.attr == "exec" or (node.func.attr == "eval" and node.args)):
        return f"{_BUILT_CODE} (.{node.func.attr}() of a string)"
    if kind is ast.Call and isinstance(node.func, ast.Name):
        name = node.func.id
        if name in (*_BY_NAME, "vars") and (
                any(isinstance(a, ast.Starred) for a in node.args)
                or any(k.arg is None for k in node.keywords)):
            return f"{_AROUND} ({name}() of arguments unpacked at run time)"
        if name in _RUNS_CODE:
            return _literal_code_sign(node, depth)
        if name == "vars" and node.args:
            return f"{_AROUND} (vars() of an object: its attributes as a dictionary)"
        if name in _BY_NAME and len(node.args) >= 2:
            attr = _folded(node.args[1])
            if attr is None:
                return f"{_AROUND} ({name}() of an attribute named at run time)"
            if (why := _name_sign(attr)) is not None:
                return f"{why} ({name}(..., {attr!r}))"
        return None
    if kind is ast.Subscript:
        key = _folded(node.slice)       # cache["h_backward"] is a student's own; "_..." not
        if key is not None and (why := _name_sign(key, kernels=key.startswith("_"))) is not None:
            return f"{why} ([{key[:40]!r}])"
        return None
    if kind is ast.BinOp or kind is ast.Constant or kind is ast.JoinedStr or kind is ast.Call:
        text = _folded(node)
        if text and _NAME_WITH_DUNDER.fullmatch(_PLAIN_DUNDERS.sub("", text)):
            return f"{_AROUND} (a string naming Python's internals: {text[:40]!r})"
        if text and _INTERNAL_PATH.search(text):
            return f"{_INTERNALS} (a string naming them: {text[:60]!r})"
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
    if code.isascii() and "__" not in code and not _ALSO.search(code) and not any(
            w in _WORDS or "_backward" in w for w in set(_IDENTIFIER.findall(code))):
        return ()             # most files: one pass over the identifiers (the scan's regex is slow)
    suspect = suspect_nodes(code, _TRIGGERS, filename=filename, tree=tree)
    if suspect is None:
        return ()
    tree, nodes = suspect
    docstrings = _docstrings(tree)
    found: dict[int, str] = {}
    called: set[int] = set()
    for node in nodes:
        if id(node) in docstrings:
            continue
        why = review_sign(node, called=called)
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
    return tuple(f.detail if f.kind == "load" else f"at run time, {f.detail}"
                 for f in flags if f.kind in REVIEW_KINDS)


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
