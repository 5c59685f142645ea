"""Reading lecture-style code, never running it: which statements are the exercise code.

Lecture-style code assigns the gradients one after another (``dlogprobs = ...``), as the lecture
notebook does. From a parsed file or notebook this module finds

* the statements that compute each gradient, grouped (``dcounts = ...`` then ``dcounts += ...``),
  and which group is exercise 1's ``dlogits``/``dhprebn`` and which exercise 2's/3's fused one;
* the student's own names, from their ``cmp(label, dvar, var)`` calls;
* what those statements need that the grader does not provide (helpers, imports), but never data
  loading, plots or training loops;
* exercise 4's backward lines inside a training loop, as the text of a ``backward()`` function.

The result, a ``LectureProgram``, says what to run and why; grader.judge.lecture_style runs it.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field

from ..lecture.catalog import EXERCISE1, EXERCISE2, EXERCISE3, EXERCISE4_INPUT_NAMES, SCALAR_NAMES, \
    Gradient
from ..lecture.model import FORWARD_NAMES, PARAMETER_NAMES
from .notebook import CELL_MARKER_RE

__all__ = [
    "BackwardSource",
    "CmpCall",
    "GradientSource",
    "GRADIENT_VARIABLES",
    "LectureProgram",
    "PROVIDED_NAMES",
    "Statement",
    "looks_like_lecture_style",
    "read_lecture_code",
]

LECTURE_TENSORS: tuple[str, ...] = (*FORWARD_NAMES, *PARAMETER_NAMES)
MODULE_NAMES = ("torch", "F", "nn")
PROVIDED_NAMES: frozenset[str] = frozenset(
    (*LECTURE_TENSORS, "Xb", "Yb", *SCALAR_NAMES, *MODULE_NAMES, "cmp"))
_BUILTINS = frozenset(dir(builtins))
EX1_BY_NAME: dict[str, Gradient] = {g.name: g for g in EXERCISE1}
EX4_ORDER = tuple(f"d{p}" for p in PARAMETER_NAMES)   # dC, dW1, db1, dW2, db2, dbngain, dbnbias
# the variables a lecture-style notebook assigns its gradients to
GRADIENT_VARIABLES = frozenset(EX1_BY_NAME) | {"dlogits", "dhprebn"}

# exercise 1's dlogits / dhprebn read these; exercise 2's / 3's fused forms do not
_CHUNKED_UPSTREAM = {"dlogits": ("dnorm_logits", "dlogit_maxes"), "dhprebn": ("dbndiff", "dbnmeani")}
# gradients exercise 1 computes right after dlogits / dhprebn
_SUCCESSORS = {"dlogits": ("dh", "dW2", "db2"), "dhprebn": ("dembcat", "dW1", "db1")}
_FUSED = {"dlogits": EXERCISE2, "dhprebn": EXERCISE3}
# what a helper statement may not touch to be run as a dependency
_DATA_NAMES = frozenset({"open", "input", "words", "Xtr", "Ytr", "Xdev", "Ydev", "Xte", "Yte",
                         "build_dataset", "stoi", "itos", "plt", "matplotlib", "os", "sys",
                         "subprocess", "shutil", "requests", "urllib", "exit", "quit"})
_NO_GRAD = ("no_grad", "inference_mode")
_SYNONYMS = {"bnmean": "bnmeani", "countsum": "counts_sum", "countsuminv": "counts_sum_inv",
             "logitmax": "logit_maxes", "logitsmax": "logit_maxes", "logitmaxes": "logit_maxes",
             "bndiffsq": "bndiff2", "bnvarinverse": "bnvar_inv"}
_NORMALIZED = {re.sub(r"[^a-z0-9]", "", n.lower()): n for n in LECTURE_TENSORS if n != "loss"}


@dataclass(frozen=True)
class Statement:
    """One top-level statement (``with torch.no_grad():`` blocks are opened up)."""

    index: int
    node: ast.stmt = field(repr=False, compare=False)
    cell: str | None             # "cell 7", "In [3]", or None in a .py file
    line: int                    # first line, inside its cell (or file)
    end_line: int
    file: str                    # the file name tracebacks show
    code: str                    # the statement alone, dedented
    binds: frozenset[str]        # names bound afresh (the value does not read them)
    assigns: frozenset[str]      # names bound or changed in place
    reads: frozenset[str]        # names read from outside the statement
    kind: str                    # "plain" | "cmp" | "training"

    def where(self) -> str:
        lines = f"line {self.line}" if self.end_line == self.line else \
            f"lines {self.line}-{self.end_line}"
        return f"{self.cell}, {lines}" if self.cell else lines

    def first_line_text(self) -> str:
        text = self.code.strip().splitlines()[0] if self.code.strip() else ""
        return text if len(text) <= 70 else text[:67] + "..."


@dataclass(frozen=True)
class CmpCall:
    """A ``cmp(label, dvar, var)`` call, read without running it."""

    statement: int
    label: str | None        # the first argument, when a string
    variable: str | None     # the lecture tensor it is about
    dvar: str | None         # the student's gradient variable, when a plain name
    tensor_name: str | None  # the third argument, when a plain name


@dataclass(frozen=True)
class GradientSource:
    """Where one graded gradient comes from: a variable after a group of statements."""

    gradient: Gradient        # exercise 1, 2 or 3 entry of the catalog
    var: str                  # the student's variable
    steps: tuple[int, ...]    # statement indices; the value is read after the last one
    how: str                  # how the variable was recognised


@dataclass(frozen=True)
class BackwardSource:
    """Exercise 4 from a training loop: a backward() function made of its backward lines."""

    where: str
    code: str | None = None              # module text defining backward(...)
    params: tuple[str, ...] = ()
    reason: str | None = None            # why it cannot be graded


@dataclass(frozen=True)
class LectureProgram:
    """What to run for a lecture-style submission, and what to say about it."""

    statements: tuple[Statement, ...]
    run: tuple[int, ...]                       # statement indices to run, in order
    sources: tuple[GradientSource, ...]
    missing: dict[str, str]                    # gradient name -> what was looked for
    cmp_calls: tuple[CmpCall, ...]
    captures: frozenset[int]                   # statements whose cmp() values are kept
    aliases: dict[str, str]                    # the student's forward names -> lecture names
    renamed: dict[str, tuple[str, str]]        # student variable -> (gradient, where learnt)
    unresolved: dict[str, str]                 # name -> where it is defined but not run, and why
    backward: BackwardSource | None
    files: dict[str, str]                      # file name -> text, for tracebacks
    notes: tuple[str, ...]

    def statement(self, index: int) -> Statement:
        return self.statements[index]


# -- names ---------------------------------------------------------------------------------------

def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Subscript, ast.Attribute, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _target_names(target: ast.AST) -> list[tuple[str, bool]]:
    """(name, plain) for each name an assignment target binds (plain) or changes in place."""
    if isinstance(target, ast.Name):
        return [(target.id, True)]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [x for elt in target.elts for x in _target_names(elt)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    root = _root_name(target)
    return [(root, False)] if root else []


def _local_names(node: ast.AST) -> set[str]:
    """Names bound inside comprehensions, lambdas and nested functions of ``node``."""
    out: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.comprehension):
            out |= {n for n, _ in _target_names(sub.target)}
        elif isinstance(sub, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef)):
            a = sub.args
            out |= {p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)}
            out |= {p.arg for p in (a.vararg, a.kwarg) if p}
    return out


def _walk(node: ast.AST):
    """ast.walk that does not enter the bodies of nested functions, classes and lambdas."""
    todo = [node]
    while todo:
        sub = todo.pop()
        yield sub
        if sub is not node and isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                 ast.ClassDef, ast.Lambda)):
            continue
        todo.extend(ast.iter_child_nodes(sub))


def _function_reads(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> set[str]:
    """The globals a definition reads: loads in its body that it does not bind itself."""
    loads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    stores = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
              and isinstance(n.ctx, (ast.Store, ast.Del))}
    return loads - stores - _local_names(node)


def _analyse(node: ast.stmt) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(fresh binds, binds and in-place changes, outside reads) of one statement."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return frozenset({node.name}), frozenset({node.name}), frozenset(_function_reads(node))
    assigns: set[str] = set()
    binds: set[str] = set()
    loads: set[str] = set()
    for sub in _walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
            loads.add(sub.id)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            assigns.add(sub.id)
        elif isinstance(sub, ast.AugAssign):
            for name, _ in _target_names(sub.target):
                assigns.add(name)
                loads.add(name)
        elif isinstance(sub, (ast.Assign, ast.AnnAssign)):
            targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
            for t in targets:
                assigns |= {name for name, _ in _target_names(t)}
        elif isinstance(sub, ast.Call):
            f = sub.func
            if isinstance(f, ast.Attribute) and f.attr.endswith("_") and not f.attr.startswith("_"):
                root = _root_name(f.value)       # x.add_(...), dC.index_add_(...)
                if root:
                    assigns.add(root)
            for kw in sub.keywords:
                if kw.arg == "out":
                    root = _root_name(kw.value)
                    if root:
                        assigns.add(root)
        elif sub is not node and isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                   ast.ClassDef)):
            assigns.add(sub.name)
            loads |= _function_reads(sub)
        elif isinstance(sub, ast.Lambda):
            loads |= _function_reads_lambda(sub)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            assigns |= {(a.asname or a.name).split(".")[0] for a in sub.names if a.name != "*"}
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value_reads = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
        binds = {name for t in targets for name, plain in _target_names(t)
                 if plain and name not in value_reads}
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        binds = set(assigns)
    local = _local_names(node)
    # names bound inside a compound statement (loop variables) are its own, not outside reads
    inner = assigns if isinstance(node, (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With,
                                         ast.Try)) else set()
    reads = loads - local - (inner - _self_reads(node))
    return frozenset(binds), frozenset(assigns), frozenset(reads)


def _function_reads_lambda(node: ast.Lambda) -> set[str]:
    loads = {n.id for n in ast.walk(node.body) if isinstance(n, ast.Name)
             and isinstance(n.ctx, ast.Load)}
    return loads - _local_names(node)


def _self_reads(node: ast.stmt) -> set[str]:
    """Names a compound statement reads before it binds them (``dC[ix] += ...`` reads dC)."""
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.AugAssign):
            out |= {n for n, _ in _target_names(sub.target)}
        elif isinstance(sub, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
            out |= {n for t in targets for n, plain in _target_names(t) if not plain}
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) \
                and sub.func.attr.endswith("_"):
            root = _root_name(sub.func.value)
            if root:
                out.add(root)
    return out


def _calls(node: ast.AST, name: str) -> list[ast.Call]:
    return [c for c in ast.walk(node) if isinstance(c, ast.Call)
            and isinstance(c.func, ast.Name) and c.func.id == name]


def _is_training_loop(node: ast.stmt) -> bool:
    """A loop that runs a forward pass or updates parameters: the grader never runs it."""
    for loop in ast.walk(node):
        if not isinstance(loop, (ast.For, ast.AsyncFor, ast.While)):
            continue
        for sub in ast.walk(loop):
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and \
                    sub.func.attr in ("backward", "cross_entropy", "randint", "step", "zero_grad"):
                return True
            if isinstance(sub, (ast.Assign, ast.AugAssign)):
                targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                for t in targets:
                    if isinstance(t, ast.Attribute) and t.attr in ("data", "grad"):
                        return True
                    if isinstance(t, ast.Name) and t.id in ("loss", "logits"):
                        return True
    return False


def _assigned_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
    return names


def looks_like_lecture_style(tree: ast.Module) -> bool:
    """At least two of the lecture's gradient variables are assigned."""
    return len(_assigned_names(tree) & GRADIENT_VARIABLES) >= 2


def lecture_name(text: str) -> str | None:
    """The lecture tensor a label or variable name means: 'bn_mean' -> 'bnmeani'."""
    key = re.sub(r"[^a-z0-9]", "", text.lower())
    return _NORMALIZED.get(key) or _SYNONYMS.get(key)


# -- statements ----------------------------------------------------------------------------------

def _split_cells(code: str, *, name: str, cells: bool) -> list[tuple[str | None, str, str]]:
    """(cell label, file name for tracebacks, text) per cell; one entry for a .py file."""
    if not cells:
        return [(None, name, code)]
    out: list[tuple[str | None, str, str]] = []
    label: str | None = None
    buf: list[str] = []
    for line in code.splitlines():
        m = CELL_MARKER_RE.match(line)
        if m:
            if label is not None or any(x.strip() for x in buf):
                out.append((label, f"{name} [{label}]" if label else name, "\n".join(buf) + "\n"))
            label, buf = m.group("label"), []
        else:
            buf.append(line)
    if label is not None or any(x.strip() for x in buf):
        out.append((label, f"{name} [{label}]" if label else name, "\n".join(buf) + "\n"))
    return out


def _statement_source(lines: list[str], node: ast.stmt) -> str:
    """The statement's own text, dedented; ast.unparse when it shares a line with another."""
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []) or [])])
    end, col = node.end_lineno or node.lineno, node.col_offset
    first, last = lines[start - 1], lines[end - 1]
    tail = last[node.end_col_offset or len(last):].strip()
    if first[:col].strip() == "" and (not tail or tail.startswith("#")):
        block = [ln[col:] if ln[:col].strip() == "" else ln for ln in lines[start - 1:end]]
        text = "\n".join(block)
        try:
            ast.parse(text)
            return text
        except SyntaxError:
            pass
    return ast.unparse(node)


def _is_no_grad(node: ast.stmt) -> bool:
    if not isinstance(node, ast.With) or any(i.optional_vars for i in node.items):
        return False
    for item in node.items:
        c = item.context_expr
        f = c.func if isinstance(c, ast.Call) else c
        if not (isinstance(f, ast.Attribute) and f.attr in _NO_GRAD):
            return False
    return True


def _flatten(body: list[ast.stmt]) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for node in body:
        if _is_no_grad(node) and not _is_training_loop(node):
            out.extend(_flatten(node.body))
        else:
            out.append(node)
    return out


def _read_statements(code: str, *, name: str, cells: bool
                     ) -> tuple[list[Statement], dict[str, str], dict[str, list[str]]]:
    statements: list[Statement] = []
    files: dict[str, str] = {}
    cell_lines: dict[str, list[str]] = {}
    for label, file, text in _split_cells(code, name=name, cells=cells):
        files[file] = text
        lines = text.splitlines()
        cell_lines[file] = lines
        try:
            tree = ast.parse(text)
        except SyntaxError:      # the loader already refused or left out such cells
            continue
        for node in _flatten(tree.body):
            binds, assigns, reads = _analyse(node)
            kind = "training" if _is_training_loop(node) else \
                "cmp" if _calls(node, "cmp") else "plain"
            statements.append(Statement(
                index=len(statements), node=node, cell=label,
                line=min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []) or [])]),
                end_line=node.end_lineno or node.lineno, file=file,
                code=_statement_source(lines, node), binds=binds, assigns=assigns, reads=reads,
                kind=kind))
    return statements, files, cell_lines


# -- cmp(label, dvar, var) -----------------------------------------------------------------------

def _read_cmp_calls(statements: list[Statement]) -> list[CmpCall]:
    out = []
    for st in statements:
        if st.kind != "cmp":
            continue
        for call in _calls(st.node, "cmp"):
            args = list(call.args)
            label = args[0].value if args and isinstance(args[0], ast.Constant) \
                and isinstance(args[0].value, str) else None
            dvar = args[1].id if len(args) > 1 and isinstance(args[1], ast.Name) else None
            tname = args[2].id if len(args) > 2 and isinstance(args[2], ast.Name) else None
            variable = None
            for candidate in (label, tname, dvar[1:] if dvar and dvar.startswith("d") else None):
                if candidate and (candidate in LECTURE_TENSORS or lecture_name(candidate)):
                    variable = candidate if candidate in LECTURE_TENSORS else lecture_name(candidate)
                    break
            out.append(CmpCall(st.index, label, variable, dvar, tname))
    return out


# -- groups --------------------------------------------------------------------------------------

def _groups(statements: list[Statement], var: str, upto: int | None = None) -> list[list[int]]:
    """The statements computing ``var``: a fresh bind starts a group, in-place changes continue it."""
    groups: list[list[int]] = []
    for st in statements:
        if upto is not None and st.index >= upto:
            break
        if st.kind == "training" or var not in st.assigns:
            continue
        if var in st.binds or not groups:
            groups.append([st.index])
        else:
            groups[-1].append(st.index)
    return groups


@dataclass
class _Reading:
    """Work in progress of read_lecture_code."""

    statements: list[Statement]
    candidates: dict[str, list[str]]                 # gradient -> student variables
    renamed: dict[str, tuple[str, str]]
    notes: list[str] = field(default_factory=list)

    def reads_any(self, group: list[int], gradients: tuple[str, ...]) -> bool:
        names = {v for g in gradients for v in self.candidates.get(g, [g])}
        return any(self.statements[i].reads & names for i in group)

    def first_assignment(self, gradients: tuple[str, ...]) -> int | None:
        names = {v for g in gradients for v in self.candidates.get(g, [g])}
        return next((st.index for st in self.statements
                     if st.kind != "training" and st.assigns & names), None)


def _pick_sources(r: _Reading) -> tuple[list[GradientSource], dict[str, str]]:
    sources: list[GradientSource] = []
    missing: dict[str, str] = {}
    fused: list[GradientSource] = []
    for gradient in EXERCISE1:
        groups: list[tuple[list[int], str]] = sorted(
            ((grp, var) for var in r.candidates[gradient.name]
             for grp in _groups(r.statements, var)), key=lambda x: x[0][0])
        how_of = {var: r.renamed[var][1] if var in r.renamed else "by its lecture name"
                  for var in r.candidates[gradient.name]}
        if not groups:
            continue
        if gradient.name not in _FUSED:
            grp, var = groups[-1]
            sources.append(GradientSource(gradient, var, tuple(grp), how_of[var]))
            continue
        chunked = [g for g in groups if r.reads_any(g[0], _CHUNKED_UPSTREAM[gradient.name])]
        one_expression = [g for g in groups if g not in chunked]
        if not chunked and one_expression:
            # no chunked form: one that comes before exercise 1's next steps is exercise 1's
            successor = r.first_assignment(_SUCCESSORS[gradient.name])
            if successor is not None:
                chunked = [g for g in one_expression if g[0][0] < successor]
                one_expression = [g for g in one_expression if g[0][0] > successor]
        if chunked:
            grp, var = chunked[-1]
            sources.append(GradientSource(gradient, var, tuple(grp), how_of[var]))
        if one_expression:
            grp, var = one_expression[-1]
            fused.append(GradientSource(_FUSED[gradient.name], var, tuple(grp), how_of[var]))
            if chunked:
                r.notes.append(
                    f"{var} is assigned twice: exercise 1's at {r.statements[chunked[-1][0][0]].where()}"
                    f", exercise {_FUSED[gradient.name].exercise[2:]}'s (one expression) at "
                    f"{r.statements[grp[0]].where()}")
    for gradient in (*EXERCISE1, EXERCISE2, EXERCISE3):
        if not any(s.gradient is gradient for s in (*sources, *fused)):
            if gradient.exercise == "ex1":
                names = r.candidates[gradient.name]
                missing[gradient.name] = (f"no assignment to {' or '.join(names)} found "
                                          f"(looked for `{names[0]} = ...` at the top level of a "
                                          "cell, outside training loops)")
            else:
                base = "dlogits" if gradient is EXERCISE2 else "dhprebn"
                missing[gradient.name] = (
                    f"no one-expression {base} found (looked for a second `{base} = ...` that "
                    f"does not read {' or '.join(_CHUNKED_UPSTREAM[base])})")
    return sources + fused, missing


# -- dependencies --------------------------------------------------------------------------------

def _unsafe_reason(st: Statement) -> str | None:
    if st.kind == "training":
        return "a training loop"
    touched = st.reads & _DATA_NAMES
    if touched:
        return f"it reads {sorted(touched)[0]} (data loading, files or plots)"
    overwritten = st.assigns & (PROVIDED_NAMES - {"cmp"})
    if overwritten:
        return f"it also assigns {sorted(overwritten)[0]}, which the grader provides"
    return None


def _resolve(statements: list[Statement], run: set[int], provided: frozenset[str]
             ) -> dict[str, str]:
    """Add the statements the ones in ``run`` need; return the names left undefined, and why."""
    unresolved: dict[str, str] = {}
    work = sorted(run)
    while work:
        i = work.pop(0)
        for name in sorted(statements[i].reads):
            if name in provided or name in _BUILTINS:
                continue
            earlier = [st for st in statements[:i] if name in st.assigns]
            if not earlier:
                continue
            start = max((k for k, st in enumerate(earlier) if name in st.binds), default=0)
            chain = earlier[start:]
            if all(st.index in run for st in chain):
                continue
            reasons = [(st, _unsafe_reason(st)) for st in chain if st.index not in run]
            bad = next(((st, why) for st, why in reasons if why), None)
            if bad:
                unresolved[name] = f"{bad[0].where()}, which is not run: {bad[1]}"
                continue
            for st, _ in reasons:
                run.add(st.index)
                work.append(st.index)
            work.sort()
    return unresolved


# -- exercise 4 ----------------------------------------------------------------------------------

def _loops(node: ast.AST) -> list[ast.For | ast.While]:
    return [n for n in ast.walk(node) if isinstance(n, (ast.For, ast.AsyncFor, ast.While))]


def _ex4_body(loop: ast.stmt, tracked: set[str]) -> list[ast.stmt] | None:
    """The loop's statements when it computes gradients: two of the lecture's, or a
    ``grads = [...]`` list of seven (whatever the names)."""
    body = _flatten(loop.body)   # type: ignore[attr-defined]
    count = sum(1 for node in body if _analyse(node)[1] & tracked)
    return body if count >= 2 or any(_grads_list(node) is not None for node in body) else None


def _grads_list(node: ast.stmt) -> list[ast.expr] | None:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
            isinstance(node.targets[0], ast.Name) and node.targets[0].id == "grads" and \
            isinstance(node.value, (ast.List, ast.Tuple)):
        return list(node.value.elts)
    return None


def _backward_source(statements: list[Statement], cell_lines: dict[str, list[str]],
                     tracked: set[str], candidates: dict[str, list[str]]) -> BackwardSource | None:
    for st in reversed(statements):
        if st.kind != "training":
            continue
        for loop in _loops(st.node):
            body = _ex4_body(loop, tracked)
            if body is not None:
                return _build_backward(statements, st, body, cell_lines[st.file], tracked,
                                       candidates)
    return None


def _build_backward(statements: list[Statement], training: Statement, body: list[ast.stmt],
                    lines: list[str], tracked: set[str], candidates: dict[str, list[str]]
                    ) -> BackwardSource:
    info = [(node, *_analyse(node)) for node in body]
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
                if name in inputs or name in _BUILTINS:
                    continue
                earlier = [j for j in range(k) if name in info[j][2]]
                if earlier and any(j in selected for j in earlier):
                    continue
                if earlier and not (info[earlier[-1]][2] & EXERCISE4_INPUT_NAMES) and \
                        not info[earlier[-1]][3] & _DATA_NAMES:
                    selected.add(earlier[-1])
                    changed = True
                elif name in top_defs:
                    prelude[top_defs[name].index] = top_defs[name]
                else:
                    unknown.add(name)
    chosen = [info[k] for k in sorted(selected)]
    first = chosen[0][0].lineno
    last = max(node.end_lineno or node.lineno for node, *_ in chosen)
    cell = f"{training.cell}, " if training.cell else ""
    where = f"{cell}lines {first}-{last} (inside the training loop)"
    if unknown:
        return BackwardSource(where, reason=(
            f"your backward lines use {', '.join(sorted(unknown))}, which the grader cannot provide "
            f"(it passes {', '.join(sorted(EXERCISE4_INPUT_NAMES))})"))
    returned = _returned_gradients(statements, training, chosen, candidates, lines)
    if isinstance(returned, str):
        return BackwardSource(where, reason=returned)
    bound: set[str] = set()
    free: list[str] = []
    for _, _, assigns, reads in chosen:
        free += [n for n in sorted(reads) if n not in bound and n not in free]
        bound |= assigns
    scalars = {"batch_size": ("n", "n"), "vocab_size": ("logits", "logits.shape[1]"),
               "n_hidden": ("h", "h.shape[1]"), "n_embd": ("C", "C.shape[1]"),
               "block_size": ("Xb", "Xb.shape[1]")}
    prologue = [f"{s} = {scalars[s][1]}" for s in free if s in scalars]
    params = sorted({n for n in free if n in EXERCISE4_INPUT_NAMES}
                    | {scalars[s][0] for s in free if s in scalars})
    body_text = [_statement_source(lines, node) for node, *_ in chosen]
    code = _backward_module(prelude, params, where, prologue, body_text, returned)
    try:
        ast.parse(code)
    except SyntaxError:
        code = _backward_module(prelude, params, where, prologue,
                                [ast.unparse(node) for node, *_ in chosen], returned)
    return BackwardSource(where, code=code, params=tuple(params))


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
                        chosen: list[tuple[ast.stmt, frozenset[str], frozenset[str], frozenset[str]]],
                        candidates: dict[str, list[str]], lines: list[str]) -> list[str] | str:
    """Expressions for [dC, dW1, db1, dW2, db2, dbngain, dbnbias], or why they are unknown."""
    order = list(PARAMETER_NAMES)
    for st in statements[:training.index]:
        node = st.node
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name) and node.targets[0].id == "parameters" and \
                isinstance(node.value, (ast.List, ast.Tuple)):
            names = [e.id if isinstance(e, ast.Name) else None for e in node.value.elts]
            if sorted(n or "" for n in names) == sorted(PARAMETER_NAMES):
                order = [n for n in names if n]
    for node, *_ in reversed(chosen):
        elts = _grads_list(node)
        if elts is not None:
            if len(elts) != len(PARAMETER_NAMES):
                return (f"grads has {len(elts)} entries, expected {len(PARAMETER_NAMES)}: "
                        "[dC, dW1, db1, dW2, db2, dbngain, dbnbias]")
            by_param = {p: ast.unparse(e) for p, e in zip(order, elts)}
            return [by_param[p] for p in PARAMETER_NAMES]
    assigned = {n for _, _, assigns, _ in chosen for n in assigns}
    out = []
    for name in EX4_ORDER:
        var = next((v for v in candidates.get(name, [name]) if v in assigned), None)
        if var is None:
            return (f"no {name} among your backward lines, and no `grads = [dC, dW1, db1, dW2, "
                    "db2, dbngain, dbnbias]` to say which variables they are")
        out.append(var)
    return out


# -- the program ---------------------------------------------------------------------------------

def read_lecture_code(code: str, *, name: str, cells: bool) -> LectureProgram:
    """Find the exercise code of a lecture-style file (``cells``: joined notebook cells)."""
    statements, files, cell_lines = _read_statements(code, name=name, cells=cells)
    cmp_calls = _read_cmp_calls(statements)
    aliases: dict[str, str] = {}
    candidates: dict[str, list[str]] = {g.name: [g.name] for g in EXERCISE1}
    renamed: dict[str, tuple[str, str]] = {}
    notes: list[str] = []
    for call in cmp_calls:
        if not call.variable:
            continue
        where = statements[call.statement].where()
        gradient = f"d{call.variable}"
        if call.tensor_name and call.tensor_name not in PROVIDED_NAMES:
            aliases.setdefault(call.tensor_name, call.variable)
        if call.dvar and call.dvar != gradient and call.dvar not in EX1_BY_NAME:
            previous = renamed.get(call.dvar)
            if previous and previous[0] != gradient:
                notes.append(f"{call.dvar} is compared with both {previous[0][1:]} and "
                             f"{call.variable} by your cmp() calls: graded as {previous[0]}")
                continue
            if gradient in candidates and call.dvar not in candidates[gradient]:
                candidates[gradient].append(call.dvar)
                label = repr(call.label) if call.label is not None else "..."
                renamed[call.dvar] = (gradient, f"from your cmp({label}, {call.dvar}, ...) at {where}")
    reading = _Reading(statements, candidates, renamed, notes)
    sources, missing = _pick_sources(reading)
    tracked = {v for vs in candidates.values() for v in vs}
    run = {i for s in sources for i in s.steps}
    run |= {st.index for st in statements if st.kind != "training" and st.assigns & tracked}
    run |= {st.index for st in statements if st.kind == "cmp"}
    provided = PROVIDED_NAMES | frozenset(aliases)
    unresolved = _resolve(statements, run, provided)
    captures = frozenset(c.statement for c in cmp_calls if c.dvar is None or c.variable is None)
    backward = _backward_source(statements, cell_lines, tracked | {"grads"}, candidates)
    return LectureProgram(
        statements=tuple(statements), run=tuple(sorted(run)), sources=tuple(sources),
        missing=missing, cmp_calls=tuple(cmp_calls), captures=captures, aliases=aliases,
        renamed=renamed, unresolved=unresolved, backward=backward, files=files,
        notes=tuple(reading.notes))


def describe_selection(program: LectureProgram) -> list[str]:
    """Which cells and lines were run, and which were not."""
    run = set(program.run)
    by_cell: dict[str | None, list[Statement]] = {}
    for st in program.statements:
        by_cell.setdefault(st.cell, []).append(st)
    ran, not_run = [], []
    for cell, sts in by_cell.items():
        spans = [(st.line, st.end_line) for st in sts if st.index in run]
        if spans:
            text = _ranges(spans)
            ran.append(f"{cell} ({text})" if cell else text)
        elif cell:
            not_run.append(cell)
    notes = []
    if ran:
        notes.append("ran only the exercise code, with the grader's forward tensors and "
                     f"parameters: {', '.join(ran)}")
    skipped = len(program.statements) - len(run)
    if not_run:
        notes.append(f"not run: {_cells_text(not_run)} (data loading, the forward pass, plots, "
                     "training and the rest)")
    elif skipped and None in by_cell:
        notes.append(f"not run: the other {skipped} statements (data loading, the forward pass, "
                     "plots, training and the rest)")
    return notes


def _ranges(spans: list[tuple[int, int]]) -> str:
    merged: list[list[int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1] + 2:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in merged]
    return ("line " if len(parts) == 1 and "-" not in parts[0] else "lines ") + ", ".join(parts)


def _cells_text(labels: list[str]) -> str:
    numbers = [int(m.group(1)) for lab in labels if (m := re.fullmatch(r"cell (\d+)", lab))]
    if len(numbers) != len(labels):
        return ", ".join(labels)
    spans: list[list[int]] = []
    for k in numbers:
        if spans and k == spans[-1][1] + 1:
            spans[-1][1] = k
        else:
            spans.append([k, k])
    word = "cells" if len(numbers) > 1 else "cell"
    return f"{word} " + ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)
