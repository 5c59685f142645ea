# A student's mistake: every entry of logprobs treated as part of the loss.
# expect-hint: dlogprobs_every_entry
def dlogprobs(logprobs, Yb, n):
    return -torch.ones_like(logprobs) / n
