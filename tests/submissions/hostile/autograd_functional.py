# torch.autograd.functional.jacobian: autograd's backward pass under another name.
# expect-gradient: dlogprobs
# expect-status: integrity
# expect-message: computed with autograd
# expect-integrity: autograd
# expect-review: autograd.functional
import torch


def dlogprobs(logprobs, Yb, n):
    return torch.autograd.functional.jacobian(lambda lp: -lp[range(n), Yb].mean(), logprobs)
