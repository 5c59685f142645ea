# A student's mistake: the minus sign of the loss dropped.
# expect-hint: dlogprobs_sign
def dlogprobs(logprobs, Yb, n):
    out = torch.zeros_like(logprobs)
    out[range(n), Yb] = 1.0 / n
    return out
