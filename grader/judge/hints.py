"""Hints: recognise a wrong tensor as a known mistake, and name the misconception behind it.

``find_hint`` rebuilds the known mistakes of a failing gradient (grader.judge.mistakes) in the
grader process, from the inputs the stub got, and returns the hint of the one the student's
tensor matches (within rounding, shapes included: a missing keepdim is recognised by its shape).
A tensor that is the right answer times a constant (a sign, 1/n, n-1, 2, ...) gets a generic
hint that says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .compare import numpy_values
from .mistakes import Mistake, mistakes_for

__all__ = ["Hint", "call_with_pool", "find_hint", "generic_hint", "same_within_rounding"]


@dataclass(frozen=True)
class Hint:
    key: str                             # a Mistake's key, or "constant_factor" / "sign"
    text: str


def same_within_rounding(actual: torch.Tensor, target: torch.Tensor, scale: float) -> bool:
    """Same shape and values within rounding (a little looser than grading: orders differ),
    worked out in float64 numpy: the same arithmetic as torch's, without its dispatch."""
    if tuple(actual.shape) != tuple(target.shape) or not actual.is_floating_point():
        return False
    a = numpy_values(actual).astype(np.float64, copy=False)
    t = numpy_values(target).astype(np.float64, copy=False)
    if not (np.isfinite(a).all() and np.isfinite(t).all()):
        return False
    t_abs = np.abs(t)
    s = max(scale, float(t_abs.max(initial=0.0)))
    return bool((np.abs(a - t) <= 1e-4 * t_abs + max(1e-5 * s, 1e-12)).all())


def call_with_pool(fn: Callable[..., Any], params: tuple[str, ...], pool: Mapping[str, Any]
                   ) -> torch.Tensor | None:
    """``fn`` (a known mistake, or a formulation in grader.judge.explain) called with its inputs
    from ``pool``; None when one is missing, the call fails or it returns no tensor."""
    if any(p not in pool for p in params):
        return None
    try:
        with torch.no_grad():
            out = fn(**{p: pool[p] for p in params})
    except (RuntimeError, IndexError, ValueError, TypeError):
        return None            # e.g. sizes that make this mistake impossible in this config
    return out if isinstance(out, torch.Tensor) else None


def _build(mistake: Mistake, pool: Mapping[str, Any]) -> torch.Tensor | None:
    return call_with_pool(mistake.build, mistake.params, pool)


def _factor_name(c: float, n: int | None) -> str:
    named = {"-1": -1.0, "2": 2.0, "1/2": 0.5, "-2": -2.0, "-1/2": -0.5}
    if n is not None and n > 1:
        named.update({"n": n, "1/n": 1 / n, "n-1": n - 1, "1/(n-1)": 1 / (n - 1),
                      "n/(n-1)": n / (n - 1), "(n-1)/n": (n - 1) / n, "-n": -n, "-1/n": -1 / n})
    for label, value in named.items():
        if math.isclose(c, value, rel_tol=1e-4):
            return f" (= {label})"
    return ""


def generic_hint(actual: torch.Tensor, expected: torch.Tensor, *, scale: float,
                 n: int | None = None) -> Hint | None:
    """The right answer times one constant everywhere: a sign or a factor is off."""
    if tuple(actual.shape) != tuple(expected.shape) or not actual.is_floating_point():
        return None
    a, e = actual.double().reshape(-1), expected.double().reshape(-1)
    ee = float(e @ e)
    if ee == 0.0 or not torch.isfinite(a).all():
        return None
    c = float(a @ e) / ee
    if not math.isfinite(c) or math.isclose(c, 1.0, rel_tol=1e-3) or abs(c) < 1e-6:
        return None
    scaled = (c * expected.double()).to(actual.dtype)
    if not same_within_rounding(actual, scaled, scale * max(abs(c), 1.0)):
        return None
    if math.isclose(c, -1.0, rel_tol=1e-4):
        return Hint("sign", "the right size everywhere but the opposite sign: a minus sign is "
                            "missing or one too many")
    return Hint("constant_factor",
                f"right up to a constant factor: yours is autograd's times {c:.6g} everywhere"
                f"{_factor_name(c, n)}; look for a missing or extra 1/n, 1/(n-1), 2 or sign")


def find_hint(gradient: str, actual: torch.Tensor, expected: torch.Tensor,
              pool: Mapping[str, Any], *, scale: float, generic: bool = True,
              probe: bool = False) -> Hint | None:
    """The hint for a wrong ``actual``: a catalog mistake it matches, else a generic one.

    ``pool`` holds what the stub was computed from (forward tensors, parameters, n, Xb, Yb and
    the upstream gradients of the mode: autograd's, a probe's, or the student's own). A mistake
    whose wrong tensor is itself close to ``expected`` cannot be told apart and gives no hint;
    one that ``needs_probe`` is only looked for when ``probe`` (random upstream gradients): with
    any other upstream it is within rounding of the right answer, so a match would prove nothing.
    """
    for mistake in mistakes_for(gradient):
        if mistake.needs_probe and not probe:
            continue
        wrong = _build(mistake, pool)
        if wrong is None or not same_within_rounding(actual, wrong, scale):
            continue
        if same_within_rounding(wrong, expected, scale):
            continue
        return Hint(mistake.key, mistake.hint)
    if generic:
        n = pool.get("n")
        return generic_hint(actual, expected, scale=scale, n=n if isinstance(n, int) else None)
    return None
