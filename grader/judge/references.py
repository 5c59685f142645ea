"""What every submission is compared with that the lecture state does not hold, worked out once.

Exercise 4 grades backward() on the lecture's training loop (n_hidden = 200): autograd's step-0
gradients of its fused forward, and autograd's own K steps of SGD. Both are cached: they are the
same for every student. ``warm_references`` computes them, and the probes of every config, ahead
of a batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..lecture.catalog import GRADIENTS
from ..lecture.model import (
    Config,
    LectureState,
    build_dataset,
    chunked_forward,
    fused_forward,
    init_parameters,
    sample_batches,
    train_with_autograd,
)
from .grading import GradingOptions
from .probes import probe_book

__all__ = ["Exercise4Reference", "Exercise4Setup", "exercise4_reference", "training_reference",
           "warm_references"]


@dataclass(frozen=True)
class Exercise4Setup:
    config: Config
    params: dict[str, torch.Tensor]
    batches: list[tuple[torch.Tensor, torch.Tensor]]


def _exercise4_setup(config: Config, steps: int) -> Exercise4Setup:
    """The n_hidden=200 net of the lecture's training loop, and its first batches."""
    data = build_dataset(config.resolved_words(), config.block_size)
    g = torch.Generator().manual_seed(config.seed)
    params = init_parameters(config, data.vocab_size, g)
    batches = sample_batches(data.Xtr, data.Ytr, config.n, max(steps, 1), g)
    return Exercise4Setup(config, params, batches)


@dataclass(frozen=True)
class Exercise4Reference:
    setup: Exercise4Setup
    expected: dict[str, torch.Tensor]    # autograd's 7 gradients at step 0
    scales: dict[str, float]             # tolerance scale of each
    pool: dict[str, Any]                 # what backward() may ask for, at step 0


@functools.lru_cache(maxsize=16)
def exercise4_reference(config: Config, steps: int) -> Exercise4Reference:
    """Autograd's step-0 gradients of the fused forward."""
    setup = _exercise4_setup(config, steps)
    Xb, Yb = setup.batches[0]
    leaves = {k: v.clone().requires_grad_(True) for k, v in setup.params.items()}
    fwd = fused_forward(leaves, Xb, Yb)
    for name in ("emb", "hprebn", "hpreact", "logits"):
        fwd[name].retain_grad()
    fwd["loss"].backward()
    expected = {f"d{k}": v.grad for k, v in leaves.items()}
    # the tolerance scale of each parameter's gradient: the upstream gradient it is summed from
    consumer = {"dC": "emb", "dW1": "hprebn", "db1": "hprebn", "dW2": "logits", "db2": "logits",
                "dbngain": "hpreact", "dbnbias": "hpreact"}
    scales = {k: float(fwd[v].grad.abs().max()) for k, v in consumer.items()}
    with torch.no_grad():        # exercise 1's tensors too: a backward() may read them
        chunked = chunked_forward(setup.params, Xb, Yb)
    pool: dict[str, Any] = {**chunked, **{k: v.detach() for k, v in fwd.items()},
                            **setup.params, "n": config.n, "Xb": Xb, "Yb": Yb}
    return Exercise4Reference(setup, expected, scales, pool)


@functools.lru_cache(maxsize=8)
def training_reference(config: Config, steps: int, lr: float
                       ) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Autograd's parameters and losses after ``steps`` steps of SGD on the first batches."""
    setup = exercise4_reference(config, steps).setup
    return train_with_autograd(setup.params, setup.batches[:steps], lr=lr)


def warm_references(states: Sequence[LectureState], ex4_configs: Sequence[Config],
                    options: GradingOptions) -> None:
    """Compute now what every submission is compared with (probes for the catalog's
    signatures, exercise 4's gradients and training run); all of it is cached. A batch calls
    this before forking its worker processes, which then share the results."""
    for state in states:
        if options.probes:
            book = probe_book(state.config)
            for gradient in GRADIENTS:
                book.probe(gradient, gradient.signature)
    if "ex4" in options.exercises:
        for config in ex4_configs:
            exercise4_reference(config, options.train_steps)
        training_reference(ex4_configs[0], options.train_steps, options.train_lr)
