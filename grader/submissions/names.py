"""The student's own names for the lecture's tensors, sizes, gradients and checker, read from
their code without running it.

Students rename things: ``X_batch`` for ``Xb``, ``embeddings`` for ``emb``, ``gamma`` for
``bngain``, ``EMB_DIM`` for ``n_embd``, ``compare(...)`` for ``cmp(...)``. The grader runs their
exercise statements with its own tensors, so it must know which of its tensors each of their
names stands for. The names come from three places, in this order of precedence:

1. Their forward pass, aligned with the lecture's: the loss statement is found, then each tensor
   it reads is followed back to the statement that computes it, and each statement is matched
   against the lecture's by the operations it performs (``emb = C[Xb]`` matches
   ``embeddings = C[X_batch]``, binding both names). A name is bound where it is *used*, so a
   tensor computed in another way (``hprebn.mean(0, keepdim=True)`` for the lecture's
   ``1/n*hprebn.sum(0, keepdim=True)``) is still known. The parameters' initialisation gives the
   sizes, by the role they play in the shapes (``torch.randn((vocab_size, EMB))``: EMB is n_embd).
2. Their checker's calls: a function called as ``f('label', dvar, tensor)`` whatever its name;
   ``dvar`` is the gradient of the tensor it is checked against.
3. The label of such a call, when its tensor says nothing.

A name none of them resolves is left alone (and reported by the caller), never guessed.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass
from typing import Iterator, Sequence

from ..lecture.catalog import EXERCISE1
from ..lecture.names import FORWARD_NAMES, PARAMETER_NAMES

__all__ = ["Binding", "NameMap", "resolve_names"]

# sizes by their role; "batch_size" is the lecture's other name for n
SIZE_ROLES = ("n", "n_embd", "n_hidden", "block_size", "vocab_size")
_SIZE_SPELLINGS = {"batch_size": "n", **{r: r for r in SIZE_ROLES}}
TENSOR_NAMES = frozenset((*FORWARD_NAMES, *PARAMETER_NAMES, "Xb", "Yb"))
_GRADIENTS = frozenset(g.name for g in EXERCISE1) | {"dlogits", "dhprebn"}
# names a pattern takes literally: the student must use the same
_FIXED = frozenset({"torch", "F", "nn", "range", "len"})
# names a pattern binds to whatever the student wrote, without recording it
_FREE = frozenset({"Xtr", "Ytr", "ix", "g"})

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
_REDUCTIONS = frozenset({"sum", "mean", "max", "min", "var", "std", "softmax", "log_softmax",
                         "argmax", "cumsum", "prod", "flatten"})
_FUNCTIONS_AS_METHODS = frozenset({"tanh", "exp", "log", "sqrt", "rsqrt", "square"})


@dataclass(frozen=True)
class Binding:
    """One of the student's names, what it stands for, and where the grader learnt it."""

    student: str
    lecture: str
    kind: str          # "tensor", "size", "gradient" or "checker"
    how: str


@dataclass(frozen=True)
class NameMap:
    """The student's names, resolved."""

    tensors: dict[str, str]       # student name -> lecture tensor, parameter, Xb or Yb
    sizes: dict[str, str]         # student name -> size role ("n", "n_embd", ...)
    gradients: dict[str, str]     # student variable -> lecture gradient ("dbngain")
    checker: str | None           # the student's checker function, whatever its name
    bindings: tuple[Binding, ...]
    conflicts: tuple[str, ...]    # names read two ways: the first kept, the second said here


# -- canonical forms -------------------------------------------------------------------------

class _Canonical(ast.NodeTransformer):
    """One spelling per operation: keepdims -> keepdim, dim=/axis= -> positional, torch.f(x) ->
    x.f(), torch.arange -> range, reshape -> view, -<number> -> a negative constant."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        f = node.func
        for kw in node.keywords:
            if kw.arg == "keepdims":
                kw.arg = "keepdim"
            elif kw.arg == "axis":
                kw.arg = "dim"
        if isinstance(f, ast.Attribute):
            if f.attr == "reshape":
                f.attr = "view"
            if f.attr in _REDUCTIONS or (isinstance(f.value, ast.Name) and f.value.id == "F"):
                dim = next((k for k in node.keywords if k.arg == "dim"), None)
                if dim is not None and (not node.args or f.attr in ("softmax", "log_softmax")):
                    node.keywords.remove(dim)
                    node.args.append(dim.value)
            if isinstance(f.value, ast.Name) and f.value.id == "torch":
                if f.attr == "arange" and len(node.args) == 1 and not node.keywords:
                    return ast.Call(ast.Name("range", ast.Load()), node.args, [])
                if f.attr in _FUNCTIONS_AS_METHODS and len(node.args) == 1 and not node.keywords:
                    return ast.Call(ast.Attribute(node.args[0], f.attr, ast.Load()), [], [])
        # generator=, dtype=, device= do not change what is computed
        node.keywords = [k for k in node.keywords if k.arg not in ("generator", "dtype", "device")]
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
                and isinstance(node.operand.value, (int, float)):
            return ast.Constant(-node.operand.value)
        return node


def _canonical(node: ast.AST) -> ast.AST:
    return _Canonical().visit(copy.deepcopy(node))


def _pattern(text: str) -> ast.expr:
    return _canonical(ast.parse(text, mode="eval").body)  # type: ignore[return-value]


_PATTERNS = {name: tuple(_pattern(t) for t in forms) for name, forms in _FORWARD.items()}
_SHAPES = {name: tuple(_pattern(t) for t in dims) for name, dims in _PARAMETER_SHAPES.items()}


# -- unification -----------------------------------------------------------------------------

@dataclass
class _Env:
    """Bindings so far: lecture tensor -> student name (one to one), student size name -> role."""

    tensors: dict[str, str]
    sizes: dict[str, str]

    def copy(self) -> "_Env":
        return _Env(dict(self.tensors), dict(self.sizes))

    def student_names(self) -> set[str]:
        return set(self.tensors.values()) | set(self.sizes)


def _unify(pattern: ast.AST, node: ast.AST, env: _Env) -> bool:
    """Does ``node`` (the student's, canonical) perform ``pattern``'s operations? Binds names in
    ``env`` as it goes (the caller passes a copy and keeps it only on success)."""
    if isinstance(pattern, ast.Name):
        return _unify_name(pattern.id, node, env)
    if isinstance(pattern, ast.Constant):
        return isinstance(node, ast.Constant) and _same_number(pattern.value, node.value)
    if type(pattern) is not type(node):
        return False
    if isinstance(pattern, ast.BinOp):
        assert isinstance(node, ast.BinOp)
        if type(pattern.op) is not type(node.op):
            return False
        orders = [(node.left, node.right)]
        if isinstance(pattern.op, (ast.Add, ast.Mult)):
            orders.append((node.right, node.left))
        for left, right in orders:
            trial = env.copy()
            if _unify(pattern.left, left, trial) and _unify(pattern.right, right, trial):
                env.tensors, env.sizes = trial.tensors, trial.sizes
                return True
        return False
    if isinstance(pattern, ast.Call):
        assert isinstance(node, ast.Call)
        if len(pattern.args) != len(node.args) or \
                sorted(k.arg or "" for k in pattern.keywords) != sorted(k.arg or "" for k in node.keywords):
            return False
        theirs = {k.arg: k.value for k in node.keywords}
        pairs = [(pattern.func, node.func), *zip(pattern.args, node.args),
                 *((k.value, theirs[k.arg]) for k in pattern.keywords)]
        return all(_unify(p, n, env) for p, n in pairs)
    for field_name, value in ast.iter_fields(pattern):
        other = getattr(node, field_name, None)
        if field_name == "ctx":
            continue
        if isinstance(value, list):
            if not isinstance(other, list) or len(value) != len(other):
                return False
            if not all(_unify(p, n, env) if isinstance(p, ast.AST) else p == n
                       for p, n in zip(value, other)):
                return False
        elif isinstance(value, ast.AST):
            if not isinstance(other, ast.AST) or not _unify(value, other, env):
                return False
        elif value != other:
            return False
    return True


def _unify_name(name: str, node: ast.AST, env: _Env) -> bool:
    if name in _FIXED:
        return isinstance(node, ast.Name) and node.id == name
    if name in _FREE:
        return True
    if name in _SIZE_SPELLINGS:
        role = _SIZE_SPELLINGS[name]
        if isinstance(node, ast.Name):
            bound = env.sizes.get(node.id)
            if bound is None and node.id not in env.tensors.values():
                env.sizes[node.id] = role
                return True
            return bound == role
        # a literal or an expression (x.shape[0], len(x)): the same size, nothing to bind
        return not isinstance(node, (ast.Tuple, ast.List))
    if not isinstance(node, ast.Name):
        return False
    if name in env.tensors:
        return env.tensors[name] == node.id
    if node.id in env.student_names():
        return False
    env.tensors[name] = node.id
    return True


def _same_number(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))
    return a == b


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
    index: int
    value: ast.expr


class _Program:
    """The student's top-level statements, with where each name is assigned."""

    def __init__(self, statements: Sequence[tuple[ast.stmt, str]]) -> None:
        self.nodes = [node for node, _ in statements]
        self.where = [where for _, where in statements]
        self.definitions: dict[str, list[_Definition]] = {}
        self.assigned: set[str] = set()
        for i, node in enumerate(self.nodes):
            for name, value in _assignments(node):
                self.definitions.setdefault(name, []).append(_Definition(i, _canonical(value)))
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    self.assigned.add(sub.id)

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
            names = {sub.id for sub in ast.walk(node)
                     if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store)}
            if names & _GRADIENTS:
                return i
        return len(self.nodes)


# -- the forward pass ------------------------------------------------------------------------

class _Aligner:
    def __init__(self, program: _Program) -> None:
        self.program = program
        self.env = _Env({}, {})
        self.how: dict[str, str] = {}
        self.conflicts: list[str] = []

    def align(self) -> None:
        loss = self._loss_statement()
        if loss is None:
            return
        index, name, value = loss
        self._match("loss", name, _Definition(index, value))
        self._parameters(before=index)

    def _loss_statement(self) -> tuple[int, str, ast.expr] | None:
        end = self.program.first_gradient()
        for i in range(min(end, len(self.program.nodes)) - 1, -1, -1):
            for name, value in _assignments(self.program.nodes[i]):
                canonical = _canonical(value)
                if any(_unify(p, canonical, _Env({}, {})) for p in _PATTERNS["loss"]):
                    return i, name, canonical
        return None

    def _match(self, lecture: str, student: str, definition: _Definition) -> None:
        """Bind ``student`` to ``lecture`` (already known to match by use), then follow the
        tensors its definition reads."""
        self._bind_tensor(lecture, student, definition.index)
        if self.env.tensors.get(lecture) == student:    # said where it is computed, not used
            self.how[student] = f"your forward pass, {self.program.where[definition.index]}"
        before = set(self.env.tensors)
        for pattern in _PATTERNS.get(lecture, ()):
            trial = self.env.copy()
            if _unify(pattern, definition.value, trial):
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

    def _take(self, trial: _Env, index: int) -> None:
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
        pattern = _PATTERNS.get(lecture, ())
        if not pattern:
            return
        theirs = [n for n in _names(pattern[0]) if n in TENSOR_NAMES and n not in self.env.tensors]
        known = self.env.student_names() | _FIXED
        mine = [n for n in _names(definition.value) if n not in known
                and self.program.is_tensor(n, definition.index)]
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
            for pattern, dim in zip(_SHAPES[parameter], dims):
                trial = self.env.copy()
                if _unify(pattern, _canonical(dim), trial):
                    self._take(trial, found.index)  # type: ignore[union-attr]
        xb = self.env.tensors.get("Xb")
        found = self.program.definition(xb, before) if xb else None
        if found is not None and isinstance(found.value, ast.Subscript) and \
                isinstance(found.value.slice, ast.Name):
            ix = self.program.definition(found.value.slice.id, found.index)
            trial = self.env.copy()
            if ix is not None and _unify(_pattern(_BATCH_INDEX), ix.value, trial):
                self._take(trial, ix.index)
        self._size_aliases(before)

    def _size_aliases(self, before: int) -> None:
        """``n = batch_size``: both names are the batch size."""
        changed = True
        while changed:
            changed = False
            for name, definitions in self.program.definitions.items():
                last = [d for d in definitions if d.index < before]
                if not last or not isinstance(last[-1].value, ast.Name):
                    continue
                other = last[-1].value.id
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


# -- the checker and the gradients -----------------------------------------------------------

def _checker_calls(program: _Program) -> Iterator[tuple[int, str, ast.Call]]:
    """(statement, function name, call) for calls shaped f('label', dvar, tensor)."""
    for i, node in enumerate(program.nodes):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and \
                    len(sub.args) >= 3 and isinstance(sub.args[0], ast.Constant) and \
                    isinstance(sub.args[0].value, str) and isinstance(sub.args[1], ast.Name) and \
                    isinstance(sub.args[2], ast.Name):
                yield i, sub.func.id, sub


def _checker(program: _Program, tensor_of: dict[str, str]) -> str | None:
    """The function most often called with a label, a gradient and one of the net's tensors."""
    defined = {node.name for node in program.nodes if isinstance(node, ast.FunctionDef)
               and len(node.args.args) >= 3}
    counts: dict[str, int] = {}
    for _, name, call in _checker_calls(program):
        tensor = call.args[2].id  # type: ignore[attr-defined]
        if (name in defined or name == "cmp") and (tensor in tensor_of or tensor in TENSOR_NAMES):
            counts[name] = counts.get(name, 0) + 1
    return max(counts, key=lambda k: (counts[k], k == "cmp")) if counts else None


def resolve_names(statements: Sequence[tuple[ast.stmt, str]]) -> NameMap:
    """The student's names in ``statements`` (top-level, in order, each with where it is)."""
    program = _Program(statements)
    aligner = _Aligner(program)
    aligner.align()
    env, how = aligner.env, aligner.how
    tensors = {s: l for l, s in env.tensors.items() if s != l}
    bindings = [Binding(s, l, "tensor", how.get(s, "")) for s, l in tensors.items()]
    sizes = {s: r for s, r in env.sizes.items() if _SIZE_SPELLINGS.get(s) != r}
    bindings += [Binding(s, r, "size", how.get(s, "")) for s, r in sizes.items()]
    conflicts = list(aligner.conflicts)
    tensor_of = {s: l for l, s in env.tensors.items()}

    gradients: dict[str, str] = {}
    for student, lecture in tensors.items():
        for var in (f"d{student}", f"d_{student}"):
            gradient = f"d{lecture}"
            if var in program.assigned and var not in _GRADIENTS and gradient in _GRADIENTS:
                gradients[var] = gradient
                bindings.append(Binding(var, gradient, "gradient",
                                        f"its name: d + your {student}, which is the lecture's "
                                        f"{lecture} ({how.get(student, '')})"))
    checker = _checker(program, tensor_of)
    if checker is not None:
        if checker != "cmp":
            bindings.append(Binding(checker, "cmp", "checker",
                                    "called with a label, a gradient and one of the net's tensors"))
        for i, name, call in _checker_calls(program):
            if name != checker:
                continue
            dvar, tensor = call.args[1].id, call.args[2].id  # type: ignore[attr-defined]
            lecture = tensor_of.get(tensor) or (tensor if tensor in TENSOR_NAMES else None)
            gradient = f"d{lecture}" if lecture else None
            if gradient not in _GRADIENTS or dvar in _GRADIENTS or dvar == gradient:
                continue
            if dvar in gradients and gradients[dvar] != gradient:
                conflicts.append(f"{dvar} is checked against {tensor} at {program.where[i]}, but "
                                 f"it is the gradient of {gradients[dvar][1:]} by "
                                 f"{'your forward pass' if dvar in tensors else 'an earlier check'}"
                                 f": kept {gradients[dvar]}")
                continue
            if dvar not in gradients:
                gradients[dvar] = gradient  # type: ignore[assignment]
                label = call.args[0].value  # type: ignore[attr-defined]
                bindings.append(Binding(dvar, gradient, "gradient",  # type: ignore[arg-type]
                                        f"your {checker}({label!r}, {dvar}, {tensor}) at "
                                        f"{program.where[i]}"))
    return NameMap(tensors=tensors, sizes=sizes, gradients=gradients, checker=checker,
                   bindings=tuple(bindings), conflicts=tuple(conflicts))
