"""Random upstream probes: grade each local step with upstream gradients autograd did not choose.

Some true upstream gradients are almost zero (autograd's ``dlogit_maxes`` is about 1e-9, because
the max does not change the loss), so a wrong local step behind them still passes allclose. A
probe feeds a stub random upstream gradients instead and compares its answer with autograd's
vector-Jacobian product for the same upstream, ``torch.autograd.grad(outputs, inputs,
grad_outputs=R)``, computed here in the grader process.

Consistency. A stub may ask for several upstream gradients that depend on each other (``dcounts``
takes ``dprobs`` and ``dcounts_sum``, and ``dcounts_sum`` depends on ``dprobs``). So the probe never
draws them independently: it draws random gradients ``R`` only at the *injection points*, the
most-downstream tensors among those whose gradients the stub asks for (``probs`` for the lecture's
``dcounts``), and derives every other gradient from them through the forward graph. Every
gradient in a probe is then the true gradient of one function, ``sum(R * injected)``, and a
correct chain-rule step gives autograd's answer for any ``R``.

Which stubs are probed: every stub whose signature asks for at least one upstream gradient of a
tensor downstream of its own variable (all of exercise 1 but ``dlogprobs``, and exercise 3).
Stubs that take no upstream gradient (``dlogprobs``, exercise 2's ``dlogits_fused``, or a student's
stub that recomputes everything from forward tensors) compute the gradient of the real loss
itself; a random upstream means nothing to them and they are not probed.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import Any

import torch

from ..lecture.catalog import Gradient
from ..lecture.model import PARAMETER_NAMES, Config, cached_lecture_state, chunked_forward

__all__ = ["PARENTS", "Probe", "ProbeBook", "downstream_of", "injection_points", "probe_book"]

# The chunked forward pass as a graph: each tensor and the tensors it is computed from.
PARENTS: dict[str, tuple[str, ...]] = {
    "emb": ("C",),
    "embcat": ("emb",),
    "hprebn": ("embcat", "W1", "b1"),
    "bnmeani": ("hprebn",),
    "bndiff": ("hprebn", "bnmeani"),
    "bndiff2": ("bndiff",),
    "bnvar": ("bndiff2",),
    "bnvar_inv": ("bnvar",),
    "bnraw": ("bndiff", "bnvar_inv"),
    "hpreact": ("bngain", "bnraw", "bnbias"),
    "h": ("hpreact",),
    "logits": ("h", "W2", "b2"),
    "logit_maxes": ("logits",),
    "norm_logits": ("logits", "logit_maxes"),
    "counts": ("norm_logits",),
    "counts_sum": ("counts",),
    "counts_sum_inv": ("counts_sum",),
    "probs": ("counts", "counts_sum_inv"),
    "logprobs": ("probs",),
    "loss": ("logprobs",),
}


@functools.cache
def downstream_of(variable: str) -> frozenset[str]:
    """Every tensor computed (directly or not) from ``variable``."""
    children = {v for v, parents in PARENTS.items() if variable in parents}
    out = set(children)
    for c in children:
        out |= downstream_of(c)
    return frozenset(out)


def _variable_of(gradient_name: str) -> str:
    return gradient_name[1:]


def injection_points(gradient: Gradient, params: tuple[str, ...]) -> tuple[str, ...]:
    """Where the random upstream enters for a stub with these parameters (empty: not probed)."""
    below = downstream_of(gradient.variable)
    asked = [_variable_of(p) for p in params
             if p in gradient.allowed_gradients and _variable_of(p) in below]
    top = [v for v in asked if not any(o != v and o in downstream_of(v) for o in asked)]
    return tuple(sorted(set(top)))


@dataclass(frozen=True)
class Probe:
    """One stub's probe in one config: what to feed it and what autograd says it should return."""

    config: Config
    gradient: str
    injected: tuple[str, ...]        # tensors where the random upstream gradients enter
    pool: dict[str, Any]             # forward tensors, parameters, n, Xb, Yb, upstream gradients
    expected: torch.Tensor

    def inputs(self, params: tuple[str, ...]) -> dict[str, Any]:
        return {p: self.pool[p] for p in params}

    def scale(self, params: tuple[str, ...]) -> float:
        """The largest upstream magnitude the stub is given: its tolerance scale."""
        mags = [float(self.pool[p].abs().max()) for p in params
                if p.startswith("d") and isinstance(self.pool.get(p), torch.Tensor)
                and self.pool[p].numel()]
        return max(mags, default=0.0)


class ProbeBook:
    """Every probe of one config, made on first use (one per stub and injection points)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = cached_lecture_state(config)
        self.leaves = {k: v.clone().requires_grad_(True) for k, v in self.state.params.items()}
        self.forward = chunked_forward(self.leaves, self.state.Xb, self.state.Yb)
        self._made: dict[tuple[str, tuple[str, ...]], Probe] = {}

    def probe(self, gradient: Gradient, params: tuple[str, ...]) -> Probe | None:
        """The probe for a stub with these parameters; None if it cannot be probed."""
        injected = injection_points(gradient, params)
        if not injected:
            return None
        key = (gradient.name, injected)
        if key not in self._made:
            self._made[key] = self._make(gradient, injected)
        return self._made[key]

    def _node(self, name: str) -> torch.Tensor:
        return self.leaves[name] if name in PARAMETER_NAMES else self.forward[name]

    def _make(self, gradient: Gradient, injected: tuple[str, ...]) -> Probe:
        config, state = self.config, self.state
        true = [state.grads[f"d{v}"] for v in injected]
        true += [state.grads[u] for u in gradient.upstream]
        size = max((float(t.abs().max()) for t in true if t.numel()), default=0.0) or 1.0
        g = torch.Generator().manual_seed(
            zlib.crc32(f"{config.seed}/{gradient.name}/{','.join(injected)}".encode()))
        outputs = [self._node(v) for v in injected]
        R = [torch.randn(o.shape, generator=g) * size for o in outputs]
        wanted = [gradient.variable] + [_variable_of(p) for p in gradient.allowed_gradients
                                        if _variable_of(p) != gradient.variable]
        # the vector-Jacobian product for upstream R, as the gradient of sum(output * R): the
        # same numbers as grad_outputs=R (d(o * r)/do = 1.0 * r = r exactly), without the half a
        # second torch takes to import sympy on the first grad_outputs
        seed = sum((o * r).sum() for o, r in zip(outputs, R))
        grads = torch.autograd.grad(seed, [self._node(v) for v in wanted], retain_graph=True,
                                    allow_unused=True)
        by_name = {v: (gr if gr is not None else torch.zeros_like(self._node(v))).detach()
                   for v, gr in zip(wanted, grads)}
        pool: dict[str, Any] = {k: v.detach() for k, v in self.forward.items()}
        pool.update({k: v.detach() for k, v in self.leaves.items()})
        pool.update({"n": config.n, "Xb": state.Xb, "Yb": state.Yb})
        pool.update({f"d{v}": t for v, t in by_name.items() if v != gradient.variable})
        return Probe(config, gradient.name, injected, pool, by_name[gradient.variable])


@functools.lru_cache(maxsize=16)
def probe_book(config: Config) -> ProbeBook:
    """The probes of ``config`` (cached: the same for every submission)."""
    return ProbeBook(config)

