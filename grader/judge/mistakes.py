"""Known mistakes: the wrong gradients a misconception produces, and the hint that names it.

Each ``Mistake`` is a small function that builds the wrong gradient a student with that
misconception would produce, from the same inputs the stub got (forward tensors and upstream
gradients, by parameter name, like the stubs themselves), and a hint that names the
misconception without giving the answer away. grader.judge.hints rebuilds them for a failing
gradient and says which one the student's tensor is.

``needs_probe`` marks mistakes that autograd's own upstream gradients cannot reveal (they hide
behind ``dlogit_maxes`` being about 1e-9): only a random upstream probe (grader.judge.probes)
shows them, so they are caught in isolated mode and pass unnoticed in chained mode.

Three of them (``db1_keepdim``, ``db2_keepdim``, ``dbngain_no_keepdim``) are the right values in
a shape that differs from the tensor's only by a size-1 dimension in front: compared on their
values (grader.judge.compare), they pass, and no hint is looked for; their hints are heard only
where the assignment sets ``strict_shapes``.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MISTAKES", "Mistake", "mistakes_for"]


@dataclass(frozen=True)
class Mistake:
    gradient: str                        # the stub: "dcounts"
    key: str                             # stable id: "dcounts_one_branch"
    build: Callable[..., torch.Tensor]   # parameters named after lecture tensors, like a stub
    hint: str
    needs_probe: bool = False            # invisible with autograd's own upstream gradients

    @functools.cached_property
    def params(self) -> tuple[str, ...]:
        return tuple(inspect.signature(self.build).parameters)


# --- exercise 1 ----------------------------------------------------------------------------

def _dlogprobs_sum_not_mean(logprobs: Tensor, Yb: Tensor, n: int) -> Tensor:
    out = torch.zeros_like(logprobs)
    out[range(n), Yb] = -1.0
    return out


def _dlogprobs_sign(logprobs: Tensor, Yb: Tensor, n: int) -> Tensor:
    out = torch.zeros_like(logprobs)
    out[range(n), Yb] = 1.0 / n
    return out


def _dlogprobs_every_entry(logprobs: Tensor, n: int) -> Tensor:
    return torch.full_like(logprobs, -1.0 / n)


def _dprobs_times_probs(dlogprobs: Tensor, probs: Tensor) -> Tensor:
    return probs * dlogprobs


def _dcounts_sum_inv_no_keepdim(dprobs: Tensor, counts: Tensor) -> Tensor:
    return (counts * dprobs).sum(1)


def _dcounts_sum_inv_no_sum(dprobs: Tensor, counts: Tensor) -> Tensor:
    return counts * dprobs


def _dcounts_sum_inv_wrong_dim(dprobs: Tensor, counts: Tensor) -> Tensor:
    return (counts * dprobs).sum(0, keepdim=True)


def _dcounts_sum_exponent(dcounts_sum_inv: Tensor, counts_sum: Tensor) -> Tensor:
    return -counts_sum**-1 * dcounts_sum_inv


def _dcounts_one_branch(dprobs: Tensor, counts_sum_inv: Tensor) -> Tensor:
    return counts_sum_inv * dprobs


def _dcounts_sum_branch_only(dprobs: Tensor, dcounts_sum: Tensor) -> Tensor:
    return torch.ones_like(dprobs) * dcounts_sum


def _dnorm_logits_input(dcounts: Tensor, norm_logits: Tensor) -> Tensor:
    return norm_logits * dcounts


def _dlogit_maxes_sign(dnorm_logits: Tensor) -> Tensor:
    return dnorm_logits.sum(1, keepdim=True)


def _dlogit_maxes_no_sum(dnorm_logits: Tensor) -> Tensor:
    return -dnorm_logits


def _dlogits_no_max_branch(dnorm_logits: Tensor) -> Tensor:
    return dnorm_logits.clone()


def _dlogits_max_to_every_element(dnorm_logits: Tensor, dlogit_maxes: Tensor) -> Tensor:
    return dnorm_logits + dlogit_maxes


def _dh_transposed(dlogits: Tensor, W2: Tensor) -> Tensor:
    return (dlogits @ W2.T).T


def _dW2_transposed(dlogits: Tensor, h: Tensor) -> Tensor:
    return dlogits.T @ h


def _db2_no_sum(dlogits: Tensor) -> Tensor:
    return dlogits.clone()


def _db2_wrong_dim(dlogits: Tensor) -> Tensor:
    return dlogits.sum(1)


def _db2_keepdim(dlogits: Tensor) -> Tensor:
    return dlogits.sum(0, keepdim=True)


def _dhpreact_one_minus_tanh(dh: Tensor, h: Tensor) -> Tensor:
    return (1.0 - h) * dh


def _dhpreact_input(dh: Tensor, hpreact: Tensor) -> Tensor:
    return (1.0 - hpreact**2) * dh


def _dhpreact_tanh_twice(dh: Tensor, h: Tensor) -> Tensor:
    return (1.0 - torch.tanh(h) ** 2) * dh


def _dbngain_no_sum(dhpreact: Tensor, bnraw: Tensor) -> Tensor:
    return bnraw * dhpreact


def _dbngain_no_keepdim(dhpreact: Tensor, bnraw: Tensor) -> Tensor:
    return (bnraw * dhpreact).sum(0)


def _dbnbias_wrong_dim(dhpreact: Tensor) -> Tensor:
    return dhpreact.sum(1, keepdim=True)


def _dbnraw_wrong_factor(dhpreact: Tensor, bnraw: Tensor) -> Tensor:
    return bnraw * dhpreact


def _dbnvar_inv_no_sum(dbnraw: Tensor, bndiff: Tensor) -> Tensor:
    return bndiff * dbnraw


def _dbnvar_exponent(dbnvar_inv: Tensor, bnvar: Tensor) -> Tensor:
    return (-0.5 * (bnvar + 1e-5) ** -0.5) * dbnvar_inv


def _dbndiff2_bessel(dbnvar: Tensor, bndiff2: Tensor, n: int) -> Tensor:
    return 1.0 / n * torch.ones_like(bndiff2) * dbnvar


def _dbndiff2_no_factor(dbnvar: Tensor, bndiff2: Tensor) -> Tensor:
    return torch.ones_like(bndiff2) * dbnvar


def _dbndiff_one_branch(dbnraw: Tensor, bnvar_inv: Tensor) -> Tensor:
    return bnvar_inv * dbnraw


def _dbndiff_square_without_two(dbnraw: Tensor, bnvar_inv: Tensor, dbndiff2: Tensor,
                                bndiff: Tensor) -> Tensor:
    return bnvar_inv * dbnraw + bndiff * dbndiff2


def _dbnmeani_sign(dbndiff: Tensor) -> Tensor:
    return dbndiff.sum(0, keepdim=True)


def _dhprebn_one_branch(dbndiff: Tensor) -> Tensor:
    return dbndiff.clone()


def _dhprebn_no_mean_factor(dbndiff: Tensor, dbnmeani: Tensor) -> Tensor:
    return dbndiff + dbnmeani


def _dembcat_transposed(dhprebn: Tensor, W1: Tensor) -> Tensor:
    return (dhprebn @ W1.T).T


def _dW1_transposed(dhprebn: Tensor, embcat: Tensor) -> Tensor:
    return dhprebn.T @ embcat


def _db1_keepdim(dhprebn: Tensor) -> Tensor:
    return dhprebn.sum(0, keepdim=True)


def _demb_view_order(dembcat: Tensor, emb: Tensor) -> Tensor:
    n, block_size, n_embd = emb.shape
    return dembcat.view(n, n_embd, block_size)


def _demb_view_transposed(dembcat: Tensor, emb: Tensor) -> Tensor:
    n, block_size, n_embd = emb.shape
    return dembcat.view(n, n_embd, block_size).transpose(1, 2)


def _dC_assigned(demb: Tensor, Xb: Tensor, C: Tensor) -> Tensor:
    out = torch.zeros_like(C)
    for k in range(Xb.shape[0]):
        for j in range(Xb.shape[1]):
            out[Xb[k, j]] = demb[k, j]
    return out


# --- exercise 2 and 3 ----------------------------------------------------------------------

def _dlogits_fused_no_mean(logits: Tensor, Yb: Tensor, n: int) -> Tensor:
    out = F.softmax(logits, 1)
    out[range(n), Yb] -= 1
    return out


def _dlogits_fused_no_target(logits: Tensor, n: int) -> Tensor:
    return F.softmax(logits, 1) / n


def _dlogits_fused_wrong_dim(logits: Tensor, Yb: Tensor, n: int) -> Tensor:
    out = F.softmax(logits, 0)
    out[range(n), Yb] -= 1
    return out / n


def _dhprebn_fused_biased(dhpreact: Tensor, bngain: Tensor, bnvar_inv: Tensor, bnraw: Tensor,
                          n: int) -> Tensor:
    return bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)
                                     - bnraw * (dhpreact * bnraw).sum(0))


def _dhprebn_fused_no_gain(dhpreact: Tensor, bnvar_inv: Tensor, bnraw: Tensor,
                           n: int) -> Tensor:
    return bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)
                            - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))


_BROADCAST = ("was broadcast in the forward pass (its size-1 dimension repeated to match the "
              "other operand), so each of its entries was used many times: its gradient must "
              "collect all of those uses")

MISTAKES: tuple[Mistake, ...] = (
    Mistake("dlogprobs", "dlogprobs_sum_not_mean", _dlogprobs_sum_not_mean,
            "the loss is the mean over the batch, not the sum: each example's share of the "
            "gradient is scaled accordingly"),
    Mistake("dlogprobs", "dlogprobs_sign", _dlogprobs_sign,
            "loss = -logprobs[range(n), Yb].mean(): the minus sign in front is part of the "
            "function you differentiate"),
    Mistake("dlogprobs", "dlogprobs_every_entry", _dlogprobs_every_entry,
            "only the entries picked by Yb (one per row) enter the loss; every other entry of "
            "logprobs has no effect on it"),
    Mistake("dprobs", "dprobs_times_probs", _dprobs_times_probs,
            "the local derivative of log(x) is not x: look up d/dx log(x) again"),
    Mistake("dcounts_sum_inv", "dcounts_sum_inv_no_keepdim", _dcounts_sum_inv_no_keepdim,
            "summing over dim 1 dropped that dimension: counts_sum_inv is (n, 1), and a "
            "gradient always has the shape of its tensor (keepdim)"),
    Mistake("dcounts_sum_inv", "dcounts_sum_inv_no_sum", _dcounts_sum_inv_no_sum,
            f"in probs = counts * counts_sum_inv, counts_sum_inv (n, 1) {_BROADCAST}"),
    Mistake("dcounts_sum_inv", "dcounts_sum_inv_wrong_dim", _dcounts_sum_inv_wrong_dim,
            "summed over the wrong dimension: counts_sum_inv (n, 1) was repeated along the "
            "vocabulary (dim 1), not along the batch"),
    Mistake("dcounts_sum", "dcounts_sum_exponent", _dcounts_sum_exponent,
            "power rule: the derivative of x**k has a different exponent than x**k itself"),
    Mistake("dcounts", "dcounts_one_branch", _dcounts_one_branch,
            "counts is used in two places (probs = counts * counts_sum_inv and counts_sum = "
            "counts.sum(1)): its gradient needs the contribution of each"),
    Mistake("dcounts", "dcounts_sum_branch_only", _dcounts_sum_branch_only,
            "counts is used in two places (probs = counts * counts_sum_inv and counts_sum = "
            "counts.sum(1)): this is only the path through counts_sum"),
    Mistake("dnorm_logits", "dnorm_logits_input", _dnorm_logits_input,
            "the local derivative of exp is not its input"),
    Mistake("dlogit_maxes", "dlogit_maxes_sign", _dlogit_maxes_sign,
            "norm_logits = logits - logit_maxes: logit_maxes enters with a minus sign (autograd's "
            "dlogit_maxes is about 1e-9, which hides the sign; random upstream gradients show it)",
            needs_probe=True),
    Mistake("dlogit_maxes", "dlogit_maxes_no_sum", _dlogit_maxes_no_sum,
            f"in norm_logits = logits - logit_maxes, logit_maxes (n, 1) {_BROADCAST}"),
    Mistake("dlogits", "dlogits_no_max_branch", _dlogits_no_max_branch,
            "logits is used in two places: norm_logits and, through the max, logit_maxes. "
            "autograd's dlogit_maxes is nearly zero, which hides a missing branch, but random "
            "upstream gradients show it", needs_probe=True),
    Mistake("dlogits", "dlogits_max_to_every_element", _dlogits_max_to_every_element,
            "the max of a row depends only on the element that attains it: the gradient of "
            "logit_maxes flows to that one element, not to every element of the row",
            needs_probe=True),
    Mistake("dh", "dh_transposed", _dh_transposed,
            "matmul gradient with the operands or transposes swapped: dh must have the shape of "
            "h, (n, n_hidden); check which operand carries the batch dimension"),
    Mistake("dW2", "dW2_transposed", _dW2_transposed,
            "matmul gradient with the operands or transposes swapped: dW2 must have the shape "
            "of W2, (n_hidden, vocab_size)"),
    Mistake("db2", "db2_no_sum", _db2_no_sum,
            f"in logits = h @ W2 + b2, b2 {_BROADCAST}"),
    Mistake("db2", "db2_wrong_dim", _db2_wrong_dim,
            "summed over the wrong dimension: b2 is repeated for every example in the batch "
            "(dim 0), not along the vocabulary"),
    Mistake("db2", "db2_keepdim", _db2_keepdim,
            "b2 is one-dimensional, (vocab_size,): its gradient must be too (no keepdim here)"),
    Mistake("dhpreact", "dhpreact_one_minus_tanh", _dhpreact_one_minus_tanh,
            "the derivative of tanh is not 1 - tanh: check the power"),
    Mistake("dhpreact", "dhpreact_input", _dhpreact_input,
            "the derivative of tanh written with its input hpreact: the formula you remember "
            "is in terms of tanh's output"),
    Mistake("dhpreact", "dhpreact_tanh_twice", _dhpreact_tanh_twice,
            "h is already tanh(hpreact): applying tanh to it again computes tanh(tanh(...))"),
    Mistake("dbngain", "dbngain_no_sum", _dbngain_no_sum,
            f"in hpreact = bngain * bnraw + bnbias, bngain (1, n_hidden) {_BROADCAST}"),
    Mistake("dbngain", "dbngain_no_keepdim", _dbngain_no_keepdim,
            "summing over dim 0 dropped that dimension: bngain is (1, n_hidden), and a gradient "
            "always has the shape of its tensor (keepdim)"),
    Mistake("dbnbias", "dbnbias_wrong_dim", _dbnbias_wrong_dim,
            "summed over the wrong dimension: bnbias (1, n_hidden) is repeated along the batch "
            "(dim 0)"),
    Mistake("dbnraw", "dbnraw_wrong_factor", _dbnraw_wrong_factor,
            "in a product a * b, the local derivative with respect to b is the other factor, "
            "not b"),
    Mistake("dbnvar_inv", "dbnvar_inv_no_sum", _dbnvar_inv_no_sum,
            f"in bnraw = bndiff * bnvar_inv, bnvar_inv (1, n_hidden) {_BROADCAST}"),
    Mistake("dbnvar", "dbnvar_exponent", _dbnvar_exponent,
            "power rule: the derivative of x**-0.5 has a different exponent than x**-0.5 itself"),
    Mistake("dbndiff2", "dbndiff2_bessel", _dbndiff2_bessel,
            "the variance uses Bessel's correction, 1/(n-1), not 1/n: the gradient must use the "
            "same factor as the forward pass"),
    Mistake("dbndiff2", "dbndiff2_no_factor", _dbndiff2_no_factor,
            "bnvar is not a plain sum: the factor in front of the sum scales its gradient too"),
    Mistake("dbndiff", "dbndiff_one_branch", _dbndiff_one_branch,
            "bndiff is used in two places (bnraw = bndiff * bnvar_inv and bndiff2 = bndiff**2): "
            "its gradient needs the contribution of each"),
    Mistake("dbndiff", "dbndiff_square_without_two", _dbndiff_square_without_two,
            "both branches are there, but the derivative of bndiff**2 is missing its factor "
            "(power rule)"),
    Mistake("dbnmeani", "dbnmeani_sign", _dbnmeani_sign,
            "bndiff = hprebn - bnmeani: bnmeani enters with a minus sign"),
    Mistake("dhprebn", "dhprebn_one_branch", _dhprebn_one_branch,
            "hprebn is used in two places (bndiff = hprebn - bnmeani and bnmeani = its mean): "
            "its gradient needs the contribution of each"),
    Mistake("dhprebn", "dhprebn_no_mean_factor", _dhprebn_no_mean_factor,
            "bnmeani is a mean, not a sum: the 1/n of the forward pass belongs in its "
            "gradient path too"),
    Mistake("dembcat", "dembcat_transposed", _dembcat_transposed,
            "matmul gradient with the operands or transposes swapped: dembcat must have the "
            "shape of embcat, (n, block_size * n_embd)"),
    Mistake("dW1", "dW1_transposed", _dW1_transposed,
            "matmul gradient with the operands or transposes swapped: dW1 must have the shape "
            "of W1, (block_size * n_embd, n_hidden)"),
    Mistake("db1", "db1_keepdim", _db1_keepdim,
            "b1 is one-dimensional, (n_hidden,): its gradient must be too (no keepdim here)"),
    Mistake("demb", "demb_view_order", _demb_view_order,
            "undoing the view with the dimensions in the wrong order: emb is (n, block_size, "
            "n_embd), and embcat laid its rows out in that order"),
    Mistake("demb", "demb_view_transposed", _demb_view_transposed,
            "the right shape, but the elements are in the wrong places: embcat = emb.view(...) "
            "laid out each row as block_size groups of n_embd, and undoing it must read them "
            "back in the same order (a transpose does not)"),
    Mistake("dC", "dC_assigned_not_accumulated", _dC_assigned,
            "a row of C used several times in the batch (the same character at several "
            "positions) must collect every use: assignment (or out[Xb] += ..., which is an "
            "assignment in disguise) keeps only one"),
    Mistake("dlogits_fused", "dlogits_fused_no_mean", _dlogits_fused_no_mean,
            "F.cross_entropy averages over the batch: the gradient carries that mean too"),
    Mistake("dlogits_fused", "dlogits_fused_no_target", _dlogits_fused_no_target,
            "softmax alone is not the gradient: the correct class of each row (Yb) plays a "
            "special role in the loss"),
    Mistake("dlogits_fused", "dlogits_fused_wrong_dim", _dlogits_fused_wrong_dim,
            "softmax over the wrong dimension: each row (one example) is normalised over the "
            "vocabulary, dim 1"),
    Mistake("dhprebn_fused", "dhprebn_fused_biased", _dhprebn_fused_biased,
            "the forward pass uses the unbiased variance (Bessel's correction, n-1): the fused "
            "formula must use it too"),
    Mistake("dhprebn_fused", "dhprebn_fused_no_gain", _dhprebn_fused_no_gain,
            "hpreact = bngain * bnraw + bnbias: bngain scales everything that flows back"),
)


def mistakes_for(gradient: str) -> tuple[Mistake, ...]:
    return tuple(m for m in MISTAKES if m.gradient == gradient)
