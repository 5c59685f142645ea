"""Every gradient the exercise asks for: name, forward variable, exercise, inputs, points, doc.

The order of ``EXERCISE1`` is the backward order of the lecture. A stub may ask (by parameter
name) for forward tensors, parameters, ``n``, ``Xb``, ``Yb`` and the gradients *upstream* of its
own; ``allowed_gradients`` says which.
"""

from __future__ import annotations

from dataclasses import dataclass

from .names import FORWARD_NAMES, PARAMETER_NAMES

__all__ = [
    "EXERCISES",
    "EXERCISE4_GRADIENTS",
    "EXERCISE4_INPUTS",
    "GRADIENTS",
    "Gradient",
]


@dataclass(frozen=True)
class Gradient:
    """One gradient to grade."""

    name: str            # the stub's name: "dlogprobs", "dlogits_fused", ...
    variable: str        # the forward tensor it is the gradient of: "logprobs"
    exercise: str        # "ex1" ... "ex4"
    signature: tuple[str, ...]  # the reference stub's parameters
    points: float
    forward: str         # the forward line(s) it inverts
    shape: str           # the expected shape, in the lecture's symbols
    allowed_gradients: tuple[str, ...] = ()

    @property
    def upstream(self) -> tuple[str, ...]:
        """The gradients the reference signature takes: their size sets the tolerance scale."""
        return tuple(p for p in self.signature if p in self.allowed_gradients)


_EX1 = [
    # name, variable, signature, forward line, shape
    ("dlogprobs", "logprobs", ("logprobs", "Yb", "n"),
     "loss = -logprobs[range(n), Yb].mean()", "(n, vocab_size)"),
    ("dprobs", "probs", ("dlogprobs", "probs"),
     "logprobs = probs.log()", "(n, vocab_size)"),
    ("dcounts_sum_inv", "counts_sum_inv", ("dprobs", "counts"),
     "probs = counts * counts_sum_inv", "(n, 1)"),
    ("dcounts_sum", "counts_sum", ("dcounts_sum_inv", "counts_sum"),
     "counts_sum_inv = counts_sum**-1", "(n, 1)"),
    ("dcounts", "counts", ("dprobs", "counts_sum_inv", "dcounts_sum"),
     "probs = counts * counts_sum_inv;  counts_sum = counts.sum(1, keepdims=True)",
     "(n, vocab_size)"),
    ("dnorm_logits", "norm_logits", ("dcounts", "counts"),
     "counts = norm_logits.exp()", "(n, vocab_size)"),
    ("dlogit_maxes", "logit_maxes", ("dnorm_logits",),
     "norm_logits = logits - logit_maxes", "(n, 1)"),
    ("dlogits", "logits", ("dnorm_logits", "dlogit_maxes", "logits"),
     "norm_logits = logits - logit_maxes;  logit_maxes = logits.max(1, keepdim=True).values",
     "(n, vocab_size)"),
    ("dh", "h", ("dlogits", "W2"), "logits = h @ W2 + b2", "(n, n_hidden)"),
    ("dW2", "W2", ("dlogits", "h"), "logits = h @ W2 + b2", "(n_hidden, vocab_size)"),
    ("db2", "b2", ("dlogits",), "logits = h @ W2 + b2", "(vocab_size,)"),
    ("dhpreact", "hpreact", ("dh", "h"), "h = torch.tanh(hpreact)", "(n, n_hidden)"),
    ("dbngain", "bngain", ("dhpreact", "bnraw"),
     "hpreact = bngain * bnraw + bnbias", "(1, n_hidden)"),
    ("dbnbias", "bnbias", ("dhpreact",), "hpreact = bngain * bnraw + bnbias", "(1, n_hidden)"),
    ("dbnraw", "bnraw", ("dhpreact", "bngain"),
     "hpreact = bngain * bnraw + bnbias", "(n, n_hidden)"),
    ("dbnvar_inv", "bnvar_inv", ("dbnraw", "bndiff"),
     "bnraw = bndiff * bnvar_inv", "(1, n_hidden)"),
    ("dbnvar", "bnvar", ("dbnvar_inv", "bnvar"),
     "bnvar_inv = (bnvar + 1e-5)**-0.5", "(1, n_hidden)"),
    ("dbndiff2", "bndiff2", ("dbnvar", "bndiff2", "n"),
     "bnvar = 1/(n-1)*(bndiff2).sum(0, keepdim=True)", "(n, n_hidden)"),
    ("dbndiff", "bndiff", ("dbnraw", "bnvar_inv", "dbndiff2", "bndiff"),
     "bnraw = bndiff * bnvar_inv;  bndiff2 = bndiff**2", "(n, n_hidden)"),
    ("dbnmeani", "bnmeani", ("dbndiff",), "bndiff = hprebn - bnmeani", "(1, n_hidden)"),
    ("dhprebn", "hprebn", ("dbndiff", "dbnmeani", "n"),
     "bndiff = hprebn - bnmeani;  bnmeani = 1/n*hprebn.sum(0, keepdim=True)", "(n, n_hidden)"),
    ("dembcat", "embcat", ("dhprebn", "W1"), "hprebn = embcat @ W1 + b1",
     "(n, block_size * n_embd)"),
    ("dW1", "W1", ("dhprebn", "embcat"), "hprebn = embcat @ W1 + b1",
     "(block_size * n_embd, n_hidden)"),
    ("db1", "b1", ("dhprebn",), "hprebn = embcat @ W1 + b1", "(n_hidden,)"),
    ("demb", "emb", ("dembcat", "emb"), "embcat = emb.view(emb.shape[0], -1)",
     "(n, block_size, n_embd)"),
    ("dC", "C", ("demb", "Xb", "C"), "emb = C[Xb]", "(vocab_size, n_embd)"),
]

EXERCISE1: tuple[Gradient, ...] = tuple(
    Gradient(name=name, variable=var, exercise="ex1", signature=sig, points=1.0,
             forward=fwd, shape=shape,
             allowed_gradients=tuple(e[0] for e in _EX1[:i]))
    for i, (name, var, sig, fwd, shape) in enumerate(_EX1)
)
_UPTO_DHPREACT = tuple(g.name for g in EXERCISE1[: [g.name for g in EXERCISE1].index("dhpreact") + 1])

EXERCISE2 = Gradient(
    name="dlogits_fused", variable="logits", exercise="ex2", signature=("logits", "Yb", "n"),
    points=2.0, forward="loss = F.cross_entropy(logits, Yb)", shape="(n, vocab_size)")
EXERCISE3 = Gradient(
    name="dhprebn_fused", variable="hprebn", exercise="ex3",
    signature=("dhpreact", "bngain", "bnvar_inv", "bnraw", "n"), points=2.0,
    forward="hpreact = bngain * (hprebn - hprebn.mean(0)) / sqrt(hprebn.var(0, unbiased=True) + 1e-5) + bnbias",
    shape="(n, n_hidden)", allowed_gradients=_UPTO_DHPREACT)

# Exercise 4: backward(...) returns [dC, dW1, db1, dW2, db2, dbngain, dbnbias] for the fused
# forward of the lecture's training loop (n_hidden = 200).
EXERCISE4_INPUTS = (
    "emb", "embcat", "hprebn", "bnmean", "bnvar", "bnvar_inv", "bnraw", "hpreact", "h",
    "logits", "loss",
)
EXERCISE4_GRADIENTS: tuple[Gradient, ...] = tuple(
    Gradient(name=f"d{p}", variable=p, exercise="ex4", signature=(), points=0.5,
             forward="backward(...)[%d]" % i, shape="")
    for i, p in enumerate(PARAMETER_NAMES)
)
EXERCISE4_TRAINING = Gradient(
    name="training", variable="parameters", exercise="ex4", signature=(), points=0.5,
    forward="K steps of SGD with your gradients vs autograd's", shape="")

GRADIENTS: tuple[Gradient, ...] = (*EXERCISE1, EXERCISE2, EXERCISE3)
EXERCISES: dict[str, tuple[Gradient, ...]] = {
    "ex1": EXERCISE1,
    "ex2": (EXERCISE2,),
    "ex3": (EXERCISE3,),
    "ex4": (*EXERCISE4_GRADIENTS, EXERCISE4_TRAINING),
}
STUB_NAMES: tuple[str, ...] = (*(g.name for g in GRADIENTS), "backward")
INPUT_NAMES: frozenset[str] = frozenset((*FORWARD_NAMES, *PARAMETER_NAMES, "n", "Xb", "Yb"))
# exercise 4's backward may also read the chunked forward's tensors (a training loop that
# keeps exercise 1's forward and backward): lecture.training computes them where it does
EXERCISE4_INPUT_NAMES: frozenset[str] = frozenset(
    (*EXERCISE4_INPUTS, *FORWARD_NAMES, *PARAMETER_NAMES, "n", "Xb", "Yb"))
# sizes lecture-style code may read by the lecture's names; the grader binds them to the config
SCALAR_NAMES = ("n", "batch_size", "vocab_size", "n_embd", "n_hidden", "block_size")

