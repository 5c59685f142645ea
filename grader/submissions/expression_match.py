"""The student's expressions matched against the lecture's, by the operations they perform:
one spelling per operation (canonical forms), then a structural match that binds the student's
names to the lecture's as it goes (``C[X_batch]`` matches ``C[Xb]``, binding X_batch to Xb).
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

from .lecture_names import GRADIENT_VARIABLES, LECTURE_TENSORS, MODULE_NAMES

__all__ = ["Env", "FIXED_NAMES", "GRADIENT_NAMES", "SIZE_SPELLINGS", "TENSOR_NAMES", "canonical", "pattern",
           "unify"]

# sizes by their role; "batch_size" is the lecture's other name for n
SIZE_ROLES = ("n", "n_embd", "n_hidden", "block_size", "vocab_size")
SIZE_SPELLINGS = {"batch_size": "n", **{r: r for r in SIZE_ROLES}}
TENSOR_NAMES = frozenset((*LECTURE_TENSORS, "Xb", "Yb"))
GRADIENT_NAMES = GRADIENT_VARIABLES
# names a pattern takes literally: the student must use the same
FIXED_NAMES = frozenset({*MODULE_NAMES, "range", "len"})
# names a pattern binds to whatever the student wrote, without recording it
_FREE = frozenset({"Xtr", "Ytr", "ix", "g"})
_REDUCTIONS = frozenset({"sum", "mean", "max", "min", "var", "std", "softmax", "log_softmax",
                         "argmax", "cumsum", "prod", "flatten"})
_FUNCTIONS_AS_METHODS = frozenset({"tanh", "exp", "log", "sqrt", "rsqrt", "square"})


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


def canonical(node: ast.AST) -> ast.AST:
    """A copy of ``node`` in the one spelling per operation."""
    return _Canonical().visit(copy.deepcopy(node))


def pattern(text: str) -> ast.expr:
    return canonical(ast.parse(text, mode="eval").body)  # type: ignore[return-value]


# -- unification -----------------------------------------------------------------------------

@dataclass
class Env:
    """Bindings so far: lecture tensor -> student name (one to one), student size name -> role."""

    tensors: dict[str, str]
    sizes: dict[str, str]

    def copy(self) -> "Env":
        return Env(dict(self.tensors), dict(self.sizes))

    def student_names(self) -> set[str]:
        return set(self.tensors.values()) | set(self.sizes)


def unify(pattern: ast.AST, node: ast.AST, env: Env) -> bool:
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
            if unify(pattern.left, left, trial) and unify(pattern.right, right, trial):
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
        return all(unify(p, n, env) for p, n in pairs)
    for field_name, value in ast.iter_fields(pattern):
        other = getattr(node, field_name, None)
        if field_name == "ctx":
            continue
        if isinstance(value, list):
            if not isinstance(other, list) or len(value) != len(other):
                return False
            if not all(unify(p, n, env) if isinstance(p, ast.AST) else p == n
                       for p, n in zip(value, other)):
                return False
        elif isinstance(value, ast.AST):
            if not isinstance(other, ast.AST) or not unify(value, other, env):
                return False
        elif value != other:
            return False
    return True


def _unify_name(name: str, node: ast.AST, env: Env) -> bool:
    if name in FIXED_NAMES:
        return isinstance(node, ast.Name) and node.id == name
    if name in _FREE:
        return True
    if name in SIZE_SPELLINGS:
        role = SIZE_SPELLINGS[name]
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
