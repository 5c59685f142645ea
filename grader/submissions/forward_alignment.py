"""The student's forward pass aligned with the lecture's, without running it: which of their
names is which of the lecture's tensors, parameters, data and sizes.

The loss statement is found, then each tensor it reads is followed back to the statement that
computes it, and each statement is matched against the lecture's by the operations it performs
(``emb = C[Xb]`` matches ``embeddings = C[X_batch]``, binding both names). A name is bound where
it is *used*, so a tensor computed in another way (``hprebn.mean(0, keepdim=True)`` for the
lecture's ``1/n*hprebn.sum(0, keepdim=True)``) is still known. The parameters' initialisation
gives the sizes, by the role they play in the shapes (``torch.randn((vocab_size, EMB))``: EMB is
n_embd), and the batch's indices the batch size.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

from ..lecture.names import FORWARD_NAMES, PARAMETER_NAMES
from .expression_match import (FIXED_NAMES, GRADIENT_NAMES, TENSOR_NAMES, Env,
                               canonical, pattern, unify)
from .kept import KeptByNode

__all__ = ["Alignment", "Program", "align_forward"]


# the lecture's forward pass, each tensor with the forms students write for it (canonical form:
# see _canonical); the first is the lecture's own
_FORWARD: dict[str, tuple[str, ...]] = {
    "emb": ("C[Xb]",),
    "embcat": ("emb.view(emb.shape[0], -1)", "emb.view(n, -1)", "emb.view(-1, n_embd * block_size)",
               "emb.view(n, n_embd * block_size)", "emb.view(emb.shape[0], n_embd * block_size)",
               "emb.flatten(1)", "emb.view(len(emb), -1)"),
    "hprebn": ("embcat @ W1 + b1", "embcat @ W1"),
    "bnmeani": ("1 / n * hprebn.sum(0, keepdim=True)", "hprebn.mean(0, keepdim=True)",
                "hprebn.sum(0, keepdim=True) / n"),
    "bndiff": ("hprebn - bnmeani",),
    "bndiff2": ("bndiff ** 2", "bndiff * bndiff", "torch.square(bndiff)", "bndiff.pow(2)"),
    "bnvar": ("1 / (n - 1) * bndiff2.sum(0, keepdim=True)", "bndiff2.sum(0, keepdim=True) / (n - 1)"),
    "bnvar_inv": ("(bnvar + 1e-05) ** -0.5", "1 / (bnvar + 1e-05) ** 0.5", "(bnvar + 1e-05).rsqrt()",
                  "torch.rsqrt(bnvar + 1e-05)", "1 / torch.sqrt(bnvar + 1e-05)"),
    "bnraw": ("bndiff * bnvar_inv",),
    "hpreact": ("bngain * bnraw + bnbias",),
    "h": ("hpreact.tanh()",),
    "logits": ("h @ W2 + b2",),
    "logit_maxes": ("logits.max(1, keepdim=True).values", "logits.max(1, keepdim=True)[0]"),
    "norm_logits": ("logits - logit_maxes",),
    "counts": ("norm_logits.exp()",),
    "counts_sum": ("counts.sum(1, keepdim=True)",),
    "counts_sum_inv": ("counts_sum ** -1", "1 / counts_sum"),
    "probs": ("counts * counts_sum_inv", "counts / counts_sum"),
    "logprobs": ("probs.log()",),
    "loss": ("-logprobs[range(n), Yb].mean()", "-logprobs[range(n), Yb].sum() / n"),
    "Xb": ("Xtr[ix]",),
    "Yb": ("Ytr[ix]",),
}
# a parameter's shape in its initialisation, as sizes
_PARAMETER_SHAPES: dict[str, tuple[str, ...]] = {
    "C": ("vocab_size", "n_embd"), "W1": ("n_embd * block_size", "n_hidden"),
    "b1": ("n_hidden",), "W2": ("n_hidden", "vocab_size"), "b2": ("vocab_size",),
    "bngain": ("1", "n_hidden"), "bnbias": ("1", "n_hidden"),
}
_BATCH_INDEX = "torch.randint(0, Xtr.shape[0], (n,))"
_PATTERNS = {name: tuple(pattern(t) for t in forms) for name, forms in _FORWARD.items()}
_SHAPES = {name: tuple(pattern(t) for t in dims) for name, dims in _PARAMETER_SHAPES.items()}


# -- the student's statements ----------------------------------------------------------------

def _assignments(node: ast.stmt) -> list[tuple[str, ast.expr]]:
    """(name, value) for ``name = value`` and ``a, b = x, y``; nothing for other statements."""
    if not isinstance(node, ast.Assign) or len(node.targets) != 1:
        return []
    target, value = node.targets[0], node.value
    if isinstance(target, ast.Name):
        return [(target.id, value)]
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
            and len(target.elts) == len(value.elts):
        return [(t.id, v) for t, v in zip(target.elts, value.elts) if isinstance(t, ast.Name)]
    return []


@dataclass(frozen=True)
class _Definition:
    """``name = raw`` at statement ``index``. The value in canonical form (a copy) is made when
    first read: most assignments of a notebook never are, and copying them all was half of
    resolving the names."""

    index: int
    raw: ast.expr = field(repr=False)
    is_canonical: bool = False      # ``raw`` is in canonical form already

    @cached_property
    def value(self) -> ast.expr:
        return self.raw if self.is_canonical else _canonical_of(self.raw)


# A notebook's statements are shared between the notebooks whose cells have the same text
# (grader.submissions.statements keeps them per process): what is read from one statement's tree
# alone is kept with it, by the node's identity (the node itself held, so the id stays its own)
_STORED: KeptByNode[frozenset[str]] = KeptByNode(8192)
_CANONICAL: KeptByNode[ast.expr] = KeptByNode(8192)


def _canonical_of(node: ast.expr) -> ast.expr:
    """``node`` in canonical form: a copy made once per node and shared (nothing changes it)."""
    return _CANONICAL.of(node, lambda: canonical(node))  # type: ignore[return-value]


def stored_names(node: ast.AST) -> frozenset[str]:
    """The names ``node`` stores anywhere in it (``x = ...``, ``for x in``, ``(a, b) = ...``)."""
    return _STORED.of(node, lambda: frozenset(
        sub.id for sub in ast.walk(node) if isinstance(sub, ast.Name)
        and isinstance(sub.ctx, ast.Store)))


class Program:
    """The student's top-level statements, with where each name is assigned."""

    def __init__(self, statements: Sequence[tuple[ast.stmt, str]]) -> None:
        self.nodes = [node for node, _ in statements]
        self.where = [where for _, where in statements]
        self.definitions: dict[str, list[_Definition]] = {}
        self.assigned: set[str] = set()
        for i, node in enumerate(self.nodes):
            for name, value in _assignments(node):
                self.definitions.setdefault(name, []).append(_Definition(i, value))
            self.assigned |= stored_names(node)

    def definition(self, name: str, before: int) -> _Definition | None:
        found = [d for d in self.definitions.get(name, []) if d.index < before]
        return found[-1] if found else None

    def is_tensor(self, name: str, before: int) -> bool:
        """Computed by an earlier statement, and not a plain number (``EPS = 1e-5``)."""
        found = self.definition(name, before)
        return found is not None and not isinstance(found.value, ast.Constant)

    def first_gradient(self) -> int:
        """The first statement that assigns a gradient (``dlogprobs = ...``, ``dX[...] = ...``)."""
        for i, node in enumerate(self.nodes):
            if isinstance(node, (ast.For, ast.While, ast.FunctionDef, ast.ClassDef)):
                continue
            if stored_names(node) & GRADIENT_NAMES:
                return i
        return len(self.nodes)


# -- the forward pass ------------------------------------------------------------------------

@dataclass
class Alignment:
    """What the forward pass says: lecture name -> the student's, student size name -> role,
    where each was learnt, and names read two ways."""

    tensors: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, str] = field(default_factory=dict)
    how: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)


def align_forward(program: Program) -> Alignment:
    """The student's names the forward pass before their first gradient resolves."""
    aligner = _Aligner(program)
    aligner.align()
    return Alignment(aligner.env.tensors, aligner.env.sizes, aligner.how, aligner.conflicts)


class _Aligner:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.env = Env({}, {})
        self.how: dict[str, str] = {}
        self.conflicts: list[str] = []

    def align(self) -> None:
        loss = self._loss_statement()
        if loss is None:
            return
        index, name, value = loss
        self._match("loss", name, _Definition(index, value, is_canonical=True))
        self._parameters(before=index)

    def _loss_statement(self) -> tuple[int, str, ast.expr] | None:
        end = self.program.first_gradient()
        for i in range(min(end, len(self.program.nodes)) - 1, -1, -1):
            for name, value in _assignments(self.program.nodes[i]):
                value = _canonical_of(value)
                if any(unify(form, value, Env({}, {})) for form in _PATTERNS["loss"]):
                    return i, name, value
        return None

    def _match(self, lecture: str, student: str, definition: _Definition) -> None:
        """Bind ``student`` to ``lecture`` (already known to match by use), then follow the
        tensors its definition reads."""
        self._bind_tensor(lecture, student, definition.index)
        if self.env.tensors.get(lecture) == student:    # said where it is computed, not used
            self.how[student] = f"your forward pass, {self.program.where[definition.index]}"
        before = set(self.env.tensors)
        for form in _PATTERNS.get(lecture, ()):
            trial = self.env.copy()
            if unify(form, definition.value, trial):
                self._take(trial, definition.index)
                break
        else:
            self._by_position(lecture, definition)
        for name in sorted(set(self.env.tensors) - before, key=_forward_order):
            theirs = self.env.tensors[name]
            found = self.program.definition(theirs, definition.index)
            if name in _PATTERNS and found is not None:
                self._match(name, theirs, found)

    def _bind_tensor(self, lecture: str, student: str, index: int) -> None:
        if self.env.tensors.get(lecture) == student:
            return
        if lecture in self.env.tensors or student in self.env.student_names():
            self.conflicts.append(f"{student} at {self.program.where[index]} also looks like "
                                  f"{lecture}: kept the first reading")
            return
        self.env.tensors[lecture] = student
        self.how[student] = f"your forward pass, {self.program.where[index]}"

    def _take(self, trial: Env, index: int) -> None:
        where = f"your forward pass, {self.program.where[index]}"
        for lecture, student in trial.tensors.items():
            if lecture not in self.env.tensors:
                self.how.setdefault(student, where)
        for student in trial.sizes:
            if student not in self.env.sizes:
                self.how.setdefault(student, where)
        self.env = trial

    def _by_position(self, lecture: str, definition: _Definition) -> None:
        """No form matched: when the lecture's statement reads one tensor not yet known and the
        student's reads one unknown name, they are the same (``embcat = emb.view(...)``)."""
        forms = _PATTERNS.get(lecture, ())
        if not forms:
            return
        theirs = [n for n in _names(forms[0]) if n in TENSOR_NAMES and n not in self.env.tensors]
        known = self.env.student_names() | FIXED_NAMES
        mine = [n for n in _names(definition.value) if n not in known
                and self.program.is_tensor(n, definition.index)
                and (n not in TENSOR_NAMES or [n] == theirs)]     # their emb is not our probs
        if len(theirs) == 1 and len(mine) == 1:
            self.env.tensors[theirs[0]] = mine[0]
            self.how[mine[0]] = (f"its place in your forward pass, "
                                 f"{self.program.where[definition.index]}")

    def _parameters(self, *, before: int) -> None:
        """Sizes from the parameters' initialisation and the batch's indices, by role."""
        for parameter in PARAMETER_NAMES:
            student = self.env.tensors.get(parameter)
            found = self.program.definition(student, before) if student else None
            dims = _initial_shape(found.value) if found else None
            if dims is None or len(dims) != len(_SHAPES[parameter]):
                continue
            for form, dim in zip(_SHAPES[parameter], dims):
                trial = self.env.copy()
                if unify(form, _canonical_of(dim), trial):
                    self._take(trial, found.index)  # type: ignore[union-attr]
        xb = self.env.tensors.get("Xb")
        found = self.program.definition(xb, before) if xb else None
        if found is not None and isinstance(found.value, ast.Subscript) and \
                isinstance(found.value.slice, ast.Name):
            ix = self.program.definition(found.value.slice.id, found.index)
            trial = self.env.copy()
            if ix is not None and unify(pattern(_BATCH_INDEX), ix.value, trial):
                self._take(trial, ix.index)
        self._size_aliases(before)

    def _size_aliases(self, before: int) -> None:
        """``n = batch_size``: both names are the batch size."""
        changed = True
        while changed:
            changed = False
            for name, definitions in self.program.definitions.items():
                last = [d for d in definitions if d.index < before]
                # canonical form keeps a plain name as it is (and makes none): the raw value
                # says, without the copy
                if not last or not isinstance(last[-1].raw, ast.Name):
                    continue
                other = last[-1].raw.id
                for a, b in ((name, other), (other, name)):
                    if a in self.env.sizes and b not in self.env.sizes and \
                            b not in self.env.tensors.values():
                        self.env.sizes[b] = self.env.sizes[a]
                        self.how[b] = f"{name} = {other}, {self.program.where[last[-1].index]}"
                        changed = True


def _forward_order(name: str) -> int:
    order = (*FORWARD_NAMES, *PARAMETER_NAMES, "Xb", "Yb")
    return order.index(name) if name in order else len(order)


def _names(node: ast.AST) -> list[str]:
    seen: list[str] = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id not in seen:
            seen.append(sub.id)
    return seen


def _initial_shape(value: ast.expr) -> list[ast.expr] | None:
    """The shape of the first tensor factory called in a parameter's initialisation."""
    for sub in ast.walk(value):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and \
                isinstance(sub.func.value, ast.Name) and sub.func.value.id == "torch" and \
                sub.func.attr in ("randn", "rand", "zeros", "ones", "empty") and sub.args:
            if len(sub.args) == 1 and isinstance(sub.args[0], (ast.Tuple, ast.List)):
                return list(sub.args[0].elts)
            return list(sub.args)
    return None
