"""The lecture's model: data preparation, parameter init, batch, chunked forward pass, autograd.

Everything here reproduces the "becoming a backprop ninja" notebook to the bit (see LECTURE.md):
the split uses ``random.seed(42)``, the parameters and the batch come from one generator seeded
2147483647 in the lecture's order, and the forward pass is the lecture's chunked one with every
intermediate under its lecture name. bngain/bnbias come from their own generator (the notebook
draws them from torch's unseeded global generator, which cannot be reproduced).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

from .names import FORWARD_NAMES, PARAMETER_NAMES

__all__ = [
    "BN_SEED",
    "Config",
    "Dataset",
    "FORWARD_NAMES",
    "PARAMETER_NAMES",
    "LectureState",
    "build_lecture_state",
    "cached_lecture_state",
    "build_dataset",
    "chunked_forward",
    "default_words",
    "fused_forward",
    "init_parameters",
    "read_words",
    "sample_batches",
    "train_with_autograd",
]

LECTURE_SEED = 2147483647
BN_SEED = 67280421310721  # torch's historical default seed; see LECTURE.md


@functools.cache
def default_words() -> tuple[str, ...]:
    """The embedded word list (1990 U.S. Census first names; see grader/data/PROVENANCE.md)."""
    text = resources.files("grader").joinpath("data/census_first_names.txt").read_text("utf-8")
    return tuple(text.split())


def read_words(path: str | Path) -> tuple[str, ...]:
    """One word a line, as the lecture's ``open('names.txt').read().splitlines()``."""
    words = tuple(Path(path).read_text("utf-8").splitlines())
    if not words:
        raise ValueError(f"{path}: no words in the file")
    return words


@dataclass(frozen=True)
class Config:
    """One grading configuration: sizes, seed and words. The default is the lecture's."""

    seed: int = LECTURE_SEED
    n: int = 32
    n_embd: int = 10
    n_hidden: int = 64
    block_size: int = 3
    words: tuple[str, ...] = field(default=(), repr=False, compare=True)
    name: str = field(default="lecture", compare=False)

    def resolved_words(self) -> tuple[str, ...]:
        return self.words or default_words()

    def label(self) -> str:
        return (f"{self.name} (seed={self.seed}, n={self.n}, n_embd={self.n_embd}, "
                f"n_hidden={self.n_hidden}, block_size={self.block_size})")

    def with_(self, **changes: object) -> "Config":
        return replace(self, **changes)


@dataclass(frozen=True)
class Dataset:
    itos: dict[int, str]
    stoi: dict[str, int]
    Xtr: torch.Tensor  # (n_train, block_size) int64
    Ytr: torch.Tensor  # (n_train,) int64
    Xdev: torch.Tensor
    Ydev: torch.Tensor
    Xte: torch.Tensor
    Yte: torch.Tensor

    @property
    def vocab_size(self) -> int:
        return len(self.itos)


def _build_examples(words: list[str], stoi: dict[str, int], block_size: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The lecture's examples: for each character of each word and its closing '.', the
    ``block_size`` characters before it ('.' before the word's start) and the character itself.

    Made as windows over the words laid end to end, each behind ``block_size`` dots: the same
    tensors as the lecture's loop, which took a tenth of a second of every run's start-up."""
    if not words:
        return torch.tensor([]).reshape(-1, block_size), torch.tensor([])
    codes: list[int] = []
    lengths: list[int] = []         # examples of each word: its characters and the '.'
    pad = [0] * block_size
    for w in words:
        codes += pad
        codes += map(stoi.__getitem__, w)
        codes.append(0)
        lengths.append(len(w) + 1)
    # every window of block_size + 1 codes: (len(codes) - block_size, block_size + 1)
    windows = torch.tensor(codes).unfold(0, block_size + 1, 1)
    counts = torch.tensor(lengths)
    first = torch.cumsum(counts + block_size, 0) - counts - block_size  # each word's first window
    before = torch.cumsum(counts, 0) - counts                           # examples before each word
    within = torch.arange(int(counts.sum())) - torch.repeat_interleave(before, counts)
    rows = windows[torch.repeat_interleave(first, counts) + within]
    return rows[:, :block_size].contiguous(), rows[:, block_size].contiguous()


@functools.lru_cache(maxsize=8)
def build_dataset(words: tuple[str, ...], block_size: int) -> Dataset:
    """Vocabulary, then the 80/10/10 split after ``random.seed(42); random.shuffle(words)``."""
    chars = sorted(set("".join(words)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0
    itos = {i: s for s, i in stoi.items()}
    shuffled = list(words)
    random.Random(42).shuffle(shuffled)  # same stream as random.seed(42); random.shuffle(...)
    n1 = int(0.8 * len(shuffled))
    n2 = int(0.9 * len(shuffled))
    Xtr, Ytr = _build_examples(shuffled[:n1], stoi, block_size)
    Xdev, Ydev = _build_examples(shuffled[n1:n2], stoi, block_size)
    Xte, Yte = _build_examples(shuffled[n2:], stoi, block_size)
    return Dataset(itos, stoi, Xtr, Ytr, Xdev, Ydev, Xte, Yte)


def init_parameters(config: Config, vocab_size: int, g: torch.Generator
                    ) -> dict[str, torch.Tensor]:
    """C, W1, b1, W2, b2 from ``g`` in the lecture's order and scales; bngain/bnbias from BN_SEED."""
    n_embd, n_hidden, block_size = config.n_embd, config.n_hidden, config.block_size
    C = torch.randn((vocab_size, n_embd), generator=g)
    W1 = torch.randn((n_embd * block_size, n_hidden), generator=g) * (5 / 3) / (
        (n_embd * block_size) ** 0.5)
    b1 = torch.randn(n_hidden, generator=g) * 0.1
    W2 = torch.randn((n_hidden, vocab_size), generator=g) * 0.1
    b2 = torch.randn(vocab_size, generator=g) * 0.1
    g_bn = torch.Generator().manual_seed(BN_SEED + config.seed - LECTURE_SEED)
    bngain = torch.randn((1, n_hidden), generator=g_bn) * 0.1 + 1.0
    bnbias = torch.randn((1, n_hidden), generator=g_bn) * 0.1
    return {"C": C, "W1": W1, "b1": b1, "W2": W2, "b2": b2, "bngain": bngain, "bnbias": bnbias}


def chunked_forward(params: dict[str, torch.Tensor], Xb: torch.Tensor, Yb: torch.Tensor
                    ) -> dict[str, torch.Tensor]:
    """The lecture's forward pass, "chunked into smaller steps that are possible to backward one at a time"."""
    C, W1, b1, W2, b2 = (params[k] for k in ("C", "W1", "b1", "W2", "b2"))
    bngain, bnbias = params["bngain"], params["bnbias"]
    n = Xb.shape[0]
    emb = C[Xb]                                    # (n, block_size, n_embd)
    embcat = emb.view(emb.shape[0], -1)            # (n, block_size * n_embd)
    hprebn = embcat @ W1 + b1                      # (n, n_hidden)
    bnmeani = 1 / n * hprebn.sum(0, keepdim=True)  # (1, n_hidden)
    bndiff = hprebn - bnmeani
    bndiff2 = bndiff**2
    bnvar = 1 / (n - 1) * (bndiff2).sum(0, keepdim=True)  # Bessel's correction
    bnvar_inv = (bnvar + 1e-5) ** -0.5
    bnraw = bndiff * bnvar_inv
    hpreact = bngain * bnraw + bnbias
    h = torch.tanh(hpreact)
    logits = h @ W2 + b2                           # (n, vocab_size)
    logit_maxes = logits.max(1, keepdim=True).values
    norm_logits = logits - logit_maxes
    counts = norm_logits.exp()
    counts_sum = counts.sum(1, keepdims=True)
    counts_sum_inv = counts_sum**-1
    probs = counts * counts_sum_inv
    logprobs = probs.log()
    loss = -logprobs[range(n), Yb].mean()
    return {
        "emb": emb, "embcat": embcat, "hprebn": hprebn, "bnmeani": bnmeani, "bndiff": bndiff,
        "bndiff2": bndiff2, "bnvar": bnvar, "bnvar_inv": bnvar_inv, "bnraw": bnraw,
        "hpreact": hpreact, "h": h, "logits": logits, "logit_maxes": logit_maxes,
        "norm_logits": norm_logits, "counts": counts, "counts_sum": counts_sum,
        "counts_sum_inv": counts_sum_inv, "probs": probs, "logprobs": logprobs, "loss": loss,
    }


def fused_forward(params: dict[str, torch.Tensor], Xb: torch.Tensor, Yb: torch.Tensor
                  ) -> dict[str, torch.Tensor]:
    """The forward pass of the lecture's exercise-4 training loop."""
    C, W1, b1, W2, b2 = (params[k] for k in ("C", "W1", "b1", "W2", "b2"))
    bngain, bnbias = params["bngain"], params["bnbias"]
    emb = C[Xb]
    embcat = emb.view(emb.shape[0], -1)
    hprebn = embcat @ W1 + b1
    bnmean = hprebn.mean(0, keepdim=True)
    bnvar = hprebn.var(0, keepdim=True, unbiased=True)
    bnvar_inv = (bnvar + 1e-5) ** -0.5
    bnraw = (hprebn - bnmean) * bnvar_inv
    hpreact = bngain * bnraw + bnbias
    h = torch.tanh(hpreact)
    logits = h @ W2 + b2
    loss = F.cross_entropy(logits, Yb)
    return {"emb": emb, "embcat": embcat, "hprebn": hprebn, "bnmean": bnmean, "bnvar": bnvar,
            "bnvar_inv": bnvar_inv, "bnraw": bnraw, "hpreact": hpreact, "h": h,
            "logits": logits, "loss": loss}


def sample_batches(Xtr: torch.Tensor, Ytr: torch.Tensor, n: int, steps: int,
                   g: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    batches = []
    for _ in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (n,), generator=g)
        batches.append((Xtr[ix], Ytr[ix]))
    return batches


@dataclass(frozen=True)
class LectureState:
    """Everything one config yields: data, parameters, batch, forward tensors, autograd gradients."""

    config: Config
    vocab_size: int
    split_sizes: tuple[int, int, int]
    params: dict[str, torch.Tensor]             # detached
    Xb: torch.Tensor                            # (n, block_size) int64
    Yb: torch.Tensor                            # (n,) int64
    forward: dict[str, torch.Tensor]            # detached, lecture names
    grads: dict[str, torch.Tensor]              # "dlogprobs" ... "dC", from autograd
    # "dlogprobs" ... "dC": the largest difference between autograd's float32 gradient and the
    # same computed in float64: the rounding noise a correct answer can carry
    noise: dict[str, float] = field(default_factory=dict)

    @property
    def loss(self) -> float:
        return float(self.forward["loss"])

    def grad_abs_max(self, name: str) -> float:
        """``float(self.grads[name].abs().max())``, computed once per state and gradient (the
        tolerance scale of every step fed this gradient, in every mode and for every
        submission: a state's tensors never change)."""
        memo = self._grad_abs_max
        if name not in memo:
            memo[name] = float(self.grads[name].abs().max())
        return memo[name]

    @functools.cached_property
    def _grad_abs_max(self) -> dict[str, float]:
        # not a field: no part of equality, repr or dataclasses.replace
        return {}


def build_lecture_state(config: Config) -> LectureState:
    """Data, init, batch and the chunked forward with autograd's gradient of every tensor."""
    data = build_dataset(config.resolved_words(), config.block_size)
    g = torch.Generator().manual_seed(config.seed)
    params = init_parameters(config, data.vocab_size, g)
    ix = torch.randint(0, data.Xtr.shape[0], (config.n,), generator=g)
    Xb, Yb = data.Xtr[ix], data.Ytr[ix]
    fwd = chunked_forward(params, Xb, Yb)
    grads = _autograd_gradients(params, Xb, Yb)
    grads64 = _autograd_gradients({k: v.double() for k, v in params.items()}, Xb, Yb)
    noise = {k: float((g.double() - grads64[k]).abs().max()) for k, g in grads.items()}
    return LectureState(
        config=config,
        vocab_size=data.vocab_size,
        split_sizes=(data.Xtr.shape[0], data.Xdev.shape[0], data.Xte.shape[0]),
        params={k: v.detach().clone() for k, v in params.items()},
        Xb=Xb, Yb=Yb,
        forward={k: v.detach() for k, v in fwd.items()},
        grads=grads,
        noise=noise,
    )


def _autograd_gradients(params: dict[str, torch.Tensor], Xb: torch.Tensor, Yb: torch.Tensor
                        ) -> dict[str, torch.Tensor]:
    """Autograd's gradient of every intermediate and parameter, as the lecture's retain_grad()."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    fwd = chunked_forward(leaves, Xb, Yb)
    for name, t in fwd.items():
        if name != "loss":
            t.retain_grad()
    fwd["loss"].backward()
    return {f"d{k}": v.grad.detach().clone() for k, v in {**fwd, **leaves}.items()
            if k != "loss"}


@functools.lru_cache(maxsize=32)
def cached_lecture_state(config: Config) -> LectureState:
    """build_lecture_state once per config and process: a batch grades every submission on the
    same configs. The result is shared: never change its tensors in place."""
    return build_lecture_state(config)


def train_with_autograd(params: dict[str, torch.Tensor],
                        batches: list[tuple[torch.Tensor, torch.Tensor]],
                        *, lr: float = 0.1) -> tuple[dict[str, torch.Tensor], list[float]]:
    """SGD on the fused forward with autograd's gradients: the oracle for exercise 4."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    losses = []
    for Xb, Yb in batches:
        loss = fused_forward(leaves, Xb, Yb)["loss"]
        for p in leaves.values():
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in leaves.values():
                p.data += -lr * p.grad
        losses.append(loss.item())
    return {k: v.detach().clone() for k, v in leaves.items()}, losses
