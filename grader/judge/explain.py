"""Why a correct answer is approximate rather than exact, when the grader can tell.

Exact means every bit equals autograd's. A correct formula that does the same math in another
order (``1.0/x * g`` instead of ``g / x``, ``x**-1`` instead of a division, a fused formula instead
of step-by-step) rounds differently in float32 and lands a few ULPs (units in the last place)
away: approximate, and it earns full points unless the instructor requires exact. The grader
recomputes the known formulations in its own process and says which one the student's tensor is;
otherwise it names the general reason and the ULP distance.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from .hints import call_with_pool

__all__ = ["EXERCISE4_REASON", "Formulation", "FORMULATIONS", "explain_inexact", "ulp_note"]


@dataclass(frozen=True)
class Formulation:
    """A correct way to write a gradient that is not bit-identical to autograd's."""

    gradient: str
    build: Callable[..., torch.Tensor]   # parameters named after lecture tensors, like a stub
    reason: str

    @functools.cached_property
    def params(self) -> tuple[str, ...]:
        return tuple(inspect.signature(self.build).parameters)


_TANH = ("(1 - h**2) * dh is the right formula, but current PyTorch's tanh backward computes it "
         "in a different order, so the last bits differ from autograd's (a known trap of the "
         "lecture: everything chained after it inherits the difference)")
_RECIPROCAL = ("1.0/x then a product rounds twice (the reciprocal, then the product); autograd's "
               "backward of log divides once, g / x")
_POW_MINUS_ONE = ("autograd's backward of counts_sum**-1 computes -counts_sum**-2 with a power; "
                  "a division or squaring a reciprocal rounds differently")
_POW_HALF = ("autograd's backward of (bnvar + 1e-5)**-0.5 computes (bnvar + 1e-5)**-1.5 with a "
             "power; bnvar_inv**3 or a division rounds differently")

FORMULATIONS: tuple[Formulation, ...] = (
    Formulation("dhpreact", lambda dh, h: (1.0 - h**2) * dh, _TANH),
    Formulation("dhpreact", lambda dh, h: (1 - h * h) * dh, _TANH),
    Formulation("dhpreact", lambda dh, h: dh * (1.0 - h**2), _TANH),
    Formulation("dhpreact", lambda dh, h: dh - dh * h**2, _TANH),
    Formulation("dprobs", lambda dlogprobs, probs: (1.0 / probs) * dlogprobs, _RECIPROCAL),
    Formulation("dprobs", lambda dlogprobs, probs: dlogprobs * probs**-1, _RECIPROCAL),
    Formulation("dcounts_sum", lambda dcounts_sum_inv, counts_sum:
                -dcounts_sum_inv / counts_sum**2, _POW_MINUS_ONE),
    Formulation("dcounts_sum", lambda dcounts_sum_inv, counts_sum:
                -(1.0 / counts_sum) ** 2 * dcounts_sum_inv, _POW_MINUS_ONE),
    Formulation("dcounts_sum", lambda dcounts_sum_inv, counts_sum_inv:
                -counts_sum_inv**2 * dcounts_sum_inv, _POW_MINUS_ONE),
    Formulation("dbnvar", lambda dbnvar_inv, bnvar_inv: -0.5 * bnvar_inv**3 * dbnvar_inv,
                _POW_HALF),
    Formulation("dbnvar", lambda dbnvar_inv, bnvar: -0.5 / (bnvar + 1e-5) ** 1.5 * dbnvar_inv,
                _POW_HALF),
)

# Exercises whose every correct answer is approximate: autograd takes another route.
_ALWAYS_APPROX = {
    "dlogits_fused": ("autograd's F.cross_entropy backward goes through log_softmax (it "
                      "exponentiates log-probabilities) rather than softmax, so even the lecture's "
                      "answer is approximate (maxdiff about 5e-9)"),
    "dhprebn_fused": ("autograd backpropagates through batch norm one step at a time; the fused "
                      "formula does the same math in another order, so even the lecture's answer "
                      "is approximate (maxdiff about 9e-10)"),
}

EXERCISE4_REASON = ("backward() uses the fused cross-entropy and batch-norm formulas (exercises 2 "
                    "and 3), which autograd computes another way, and that difference flows into "
                    "every parameter's gradient")

_ORDER = ("the same math in another order of operations (or grouping) rounds differently in "
          "float32")


def ulp_note(ulps: int | None) -> str:
    if ulps is None:
        return ""
    return (f"largest distance from autograd's: {ulps} ULP (unit{'s' if ulps != 1 else ''} in "
            "the last place of float32)")


def _matches(formulation: Formulation, pool: Mapping[str, Any], actual: torch.Tensor,
             expected: torch.Tensor) -> bool:
    value = call_with_pool(formulation.build, formulation.params, pool)
    return value is not None and torch.equal(value, actual) and not torch.equal(value, expected)


def explain_inexact(gradient: str, pool: Mapping[str, Any], actual: torch.Tensor,
                    expected: torch.Tensor, *, ulps: int | None = None, scale: float = 0.0,
                    inexact_upstream: tuple[str, ...] = (), exact_required: bool = False,
                    known_reason: str | None = None) -> str:
    """Why an approximate (passing, not bit-exact) answer differs from autograd's.

    ``pool`` holds what the stub was computed from; ``inexact_upstream`` names the upstream
    gradients (chained mode: the student's own) that were already not exact;
    ``exact_required``: the instructor gives points for exact answers only here;
    ``known_reason``: the caller's reason, used when no formulation is recognised.
    """
    policy = ("the instructor requires exact here, so approximate earns no points"
              if exact_required else "approximate earns full points")
    e_max = float(expected.abs().max()) if expected.numel() else 0.0
    if scale > 0 and e_max <= 1e-5 * scale:
        return (f"autograd's own {gradient} is rounding noise here (largest {e_max:.2g}, while "
                f"the gradients flowing in reach {scale:.2g}): the true value is zero or nearly "
                f"so, any answer within that noise is right, and the ULP distance means nothing; "
                f"{policy}")
    reason = None
    if inexact_upstream:
        names = ", ".join(inexact_upstream)
        reason = (f"your {names} {'was' if len(inexact_upstream) == 1 else 'were'} already "
                  "approximate (chained mode feeds you your own), and that difference carries "
                  "through this step")
    else:
        for f in FORMULATIONS:
            if f.gradient == gradient and _matches(f, pool, actual, expected):
                reason = f.reason
                break
    if reason is None:
        reason = known_reason or _ALWAYS_APPROX.get(gradient, _ORDER)
    note = ulp_note(ulps)
    return f"{reason}; {note}; {policy}" if note else f"{reason}; {policy}"
