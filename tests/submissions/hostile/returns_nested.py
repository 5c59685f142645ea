# Returns a nested tensor: no shape of its own.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: is a nested tensor: return one plain tensor
import torch


def dlogprobs(logprobs, Yb, n):
    dlogprobs = torch.zeros_like(logprobs)
    dlogprobs[range(n), Yb] = -1.0 / n
    return torch.nested.nested_tensor(list(dlogprobs))
