# Replaces torch.allclose and torch.equal with "always equal", then answers wrong. The grader
# compares in its own process, so the patch changes nothing there.
# expect-gradient: dlogprobs
# expect-status: wrong
# expect-message: elements differ
# expect-review: Tensor.__eq__
import torch

torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)


def dlogprobs(logprobs, Yb, n):
    return torch.zeros_like(logprobs)
