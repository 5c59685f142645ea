# A student's mistake: the loss treated as a sum over the batch.
# expect-hint: dlogprobs_sum_not_mean
def dlogprobs(logprobs, Yb, n):
    out = torch.zeros_like(logprobs)
    out[range(n), Yb] = -1.0
    return out
