# Forward-mode AD, from torch's functorch internals reached through importlib, after taking the
# tensor factories back from their __wrapped__ (where there is one): the dual level it enters is
# seen at run time, and the import by name sends the file to review.
# expect-gradient: dlogprobs
# expect-status: integrity
# expect-message: computed with autograd
# expect-integrity: autograd
# expect-review: computes derivatives with a tool the watch does not follow
import importlib

import torch

for _name in ("zeros", "ones", "empty", "zeros_like"):
    _factory = getattr(torch, _name)
    setattr(torch, _name, getattr(_factory, "__wrapped__", _factory))
_jacfwd = importlib.import_module("torch._functorch.eager_transforms").jacfwd


def dlogprobs(logprobs, Yb, n):
    def loss(lp):
        return -lp[range(n), Yb].mean()
    return _jacfwd(loss)(logprobs)
