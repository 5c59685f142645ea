# Returns a 10 GB-shaped tensor (an expanded view: it costs nothing to make, 10 GB to copy).
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: more than the
# expect-limit: returned tensor size
import torch


def dlogprobs(logprobs, Yb, n):
    return torch.zeros(1).expand(100_000, 25_000)
