# Returns a sparse tensor (right values, the wrong layout).
# expect-gradient: dlogprobs
# expect-status: error
# expect-message: is a sparse tensor (torch.sparse_coo): call .to_dense()
import torch


def dlogprobs(logprobs, Yb, n):
    dlogprobs = torch.zeros_like(logprobs)
    dlogprobs[range(n), Yb] = -1.0 / n
    return dlogprobs.to_sparse()
