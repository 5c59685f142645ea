"""Reading lecture-style code, never running it: which statements are the exercise code.

Lecture-style code assigns the gradients one after another (``dlogprobs = ...``), as the lecture
notebook does. From a parsed file or notebook (grader.submissions.statements) this module finds

* the statements that compute each gradient, grouped (``dcounts = ...`` then ``dcounts += ...``),
  and which group is exercise 1's ``dlogits``/``dhprebn`` and which exercise 2's/3's fused one;
* the student's own names for the lecture's tensors, sizes and gradients, and their checker,
  from their forward pass and their checker's calls (grader.submissions.names, cmp_calls);
* what those statements need that the grader does not provide (helpers, imports), but never data
  loading, plots or training loops;
* exercise 4's backward lines inside a training loop, as the text of a ``backward()`` function
  (grader.submissions.training_backward).

The result, a ``LectureProgram``, says what to run and why; grader.judge.lecture_style runs it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace

from ..lecture.catalog import EXERCISE1, EXERCISE2, EXERCISE3, Gradient
from .cmp_calls import read_cmp_calls, student_names
from .lecture_names import BUILTIN_NAMES, DATA_NAMES, GRADIENT_VARIABLES, PROVIDED_NAMES
from .names import Binding, resolve_names
from .statements import Statement, calls_to, read_statements
from .training_backward import BackwardSource, backward_from_training_loop
from .kept import KeptByNode

__all__ = ["GradientSource", "LectureProgram", "looks_like_lecture_style", "read_lecture_code"]

# exercise 1's dlogits / dhprebn read these; exercise 2's / 3's fused forms do not
_CHUNKED_UPSTREAM = {"dlogits": ("dnorm_logits", "dlogit_maxes"), "dhprebn": ("dbndiff", "dbnmeani")}
# gradients exercise 1 computes right after dlogits / dhprebn
_SUCCESSORS = {"dlogits": ("dh", "dW2", "db2"), "dhprebn": ("dembcat", "dW1", "db1")}
_FUSED = {"dlogits": EXERCISE2, "dhprebn": EXERCISE3}
# calls that draw the parameters or a batch: never run again for the student
_RANDOM = frozenset({"randn", "rand", "randint", "randperm", "manual_seed", "Generator",
                     "normal_", "uniform_"})

# statement indices computing one variable, and the variable
_Group = tuple[list[int], str]


@dataclass(frozen=True)
class GradientSource:
    """Where one graded gradient comes from: a variable after a group of statements."""

    gradient: Gradient        # exercise 1, 2 or 3 entry of the catalog
    var: str                  # the student's variable
    steps: tuple[int, ...]    # statement indices; the value is read after the last one
    how: str                  # how the variable was recognised


@dataclass(frozen=True)
class LectureProgram:
    """What to run for a lecture-style submission, and what to say about it."""

    statements: tuple[Statement, ...]
    run: tuple[int, ...]                       # statement indices to run, in order
    sources: tuple[GradientSource, ...]
    missing: dict[str, str]                    # gradient name -> what was looked for
    captures: frozenset[int]                   # statements whose cmp() values are kept
    aliases: dict[str, str]                    # the student's forward names -> lecture names
    sizes: dict[str, str]                      # the student's size names -> size roles ("n", ...)
    checker: str                               # the student's cmp(), whatever its name
    bindings: tuple[Binding, ...]              # every name resolved, and where it was learnt
    renamed: dict[str, tuple[str, str]]        # student variable -> (gradient, where learnt)
    unresolved: dict[str, str]                 # name -> where it is defined but not run, and why
    backward: BackwardSource | None
    files: dict[str, str]                      # file name -> text, for tracebacks
    notes: tuple[str, ...]

    def statement(self, index: int) -> Statement:
        return self.statements[index]


def looks_like_lecture_style(tree: ast.Module, *,
                             cell_trees: tuple[ast.Module, ...] | None = None) -> bool:
    """At least two of the lecture's gradient variables are assigned. ``cell_trees``: the
    notebook cells ``tree`` joins, whose names are kept per (shared) cell tree."""
    if cell_trees is None:
        names = _assigned_names(tree)
    else:
        names = set().union(*(_assigned_names_kept(cell) for cell in cell_trees))
    return len(names & GRADIENT_VARIABLES) >= 2


_ASSIGNED: KeptByNode[frozenset[str]] = KeptByNode(4096)


def _assigned_names_kept(tree: ast.Module) -> frozenset[str]:
    return _ASSIGNED.of(tree, lambda: frozenset(_assigned_names(tree)))


def _assigned_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names |= {sub.id for sub in ast.walk(t) if isinstance(sub, ast.Name)}
    return names


def read_lecture_code(code: str, *, name: str, cells: bool) -> LectureProgram:
    """Find the exercise code of a lecture-style file (``cells``: joined notebook cells)."""
    statements, files, file_lines = read_statements(code, name=name, cells=cells)
    resolved = resolve_names([(st.node, st.where()) for st in statements])
    checker = resolved.checker or "cmp"
    if checker != "cmp":
        statements = [replace(st, kind="cmp") if st.kind == "plain" and calls_to(st.node, checker)
                      else st for st in statements]
    cmp_calls = read_cmp_calls(statements, checker=checker, aliases=resolved.tensors)
    names = student_names(statements, cmp_calls, resolved)
    reading = _Reading(statements, names.candidates, names.renamed, list(names.notes))
    sources, missing = _pick_sources(reading)
    tracked = {v for vs in names.candidates.values() for v in vs}
    # every assignment to a gradient variable outside training loops (the sources' steps among
    # them; the others may feed later steps), and every checker call
    run = {st.index for st in statements
           if st.kind == "cmp" or st.kind != "training" and st.assigns & tracked}
    provided = PROVIDED_NAMES | frozenset(names.aliases) | frozenset(resolved.sizes) | {checker}
    unresolved = _add_dependencies(statements, run, provided, checker=checker)
    captures = frozenset(c.statement for c in cmp_calls if c.dvar is None or c.variable is None)
    backward = backward_from_training_loop(statements, file_lines, tracked | {"grads"},
                                           names.candidates, aliases=names.aliases,
                                           sizes=resolved.sizes)
    return LectureProgram(
        statements=tuple(statements), run=tuple(sorted(run)), sources=tuple(sources),
        missing=missing, captures=captures, aliases=names.aliases, sizes=dict(resolved.sizes),
        checker=checker, bindings=resolved.bindings, renamed=names.renamed,
        unresolved=unresolved, backward=backward, files=files, notes=tuple(reading.notes))


# -- which statements compute each gradient -------------------------------------------------------

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

    def groups(self, gradient: Gradient) -> list[_Group]:
        """Each group of statements computing one of the gradient's variables, in order: a
        fresh bind starts a group, in-place changes continue it."""
        found: list[_Group] = []
        for var in self.candidates[gradient.name]:
            groups: list[list[int]] = []
            for st in self.statements:
                if st.kind == "training" or var not in st.assigns:
                    continue
                if var in st.binds or not groups:
                    groups.append([st.index])
                else:
                    groups[-1].append(st.index)
            found += [(grp, var) for grp in groups]
        return sorted(found, key=lambda x: x[0][0])

    def how(self, var: str) -> str:
        return self.renamed[var][1] if var in self.renamed else "by its lecture name"


def _pick_sources(r: _Reading) -> tuple[list[GradientSource], dict[str, str]]:
    """The last group of each exercise-1 gradient; for dlogits and dhprebn, the last chunked
    one for exercise 1 and the last one-expression one for exercise 2 or 3."""
    sources: list[GradientSource] = []
    fused: list[GradientSource] = []
    for gradient in EXERCISE1:
        groups = r.groups(gradient)
        if not groups:
            continue
        if gradient.name not in _FUSED:
            grp, var = groups[-1]
            sources.append(GradientSource(gradient, var, tuple(grp), r.how(var)))
            continue
        chunked, one_expression = _chunked_and_one_expression(r, gradient.name, groups)
        if chunked:
            grp, var = chunked[-1]
            sources.append(GradientSource(gradient, var, tuple(grp), r.how(var)))
        if one_expression:
            grp, var = one_expression[-1]
            fused.append(GradientSource(_FUSED[gradient.name], var, tuple(grp), r.how(var)))
            if chunked:
                r.notes.append(
                    f"{var} is assigned twice: exercise 1's at {r.statements[chunked[-1][0][0]].where()}"
                    f", exercise {_FUSED[gradient.name].exercise[2:]}'s (one expression) at "
                    f"{r.statements[grp[0]].where()}")
    found = sources + fused
    return found, _missing(r, found)


def _chunked_and_one_expression(r: _Reading, name: str, groups: list[_Group]
                                ) -> tuple[list[_Group], list[_Group]]:
    """dlogits / dhprebn groups: those that read exercise 1's upstream steps are exercise 1's;
    without any, one that comes before exercise 1's next steps is exercise 1's."""
    chunked = [g for g in groups if r.reads_any(g[0], _CHUNKED_UPSTREAM[name])]
    one_expression = [g for g in groups if g not in chunked]
    if not chunked and one_expression:
        successor = r.first_assignment(_SUCCESSORS[name])
        if successor is not None:
            chunked = [g for g in one_expression if g[0][0] < successor]
            one_expression = [g for g in one_expression if g[0][0] > successor]
    return chunked, one_expression


def _missing(r: _Reading, found: list[GradientSource]) -> dict[str, str]:
    """Gradient name -> what was looked for, for each gradient of exercises 1-3 not found."""
    missing: dict[str, str] = {}
    for gradient in (*EXERCISE1, EXERCISE2, EXERCISE3):
        if any(s.gradient is gradient for s in found):
            continue
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
    return missing


# -- what those statements need ------------------------------------------------------------------

def _add_dependencies(statements: list[Statement], run: set[int], provided: frozenset[str], *,
                      checker: str) -> dict[str, str]:
    """Add the statements the ones in ``run`` need; return the names left undefined, and why."""
    unresolved: dict[str, str] = {}
    work = sorted(run)
    while work:
        i = work.pop(0)
        for name in sorted(statements[i].reads):
            if name in provided or name in BUILTIN_NAMES:
                continue
            earlier = [st for st in statements[:i] if name in st.assigns]
            if not earlier:
                continue
            start = max((k for k, st in enumerate(earlier) if name in st.binds), default=0)
            chain = earlier[start:]
            if all(st.index in run for st in chain):
                continue
            reasons = [(st, _unsafe_reason(st, provided - {checker})) for st in chain
                       if st.index not in run]
            bad = next(((st, why) for st, why in reasons if why), None)
            if bad:
                unresolved[name] = f"{bad[0].where()}, which is not run: {bad[1]}"
                continue
            for st, _ in reasons:
                run.add(st.index)
                work.append(st.index)
            work.sort()
    return unresolved


def _unsafe_reason(st: Statement, provided: frozenset[str]) -> str | None:
    """Why a statement may not run as a dependency of the exercise code; None when it may.
    ``provided``: the names the grader binds (the lecture's, and the student's own for them)."""
    if st.kind == "training":
        return "a training loop"
    touched = st.reads & DATA_NAMES
    if touched:
        return f"it reads {sorted(touched)[0]} (data loading, files or plots)"
    overwritten = st.assigns & provided
    if overwritten:
        return f"it also assigns {sorted(overwritten)[0]}, which the grader provides"
    if any(call.func.attr in _RANDOM for call in ast.walk(st.node) if isinstance(call, ast.Call)
           and isinstance(call.func, ast.Attribute)):
        return ("it draws random numbers (an initialisation or a batch), where the grader "
                "provides its own tensors")
    return None
