# Returns a complex64 tensor: the wire carries no complex numbers.
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: is a complex64 tensor: return a real float32 tensor
import torch


def dlogprobs(logprobs, Yb, n):
    dlogprobs = torch.zeros_like(logprobs)
    dlogprobs[range(n), Yb] = -1.0 / n
    return dlogprobs.to(torch.complex64)
