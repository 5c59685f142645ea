"""The lecture's names for the net's tensors, in the lecture's order. Torch-free: what reads
students' code (and never runs it) needs the names, not the model."""

from __future__ import annotations

__all__ = ["FORWARD_NAMES", "PARAMETER_NAMES"]

PARAMETER_NAMES = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")
FORWARD_NAMES = (
    "emb", "embcat", "hprebn", "bnmeani", "bndiff", "bndiff2", "bnvar", "bnvar_inv", "bnraw",
    "hpreact", "h", "logits", "logit_maxes", "norm_logits", "counts", "counts_sum",
    "counts_sum_inv", "probs", "logprobs", "loss",
)
