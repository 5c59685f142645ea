"""Lecture-style source -> top-level statements, each with the names it binds, changes and reads.

A file is one run of statements; joined notebook cells are split back at their ``# %% [cell N]``
markers so that each statement knows its cell and its line inside it. ``with torch.no_grad():``
blocks are opened up (the lecture wraps its exercise code in them); training loops are marked,
as the grader never runs them.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .code_cells import CELL_MARKER_RE, first_line
from .kept import KeptByNode, KeptByText

__all__ = ["Statement", "bound_and_read", "calls_to", "open_no_grad", "read_statements",
           "statement_source"]

_NO_GRAD = ("no_grad", "inference_mode")
# a call of one of these, or an assignment to .data / .grad / loss / logits, makes a loop training
_TRAINING_CALLS = ("backward", "cross_entropy", "randint", "step", "zero_grad")
_TRAINING_ATTRIBUTES = ("data", "grad")
_TRAINING_NAMES = ("loss", "logits")
_COMPOUND = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.Try)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


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


def read_statements(code: str, *, name: str, cells: bool
                    ) -> tuple[list[Statement], dict[str, str], dict[str, list[str]]]:
    """The statements of ``code`` (``cells``: joined notebook cells), the text of each file
    tracebacks name, and its lines."""
    statements: list[Statement] = []
    files: dict[str, str] = {}
    file_lines: dict[str, list[str]] = {}
    for label, file, text in _split_cells(code, name=name, cells=cells):
        files[file] = text
        file_lines[file] = _source_lines(text)
        # a notebook's cells are mostly the lecture's own, the same in every notebook of a
        # class: their statements are read once per process (a .py file's text is its own)
        analysed = _cell_statements(text) if cells else _statements_of(text)
        for node, line, end_line, statement_code, binds, assigns, reads, kind in analysed:
            statements.append(Statement(
                index=len(statements), node=node, cell=label, line=line, end_line=end_line,
                file=file, code=statement_code, binds=binds, assigns=assigns, reads=reads,
                kind=kind))
    return statements, files, file_lines


# (node, first line, last line, code, binds, assigns, reads, kind): a Statement less where it is
_Analysed = tuple[ast.stmt, int, int, str, frozenset[str], frozenset[str], frozenset[str], str]
_CELLS: KeptByText[tuple[_Analysed, ...]] = KeptByText(2048)


def _cell_statements(text: str) -> tuple[_Analysed, ...]:
    """_statements_of(text), kept per process by the text (grader.submissions.kept)."""
    return _CELLS.of(text, _statements_of)


def _statements_of(text: str) -> tuple[_Analysed, ...]:
    lines = _source_lines(text)
    try:
        tree = ast.parse(text)
    except SyntaxError:      # the loader refuses such files and leaves out such cells
        return ()
    out: list[_Analysed] = []
    for node in open_no_grad(tree.body):
        # the statement's nodes listed once: ast.walk is what reading a notebook costs most
        nodes = list(ast.walk(node))
        binds, assigns, reads = bound_and_read(node, nodes)
        kind = "training" if _is_training_loop(node, nodes) else \
            "cmp" if _calls_in(nodes, "cmp") else "plain"
        out.append((node, first_line(node), node.end_lineno or node.lineno,
                    statement_source(lines, node), binds, assigns, reads, kind))
    return tuple(out)


_NEWLINE = re.compile(r"\r\n|\r|\n")


def _source_lines(text: str) -> list[str]:
    """``text``'s lines as Python numbers them: str.splitlines also breaks at form feeds,
    vertical tabs, U+2028 and others, which Python keeps inside a line."""
    lines = _NEWLINE.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def _split_cells(code: str, *, name: str, cells: bool) -> list[tuple[str | None, str, str]]:
    """(cell label, file name for tracebacks, text) per cell; one entry for a .py file."""
    if not cells:
        return [(None, name, code)]
    parts: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in _source_lines(code):
        m = CELL_MARKER_RE.match(line)
        if m:
            parts.append((m.group("label"), []))
        else:
            parts[-1][1].append(line)
    return [(label, f"{name} [{label}]" if label else name, "\n".join(lines) + "\n")
            for label, lines in parts if label is not None or any(x.strip() for x in lines)]


def open_no_grad(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements of ``body``, with those of ``with torch.no_grad():`` blocks and of a
    script's ``if __name__ == "__main__":`` block in place of the block (a training loop inside
    a no_grad block stays whole): a student's script may hold the whole exercise under its
    main guard."""
    out: list[ast.stmt] = []
    for node in body:
        if (_is_no_grad(node) and not _is_training_loop(node)) or _is_main_guard(node):
            out.extend(open_no_grad(node.body))   # type: ignore[attr-defined]
        else:
            out.append(node)
    return out


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either way round), with no else."""
    if not isinstance(node, ast.If) or node.orelse or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = {type(test.left): test.left, type(test.comparators[0]): test.comparators[0]}
    name, constant = sides.get(ast.Name), sides.get(ast.Constant)
    return isinstance(name, ast.Name) and name.id == "__name__" \
        and isinstance(constant, ast.Constant) and constant.value == "__main__"


def _is_no_grad(node: ast.stmt) -> bool:
    if not isinstance(node, ast.With) or any(i.optional_vars for i in node.items):
        return False
    for item in node.items:
        c = item.context_expr
        f = c.func if isinstance(c, ast.Call) else c
        if not (isinstance(f, ast.Attribute) and f.attr in _NO_GRAD):
            return False
    return True


def _is_training_loop(node: ast.stmt, nodes: list[ast.AST] | None = None) -> bool:
    """A loop that runs a forward pass or updates parameters: the grader never runs it.
    ``nodes``: ``list(ast.walk(node))``, where the caller has it."""
    for loop in ast.walk(node) if nodes is None else nodes:
        if not isinstance(loop, (ast.For, ast.AsyncFor, ast.While)):
            continue
        for sub in ast.walk(loop):
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and \
                    sub.func.attr in _TRAINING_CALLS:
                return True
            if isinstance(sub, (ast.Assign, ast.AugAssign)):
                targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                for t in targets:
                    if isinstance(t, ast.Attribute) and t.attr in _TRAINING_ATTRIBUTES:
                        return True
                    if isinstance(t, ast.Name) and t.id in _TRAINING_NAMES:
                        return True
    return False


def statement_source(lines: list[str], node: ast.stmt, *, checked: bool = True) -> str:
    """The statement's own text, dedented; ast.unparse when it shares a line with another.

    A dedented text is parsed to check it (ast.unparse where it does not parse), unless
    ``checked`` is off: the caller parses what it makes of it. A statement of a cell's top
    level is its own lines as they are, which parse: its cell did (the check was a notebook's
    most frequent parse)."""
    start = first_line(node)
    end, col = node.end_lineno or node.lineno, node.col_offset
    first, last = lines[start - 1], lines[end - 1]
    tail = last[node.end_col_offset or len(last):].strip()
    if first[:col].strip() == "" and (not tail or tail.startswith("#")):
        if col == 0:
            return "\n".join(lines[start - 1:end])
        block = [ln[col:] if ln[:col].strip() == "" else ln for ln in lines[start - 1:end]]
        text = "\n".join(block)
        if not checked:
            return text
        try:
            ast.parse(text)
            return text
        except SyntaxError:
            pass
    return ast.unparse(node)


def calls_to(node: ast.AST, name: str) -> list[ast.Call]:
    """The calls of the plain name ``name`` anywhere in ``node``."""
    return _calls_in(ast.walk(node), name)


def _calls_in(nodes: Iterable[ast.AST], name: str) -> list[ast.Call]:
    return [c for c in nodes if isinstance(c, ast.Call)
            and isinstance(c.func, ast.Name) and c.func.id == name]


# -- which names a statement binds, changes and reads ---------------------------------------------

_Names = tuple[frozenset[str], frozenset[str], frozenset[str]]
# kept per node (the node held, so that its id stays its own): a shared cell's training loop is
# read again for exercise 4 in every notebook (grader.submissions.training_backward)
_NAMES: KeptByNode[_Names] = KeptByNode(8192)


def bound_and_read(node: ast.stmt, nodes: list[ast.AST] | None = None) -> _Names:
    """(names bound afresh, names bound or changed in place, names read from outside) of one
    statement. ``x = f(y)`` binds x afresh; ``x = x + 1``, ``x += 1``, ``x[i] = 0``,
    ``x.add_(1)`` and ``f(out=x)`` change x; a loop's own variables are not read from outside.
    ``nodes``: ``list(ast.walk(node))``, where the caller has it (one walk instead of three)."""
    return _NAMES.of(node, lambda: _bound_and_read(node, nodes))


def _bound_and_read(node: ast.stmt, nodes: list[ast.AST] | None) -> _Names:
    if isinstance(node, _DEFINITIONS):
        return frozenset({node.name}), frozenset({node.name}), frozenset(_definition_reads(node))
    nodes = list(ast.walk(node)) if nodes is None else nodes
    nested = any(isinstance(sub, (*_DEFINITIONS, ast.Lambda)) for sub in nodes)
    # the sets below do not depend on the order of the walk: without nested definitions, the
    # walk outside them is every node
    assigns, loads = _assigned_and_loaded(_walk_outside_definitions(node) if nested else nodes)
    binds: set[str] = set()
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value_reads = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
        binds = {name for t in targets for name, plain in _target_names(t)
                 if plain and name not in value_reads}
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        binds = set(assigns)
    inner = assigns if isinstance(node, _COMPOUND) else set()
    reads = loads - _local_names(nodes) - (inner - _self_reads(node) if inner else set())
    return frozenset(binds), frozenset(assigns), frozenset(reads)


def _assigned_and_loaded(nodes: Iterable[ast.AST]) -> tuple[set[str], set[str]]:
    """The names a statement binds or changes, and those it loads, from its ``nodes`` outside
    nested definitions."""
    assigns: set[str] = set()
    loads: set[str] = set()
    for sub in nodes:
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
            assigns |= _changed_by_call(sub)
        elif isinstance(sub, _DEFINITIONS):
            assigns.add(sub.name)
            loads |= _definition_reads(sub)
        elif isinstance(sub, ast.Lambda):
            loads |= _lambda_reads(sub)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            assigns |= {(a.asname or a.name).split(".")[0] for a in sub.names if a.name != "*"}
    return assigns, loads


def _changed_by_call(call: ast.Call) -> set[str]:
    """What a call changes in place: ``x.add_(...)``, ``dC.index_add_(...)``, ``f(out=x)``."""
    changed: set[str] = set()
    f = call.func
    if isinstance(f, ast.Attribute) and f.attr.endswith("_") and not f.attr.startswith("_"):
        root = _root_name(f.value)
        if root:
            changed.add(root)
    for kw in call.keywords:
        if kw.arg == "out":
            root = _root_name(kw.value)
            if root:
                changed.add(root)
    return changed


def _self_reads(node: ast.stmt) -> set[str]:
    """Names a compound statement reads before it binds them (``dC[ix] += ...`` reads dC)."""
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.AugAssign):
            out |= {n for n, _ in _target_names(sub.target)}
        elif isinstance(sub, (ast.Assign, ast.AnnAssign)):
            targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
            out |= {n for t in targets for n, plain in _target_names(t) if not plain}
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) \
                and sub.func.attr.endswith("_"):
            root = _root_name(sub.func.value)
            if root:
                out.add(root)
    return out


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


def _local_names(nodes: Iterable[ast.AST]) -> set[str]:
    """Names bound inside comprehensions, lambdas and nested functions among ``nodes`` (a
    statement's, walked)."""
    out: set[str] = set()
    for sub in nodes:
        if isinstance(sub, ast.comprehension):
            out |= {n for n, _ in _target_names(sub.target)}
        elif isinstance(sub, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef)):
            a = sub.args
            out |= {p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)}
            out |= {p.arg for p in (a.vararg, a.kwarg) if p}
    return out


def _walk_outside_definitions(node: ast.AST) -> Iterator[ast.AST]:
    """ast.walk that does not enter the bodies of nested functions, classes and lambdas."""
    todo = [node]
    while todo:
        sub = todo.pop()
        yield sub
        if sub is not node and isinstance(sub, (*_DEFINITIONS, ast.Lambda)):
            continue
        todo.extend(ast.iter_child_nodes(sub))


def _definition_reads(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> set[str]:
    """The globals a definition reads: loads in its body that it does not bind itself."""
    loads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    stores = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
              and isinstance(n.ctx, (ast.Store, ast.Del))}
    return loads - stores - _local_names(ast.walk(node))


def _lambda_reads(node: ast.Lambda) -> set[str]:
    loads = {n.id for n in ast.walk(node.body) if isinstance(n, ast.Name)
             and isinstance(n.ctx, ast.Load)}
    return loads - _local_names(ast.walk(node))
