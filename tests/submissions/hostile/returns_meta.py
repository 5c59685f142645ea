# Returns a meta tensor: a shape, no values.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: is a meta tensor, which has no values
import torch


def dlogprobs(logprobs, Yb, n):
    return torch.empty(logprobs.shape, device="meta")
